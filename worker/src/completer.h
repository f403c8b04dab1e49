// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "metrics.h"
#include "pgjobs/db/connection.h"
#include "pgjobs/log/failure_log.h"
#include "pgjobs/log/logger.h"
#include "queue_sql.h"
#include "shutdown.h"
#include "status.h"
#include "taken.h"

namespace pgjobs::worker {

/// Reports results to the database in batches (one round trip acks and nacks everything that is
/// ready) and counts what the database confirmed. No result holds back the others, and no error
/// holds the worker:
///  - a lost connection or a transient error is retried with a capped backoff, until the
///    shutdown's grace ends;
///  - a batch refused for a value in it (a data error) is split until the one job at fault is
///    found; that job is nacked with a traceback that says why, the others complete;
///  - an error that cannot heal (a revoked privilege, a missing function) is logged and the
///    batch given up: its jobs expire and are retried.
class Completer {
 public:
  /// `options` reach the database; `on_retry` is called when a job went back to the queue (an
  /// idle dispatcher then looks again when its next job is due).
  Completer(db::ConnectOptions options, WorkerMetrics& metrics, log::Logger& logger, Status& status,
            const Shutdown& shutdown, std::function<void()> on_retry);
  ~Completer();

  /// Hands results over; thread-safe.
  void Push(std::vector<Result> results);
  /// No more results will come: Run() reports what is left and returns. Thread-safe.
  void ExecutorsFinished();
  /// The completer thread's loop.
  void Run();

 private:
  // Reports `batch`, splitting it when one of its values is refused.
  void Report(std::vector<Result>& batch);
  // Counts what the database confirmed: what the sql handler committed, what it refused, and
  // what `decided` says of the results reported here (one missing from it was refused; with
  // `decided` null they were not reported and count for nothing).
  void Count(const std::vector<Result>& batch, const queue_sql::Decisions* decided);
  // False once retrying is no longer allowed (the shutdown's grace is over); else waits.
  bool WaitToRetry(std::chrono::milliseconds delay);
  void LogFailure(const std::string& what, const db::DbError& e, size_t jobs);

  db::ConnectOptions options_;
  WorkerMetrics& metrics_;
  log::Logger& logger_;
  Status& status_;
  const Shutdown& shutdown_;
  std::function<void()> on_retry_;
  std::unique_ptr<db::Connection> conn_;
  log::FailureLog failures_;

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Result> done_;
  bool executors_finished_ = false;
};

}  // namespace pgjobs::worker
