// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "pgjobs/db/connection.h"
#include "pgjobs/log/logger.h"
#include "shutdown.h"
#include "taken.h"

namespace pgjobs::worker {

/// The sql sessions running jobs' statements now, so that the end of the shutdown grace can
/// cancel them (a statement's own timeout was fixed before the shutdown began), and so can an
/// operator's jobs.cancel. Thread-safe.
class SqlCancels {
 public:
  /// `conn` runs the statements of `jobs`.
  void Add(db::Connection* conn, std::vector<const Job*> jobs);
  void Remove(db::Connection* conn);
  /// Cancels every statement running now; they roll back, and their jobs are nacked.
  void CancelAll();
  /// Cancels the sessions whose every job was cancelled (jobs.cancel): their statements roll
  /// back and the jobs end as cancelled. A job in a batch of several (quick jobs sharing one
  /// transaction) finishes with its batch.
  void CancelMarked();

 private:
  std::mutex mutex_;
  std::map<db::Connection*, std::vector<const Job*>> running_;
};

/// Runs the jobs of a sql task on a session of its own (one per executor): each job's statement
/// with its arguments (jsonb) as $1, and jobs.ack in the same transaction, so that the work
/// happens exactly once. The job's remaining time (shortened by the shutdown's grace) is the
/// statement's statement_timeout. Not thread-safe.
class SqlHandler {
 public:
  /// `options` reach the database; the session opens when first needed and again after it broke.
  SqlHandler(db::ConnectOptions options, log::Logger& logger, const Shutdown& shutdown,
             SqlCancels& cancels);
  ~SqlHandler();
  SqlHandler(SqlHandler&&) = default;

  /// Runs `jobs`, all of one task, with `statement`. One job: its time limit, statement and ack
  /// in one round trip, one transaction. Several: one transaction, each job's statement and
  /// ack in a savepoint of its own, so that a job that fails rolls back alone and the others
  /// share one commit. Results in the order of `jobs`, outcomes as the handler saw them (see
  /// FinalOutcome): committed, a failure or timeout to nack, or late (refused, or the commit's
  /// outcome unknown: never replayed).
  std::vector<Result> Run(const std::vector<Taken>& jobs, const std::string& statement);

 private:
  db::Connection* Session(std::string& error);

  db::ConnectOptions options_;
  log::Logger& logger_;
  const Shutdown& shutdown_;
  SqlCancels& cancels_;
  std::unique_ptr<db::Connection> conn_;
};

}  // namespace pgjobs::worker
