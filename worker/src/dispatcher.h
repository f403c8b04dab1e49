// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <vector>

#include "metrics.h"
#include "pgjobs/db/connection.h"
#include "pgjobs/log/logger.h"
#include "pgjobs/worker/config.h"
#include "run_queue.h"
#include "shutdown.h"
#include "status.h"

namespace pgjobs::worker {

/// Takes jobs from the queue into the run queue's free slots: registers the worker, listens for
/// NOTIFY jobs, consumes, and sleeps when there is nothing to take until a notification, the
/// next scheduled job or retry of its tasks, the poll interval, or Wake(). Reconnects with
/// backoff when the database is lost.
class Dispatcher {
 public:
  Dispatcher(const WorkerConfig& config, const std::vector<std::string>& tasks, RunQueue& queue,
             WorkerMetrics& metrics, log::Logger& logger, Status& status, const Shutdown& shutdown);
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  /// Runs until the shutdown begins.
  void Run();
  /// Ends an idle wait: a retry went back to the queue, or the shutdown began. Thread-safe.
  void Wake();

 private:
  // Opens and sets up the session, registering the worker the first time; nullptr when the
  // shutdown began first.
  std::unique_ptr<db::Connection> Connect();
  void Idle(db::Connection& conn);
  // The connection that receives NOTIFY jobs: `conn` itself in session pooling; behind a
  // transaction pooler a direct one to notify_dsn, opened on demand; nullptr when there is none
  // (no notify_dsn, or it cannot be reached now): the idle wait is then a poll.
  db::Connection* Listener(db::Connection& conn);
  void DatabaseUp(bool up);

  const WorkerConfig& config_;
  std::string tasks_;  // a text[] literal
  RunQueue& queue_;
  WorkerMetrics& metrics_;
  log::Logger& logger_;
  Status& status_;
  const Shutdown& shutdown_;
  int wake_pipe_[2] = {-1, -1};
  std::unique_ptr<db::Connection> listener_;  // notify_dsn's connection, behind a pooler
  Clock::time_point listener_retry_{};
};

}  // namespace pgjobs::worker
