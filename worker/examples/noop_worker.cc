// SPDX-License-Identifier: Apache-2.0
// A worker with a handler written in C++: link pgjobs::worker, register handlers, run.
//
//   find_package(pgjobs REQUIRED)
//   target_link_libraries(my_worker PRIVATE pgjobs::worker)
//
// usage: noop_worker_example DSN [CONCURRENCY] [PORT] [metrics:on|off] [PREFETCH|auto] [BATCH]
//                            [maintenance:on|off]
// Runs the task "bench.noop", whose handler returns at once; stops on SIGTERM or SIGINT.
#include <signal.h>

#include <iostream>
#include <thread>

#include "pgjobs/worker/worker.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr
        << "usage: noop_worker_example DSN [CONCURRENCY] [PORT] [on|off] [PREFETCH|auto] [BATCH] "
           "[on|off]\n";
    return 2;
  }
  pgjobs::worker::WorkerConfig config;
  config.dsn = argv[1];
  config.concurrency = argc > 2 ? std::stoi(argv[2]) : 8;
  config.listen_addresses = {"127.0.0.1:" + std::string(argc > 3 ? argv[3] : "0")};
  config.metrics_enabled = !(argc > 4 && std::string(argv[4]) == "off");
  // The library's default: learned (auto), unless a number pins it.
  if (argc > 5 && std::string(argv[5]) != "auto") config.prefetch = std::stoi(argv[5]);
  config.batch_size = argc > 6 ? std::stoi(argv[6]) : 0;
  config.poll_interval = std::chrono::milliseconds(1000);
  // The benchmarks time drains alone (off unless asked); a real worker keeps the default (on), so
  // that one of the pool runs the maintenance.
  config.maintenance.enabled = argc > 7 && std::string(argv[7]) == "on";

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  pgjobs::log::Logger logger(pgjobs::log::Level::kInfo, pgjobs::log::Format::kLogfmt, std::cerr);
  pgjobs::worker::Worker worker(config, logger);
  worker.Handle("bench.noop",
                [](const pgjobs::worker::Job&) { return pgjobs::worker::Outcome::Success(); });
  std::thread stopper([&] {
    int signal_number = 0;
    sigwait(&signals, &signal_number);
    worker.Stop();
  });
  worker.Run();
  pthread_kill(stopper.native_handle(), SIGTERM);
  stopper.join();
  return 0;
}
