// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "pgjobs/log/logger.h"
#include "pgjobs/worker/config.h"
#include "pgjobs/worker/job.h"

namespace pgjobs::worker {

/// A worker: consumes the jobs of the tasks it has handlers for, runs up to `concurrency` of them
/// at once, acks or nacks them in batches, registers itself and beats, and serves its metrics.
///
///   pgjobs::worker::Worker worker(config, logger);
///   worker.Handle("thumbnails.render", [](const pgjobs::worker::Job& job) {
///     return pgjobs::worker::Outcome::Success();
///   });
///   worker.Run();  // until Stop()
class Worker {
 public:
  /// `logger` must outlive the worker. Handlers for the tasks in `config.tasks` (command, sql,
  /// http) are built here.
  Worker(WorkerConfig config, log::Logger& logger, std::string version = "0.1.0");
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  /// Registers (or replaces) the handler of `task`. Call before Run().
  void Handle(const std::string& task, Handler handler);
  /// Serves metrics and runs jobs until Stop(); then stops taking jobs, lets those in flight
  /// finish within shutdown_grace, nacks the rest, unregisters, and returns. Throws pgjobs::Error
  /// when it cannot start (no handlers, or the metrics address cannot be bound).
  void Run();
  /// Asks Run() to finish. Thread-safe; not async-signal-safe (call it from a thread that took
  /// the signal with sigwait).
  void Stop();
  /// The ports the metrics server listens on, once Run() has started it.
  std::vector<int> Ports() const;
  /// Re-reads config.web_config_file and applies it to the metrics server at once (users,
  /// headers, TLS for new connections). Throws pgjobs::Error, changing nothing, when it is
  /// invalid. Thread-safe.
  void ReloadWebConfig();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace pgjobs::worker
