// SPDX-License-Identifier: Apache-2.0
// jobs-worker: runs the jobs of a pgjobs queue.
#include <signal.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "pgjobs/build_info.h"
#include "pgjobs/config/command_line.h"
#include "pgjobs/db/connection.h"
#include "pgjobs/db/dsn.h"
#include "pgjobs/http/server.h"
#include "pgjobs/http/web_config.h"
#include "pgjobs/http/web_flags.h"
#include "pgjobs/worker/config.h"
#include "pgjobs/worker/worker.h"

namespace {

constexpr const char* kUsage =
    "usage: jobs-worker [flags] [DSN]\n"
    "\n"
    "Runs the jobs of the tasks configured in --config.file. DSN (a postgresql:// URI) overrides\n"
    "database.dsn; without either, PGJOBS_DSN is used.\n"
    "\n"
    "  --config.file=FILE          YAML configuration (see config/worker.example.yaml)\n"
    "  --config.check              validate the configuration and exit\n"
    "  --log.level=LEVEL           debug, info, warn or error (default info)\n"
    "  --log.format=FORMAT         logfmt or json (default logfmt)\n"
    "  --version                   print the version and exit\n";

constexpr const char* kSignalsUsage =
    "The default listen address is 127.0.0.1:9466.\n"
    "\n"
    "SIGTERM or SIGINT: stop taking jobs, let those in flight finish within shutdown_grace,\n"
    "nack the rest, exit 0.\n"
    "SIGHUP: re-read --web.config.file and apply it at once; re-read --config.file and say\n"
    "whether it is valid and changed (a changed configuration applies at the next start).\n";

struct Flags {
  std::string config_file;
  bool config_check = false;
  pgjobs::http::WebFlags web;
  std::string log_level = "info";
  std::string log_format = "logfmt";
  std::string dsn;
};

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage << pgjobs::http::kWebFlagsUsage << kSignalsUsage;
      std::exit(0);
    } else if (arg == "--version") {
      std::cout << "jobs-worker " << pgjobs::BuildVersion() << " (revision "
                << pgjobs::BuildRevision() << ")\n";
      std::exit(0);
    } else if (arg == "--config.check") {
      f.config_check = true;
    } else if (pgjobs::config::TakeFlagValue(argc, argv, i, "--config.file", f.config_file) ||
               pgjobs::http::TakeWebFlag(argc, argv, i, f.web) ||
               pgjobs::config::TakeFlagValue(argc, argv, i, "--log.level", f.log_level) ||
               pgjobs::config::TakeFlagValue(argc, argv, i, "--log.format", f.log_format)) {
    } else if (arg.starts_with("-")) {
      throw pgjobs::Error("unknown flag '" + arg + "' (see --help)");
    } else if (!f.dsn.empty()) {
      throw pgjobs::Error("expected one DSN, got a second argument '" + pgjobs::db::RedactDsn(arg) +
                          "'");
    } else {
      f.dsn = arg;
    }
  }
  return f;
}

pgjobs::worker::WorkerConfig LoadConfig(const Flags& flags) {
  pgjobs::worker::WorkerConfig config;
  if (!flags.config_file.empty()) {
    config = pgjobs::worker::ParseWorkerConfig(pgjobs::config::ReadConfigFile(flags.config_file),
                                               flags.config_file, pgjobs::config::ProcessEnv);
  }
  if (!flags.dsn.empty()) config.dsn = flags.dsn;
  if (config.dsn.empty()) config.dsn = pgjobs::config::ProcessEnv("PGJOBS_DSN").value_or("");
  if (config.dsn.empty()) {
    throw pgjobs::Error(
        "no database given: pass a DSN, set database.dsn in --config.file, or "
        "set PGJOBS_DSN");
  }
  // A malformed DSN never heals: refuse it here rather than retry it for ever.
  pgjobs::db::CheckDsn(config.dsn);
  pgjobs::http::CheckWebFlags(flags.web);
  if (!flags.web.listen_addresses.empty()) config.listen_addresses = flags.web.listen_addresses;
  if (!flags.web.telemetry_path.empty()) config.telemetry_path = flags.web.telemetry_path;
  pgjobs::http::LoadWebConfig(flags.web.config_file);  // refused here, before any job is taken
  config.web_config_file = flags.web.config_file;
  if (config.tasks.empty()) {
    throw pgjobs::Error(
        "no tasks configured: add a tasks: section to --config.file (see "
        "config/worker.example.yaml)");
  }
  return config;
}

// SIGHUP: what can change live (the web configuration) changes now; the rest is checked, and
// applies at the next start, so that a reload never drops or re-runs a job in flight.
void Reload(const Flags& flags, const std::string& config_text, pgjobs::worker::Worker& worker,
            pgjobs::log::Logger& logger) {
  try {
    worker.ReloadWebConfig();
    if (!flags.web.config_file.empty()) {
      logger.Info("web configuration reloaded", {{"file", flags.web.config_file}});
    }
  } catch (const pgjobs::Error& e) {
    logger.Error("web configuration reload failed; keeping the previous one", {{"err", e.what()}});
  }
  if (flags.config_file.empty()) return;
  try {
    LoadConfig(flags);
    if (pgjobs::config::ReadConfigFile(flags.config_file) == config_text) {
      logger.Info("configuration file unchanged", {{"file", flags.config_file}});
    } else {
      logger.Warn(
          "configuration file changed and is valid; it applies when jobs-worker restarts "
          "(SIGTERM drains the jobs in flight first)",
          {{"file", flags.config_file}});
    }
  } catch (const pgjobs::Error& e) {
    logger.Error("configuration file is invalid; the running configuration stays",
                 {{"err", e.what()}});
  }
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  pgjobs::worker::WorkerConfig config;
  try {
    flags = ParseFlags(argc, argv);
    pgjobs::log::ParseLevel(flags.log_level);
    pgjobs::log::ParseFormat(flags.log_format);
    config = LoadConfig(flags);
  } catch (const pgjobs::Error& e) {
    std::cerr << "jobs-worker: " << e.what() << "\n";
    return 2;
  }
  if (flags.config_check) {
    std::cout << "jobs-worker: configuration is valid\n";
    return 0;
  }
  pgjobs::log::Logger logger(pgjobs::log::ParseLevel(flags.log_level),
                             pgjobs::log::ParseFormat(flags.log_format), std::cerr);
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a command that exits without reading stdin

  pgjobs::worker::Worker worker(config, logger, pgjobs::BuildVersion());
  const std::string config_text =
      flags.config_file.empty() ? "" : pgjobs::config::ReadConfigFile(flags.config_file);
  std::thread signal_thread([&] {
    for (;;) {
      int signal_number = 0;
      sigwait(&signals, &signal_number);
      if (signal_number == SIGHUP) {
        Reload(flags, config_text, worker, logger);
        continue;
      }
      logger.Info("signal received", {{"signal", strsignal(signal_number)}});
      worker.Stop();
      return;
    }
  });
  int rc = 0;
  try {
    worker.Run();
  } catch (const pgjobs::Error& e) {
    logger.Error("cannot run", {{"err", e.what()}});
    rc = 1;
  }
  // The signal thread waits in sigwait; wake it so that it can be joined.
  pthread_kill(signal_thread.native_handle(), SIGTERM);
  signal_thread.join();
  return rc;
}
