// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pgjobs/db/connection.h"

namespace pgjobs::exporter {

/// One row of jobs.stats_queue.
struct QueueRow {
  std::string task;
  double ready = 0, scheduled = 0, retry_wait = 0, running = 0, expired = 0;
  double oldest_ready_age = 0, oldest_running = 0, max_expired_overdue = 0;
};

/// One row of jobs.finished_stats: kind is "finished", "wait", "run" or "attempts".
struct FinishedRow {
  std::string kind;
  std::string task;
  std::string status;  // "finished" rows only
  int bucket = 0;      // 1-based; histogram rows only
  double n = 0;
  double total = 0;
};

struct FinishedBatch {
  long long watermark = 0;
  std::vector<FinishedRow> rows;
};

struct TableRow {
  std::string table;
  double live_tuples = 0, dead_tuples = 0, total_bytes = 0;
  std::optional<double> seconds_since_vacuum;
};

/// One row of jobs.stats_retention.
struct RetentionRow {
  std::string status;
  std::optional<double> keep_seconds;  // nullopt: kept for ever
  double pruned_total = 0;
  double oldest_age_seconds = 0;  // 0 when none is kept
};

/// One row of jobs.stats_schedules: a recurring job.
struct ScheduleRow {
  std::string name;
  std::optional<double> last_enqueued_seconds;  // nullopt: never
  std::optional<double> next_run_seconds;       // nullopt: none
};

struct DatabaseHealth {
  std::optional<double> oldest_transaction_seconds;  // visible sessions only
  double oldest_xid_age = 0;
  double notification_queue_usage = 0;
};

/// What Finished() reads: the finished jobs since `after` (std::nullopt: only the current
/// watermark), into histograms with these bucket bounds.
struct FinishedQuery {
  std::optional<long long> after;
  std::vector<double> wait_bounds, run_bounds, attempt_bounds;
};

/// A generic result for user-defined queries: column names and text values (nullopt = NULL).
struct CustomResult {
  std::vector<std::string> columns;
  std::vector<std::vector<std::optional<std::string>>> rows;
};

/// Every query jobs-exporter runs, on one connection that it opens on demand and re-opens after
/// it broke. Not thread-safe. Every method throws db::DbError.
class StatsSource {
 public:
  explicit StatsSource(db::ConnectOptions options);
  ~StatsSource();

  /// Connects if needed, and makes every call until the next Begin() return by `deadline`
  /// whatever the database does (statement_timeout on the server, and the connection's own
  /// deadline on this side), with `lock_timeout` on every statement.
  void Begin(std::chrono::steady_clock::time_point deadline,
             std::chrono::milliseconds lock_timeout);
  /// Sends the statements of every method below but Custom() in one round trip, each in a
  /// transaction of its own, and keeps their outcomes for the methods to return (or throw) as
  /// if they ran then. On a busy machine every round trip waits for both processes to be
  /// scheduled; a scrape of a dozen statements one by one took several times as long
  /// (bench/RESULTS.md). Throws only when the connection is lost; a method whose statement was
  /// not prefetched (or was, for other arguments) runs its own.
  void Prefetch(const FinishedQuery& finished);
  /// The database's time for the prefetched outcomes returned since the last call: the gap
  /// between each one's end and the end of the one before.
  std::chrono::nanoseconds TakePrefetchedTime();
  std::vector<QueueRow> Queue();
  FinishedBatch Finished(const FinishedQuery& query);
  /// (task, jobs queued ever: published, by a schedule or by jobs.retry)
  std::vector<std::pair<std::string, double>> PublishedByTask();
  /// (alive, stale)
  std::pair<double, double> Workers();
  /// (task, running jobs held by stale workers)
  std::vector<std::pair<std::string, double>> JobsOnStaleWorkers();
  std::vector<TableRow> Tables();
  std::vector<RetentionRow> Retention();
  /// Tasks whose jobs consume skips (jobs.pause).
  std::vector<std::string> PausedTasks();
  /// (task, publishes that queued nothing because their unique key was held, ever)
  std::vector<std::pair<std::string, double>> Deduplicated();
  std::vector<ScheduleRow> Schedules();
  DatabaseHealth Health();
  /// Runs a user-defined query under its own statement timeout.
  CustomResult Custom(const std::string& query, std::chrono::milliseconds timeout);
  /// Drops the connection if the last error broke it.
  void ForgetIfBroken();

 private:
  db::ConnectOptions options_;
  std::unique_ptr<db::Connection> connection_;
  db::Connection& Conn();
  // Runs one statement of a collector under the scrape's timeouts: set once per session by
  // Begin() in session pooling; behind a transaction pooler set locally, in one round trip with
  // the statement, in a transaction of their own (InOwnTransaction). Returns its prefetched
  // outcome instead when there is one.
  db::Result Run(const db::Statement& statement);
  std::vector<db::Statement> InOwnTransaction(db::Statement statement) const;
  struct Prefetched {
    std::string sql;
    db::Params params;
    std::chrono::nanoseconds took{0};
    std::optional<db::Result> result = {};
    std::optional<db::DbError> error = {};
  };
  std::map<std::string, Prefetched> prefetched_;  // by statement name
  std::chrono::nanoseconds prefetched_time_{0};
  std::string statement_timeout_;  // for Run() behind a transaction pooler
  std::string lock_timeout_;
};

}  // namespace pgjobs::exporter
