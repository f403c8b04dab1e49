// SPDX-License-Identifier: Apache-2.0
// The worker of the scale test: jobs-worker's command and sql tasks from a YAML file, plus a C++
// task, "scale.cpp", whose handler returns at once, so that one process runs all three kinds.
// Stops on SIGTERM or SIGINT.
//
// usage: scale_worker CONFIG_FILE
#include <signal.h>

#include <iostream>
#include <thread>

#include "pgjobs/config/command_line.h"
#include "pgjobs/error.h"
#include "pgjobs/worker/config.h"
#include "pgjobs/worker/worker.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: scale_worker CONFIG_FILE\n";
    return 2;
  }
  pgjobs::worker::WorkerConfig config;
  try {
    config = pgjobs::worker::ParseWorkerConfig(pgjobs::config::ReadConfigFile(argv[1]), argv[1],
                                               pgjobs::config::ProcessEnv);
  } catch (const pgjobs::Error& e) {
    std::cerr << "scale_worker: " << e.what() << "\n";
    return 2;
  }
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  pgjobs::log::Logger logger(pgjobs::log::Level::kInfo, pgjobs::log::Format::kLogfmt, std::cerr);
  pgjobs::worker::Worker worker(config, logger);
  worker.Handle("scale.cpp",
                [](const pgjobs::worker::Job&) { return pgjobs::worker::Outcome::Success(); });
  std::thread stopper([&] {
    int signal_number = 0;
    sigwait(&signals, &signal_number);
    worker.Stop();
  });
  stopper.detach();  // Run() may also end by itself
  worker.Run();
  return 0;
}
