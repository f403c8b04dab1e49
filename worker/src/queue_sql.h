// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "pgjobs/db/connection.h"
#include "taken.h"

namespace pgjobs::worker {

/// The queue's SQL as the worker speaks it: the only place the worker's statements are written.
/// Every function throws db::DbError.
namespace queue_sql {

/// Sets up the dispatcher's session: LISTEN for new jobs, commits that need not wait for the WAL
/// flush, and the prepared consume and next-due statements.
void PrepareDispatcher(db::Connection& conn);

/// Registers the worker in jobs.worker; its id.
long long Register(db::Connection& conn, const std::string& name, const std::string& host, int pid,
                   int concurrency, std::chrono::milliseconds stale_after);
/// Records that the worker is alive.
void Heartbeat(db::Connection& conn, long long worker_id);

/// The worker's running jobs that jobs.cancel marked.
std::vector<long long> CancelRequested(db::Connection& conn, long long worker_id);
/// Marks the worker stopped.
void Unregister(db::Connection& conn, long long worker_id);

/// A job as consume returned it.
struct Consumed {
  Taken taken;
  /// Pickup latency: seconds from runnable to started, on the database's clock.
  double wait_seconds = 0;
};
/// Takes up to `want` runnable jobs of `tasks` (a text[] literal, see TextArray) for the
/// worker; deadlines count from `now`.
std::vector<Consumed> Consume(db::Connection& conn, int want, const std::string& tasks,
                              long long worker_id, Clock::time_point now);
/// Seconds until the next pending job of `tasks` is runnable (<= 0: now), or std::nullopt when
/// none is pending (or the value is not a finite number).
std::optional<double> SecondsUntilNextDue(db::Connection& conn, const std::string& tasks);

/// A result for the database: an ack when `traceback` is empty, a nack with it otherwise.
struct Report {
  long long job_id = 0;
  int attempt = 0;
  std::optional<std::string> traceback;
};
/// What the database did with a reported result.
enum class Decision {
  kSucceeded,  ///< acked: finished as a success
  kRetried,    ///< nacked: back in the queue for another attempt
  kFailed,     ///< nacked with no retry left: finished as a failure
};
/// What the database did with each reported job, sorted by job id; see Find.
using Decisions = std::vector<std::pair<long long, Decision>>;
/// The decision about `job_id`, or null when it was refused.
const Decision* Find(const Decisions& decisions, long long job_id);
/// Reports results in one round trip (jobs.complete). A job missing from the answer was refused:
/// it no longer ran that attempt (reclaimed after its timeout).
Decisions Complete(db::Connection& conn, const std::vector<Report>& reports);

/// The statements around a sql job's own: its time limit (the transaction's statement_timeout),
/// and its ack, which commits with the work.
db::Statement StatementTimeout(long long milliseconds);
db::Statement Ack(const Job& job);

/// "{a,b}" with each element quoted, for a text[] or varchar[] parameter. Pure.
std::string TextArray(const std::vector<std::string>& values);

}  // namespace queue_sql
}  // namespace pgjobs::worker
