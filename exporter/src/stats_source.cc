// SPDX-License-Identifier: Apache-2.0
#include "pgjobs/exporter/stats_source.h"

#include <sstream>
#include <utility>

namespace pgjobs::exporter {
namespace {

std::string ArrayLiteral(const std::vector<double>& values) {
  std::ostringstream out;
  out.precision(17);
  out << '{';
  for (size_t i = 0; i < values.size(); ++i) out << (i ? "," : "") << values[i];
  out << '}';
  return out.str();
}

std::string Millis(std::chrono::milliseconds ms) {
  return std::to_string(std::max<long long>(1, ms.count()));
}

// The scrape's statement and lock timeouts, for the session or (local) for the transaction in
// progress only.
db::Statement Timeouts(const std::string& statement_timeout, const std::string& lock_timeout,
                       bool local) {
  return {.name = "set timeouts",
          .sql =
              "SELECT set_config('statement_timeout', $1, $3::bool), "
              "set_config('lock_timeout', $2, $3::bool)",
          .params = {statement_timeout, lock_timeout, local ? "true" : "false"}};
}

// The statement of each collector. Each method runs its own; Prefetch() sends them all in one
// round trip.
db::Statement QueueStatement() {
  return {.name = "stats_queue",
          .sql =
              "SELECT task, ready, scheduled, retry_wait, running, expired, "
              "oldest_ready_age_seconds, oldest_running_seconds, max_expired_overdue_seconds "
              "FROM jobs.stats_queue"};
}

db::Statement FinishedStatement(const FinishedQuery& q) {
  return {.name = "finished_stats",
          .sql =
              "SELECT kind, task, status, bucket, n, total FROM jobs.finished_stats($1::bigint, "
              "$2::float8[], $3::float8[], $4::float8[])",
          .params = {q.after ? db::Param(std::to_string(*q.after)) : db::Param(),
                     ArrayLiteral(q.wait_bounds), ArrayLiteral(q.run_bounds),
                     ArrayLiteral(q.attempt_bounds)}};
}

db::Statement PublishedByTaskStatement() {
  return {.name = "stats_published_by_task",
          .sql = "SELECT task, published_total FROM jobs.stats_published_by_task"};
}

db::Statement WorkersStatement() {
  return {.name = "stats_workers", .sql = "SELECT state, workers FROM jobs.stats_workers"};
}

db::Statement JobsOnStaleWorkersStatement() {
  return {.name = "stats_jobs_on_stale_workers",
          .sql = "SELECT task, jobs FROM jobs.stats_jobs_on_stale_workers"};
}

db::Statement RetentionStatement() {
  return {.name = "stats_retention",
          .sql =
              "SELECT status, keep_seconds, pruned_total, oldest_age_seconds "
              "FROM jobs.stats_retention ORDER BY status"};
}

db::Statement PausedTasksStatement() {
  return {.name = "stats_paused_tasks", .sql = "SELECT task FROM jobs.stats_paused_tasks"};
}

db::Statement DeduplicatedStatement() {
  return {.name = "stats_deduplicated",
          .sql = "SELECT task, deduplicated_total FROM jobs.stats_deduplicated"};
}

db::Statement SchedulesStatement() {
  return {.name = "stats_schedules",
          .sql =
              "SELECT name, last_enqueued_seconds, next_run_seconds "
              "FROM jobs.stats_schedules ORDER BY name"};
}

db::Statement TablesStatement() {
  return {.name = "stats_tables",
          .sql =
              "SELECT table_name, live_tuples, dead_tuples, total_bytes, "
              "seconds_since_vacuum FROM jobs.stats_tables"};
}

// The xid age needs no privilege; transaction start times of other roles' sessions are visible
// with pg_read_all_stats only, so that figure covers what this role can see.
db::Statement HealthStatement() {
  return {.name = "database health",
          .sql =
              "SELECT (SELECT extract(epoch FROM clock_timestamp() - min(xact_start)) "
              "        FROM pg_stat_activity WHERE xact_start IS NOT NULL "
              "          AND backend_type = 'client backend' AND pid <> pg_backend_pid()), "
              "       age(pg_snapshot_xmin(pg_current_snapshot())::text::xid), "
              "       pg_notification_queue_usage()"};
}

}  // namespace

StatsSource::StatsSource(db::ConnectOptions options) : options_(std::move(options)) {}
StatsSource::~StatsSource() = default;

db::Connection& StatsSource::Conn() {
  if (!connection_) throw db::DbError("not connected", "", "connect", true);
  return *connection_;
}

void StatsSource::Begin(std::chrono::steady_clock::time_point deadline,
                        std::chrono::milliseconds lock_timeout) {
  // The connection cancels at its deadline and gives the server kCancelGrace to answer: both
  // must fit before the scrape's deadline. The server's own statement_timeout ends a little
  // earlier, so that a healthy server stops a slow statement itself and the connection stays.
  const auto calls_end = deadline - db::Connection::kCancelGrace;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      calls_end - std::chrono::steady_clock::now());
  const auto statement_timeout = left - std::min(left / 10, std::chrono::milliseconds(100));
  if (left.count() <= 0 || statement_timeout.count() <= 0) {
    throw db::DbError("no time left before the scrape deadline", "57014", "connect", false);
  }
  if (!connection_ || !connection_->IsOpen()) {
    db::ConnectOptions options = options_;
    options.connect_timeout = std::min(options.connect_timeout, left);
    connection_ = std::make_unique<db::Connection>(options);
    connection_->SetDeadline(calls_end);
    // A read-only session: the monitoring role needs nothing else, and a mistake cannot write.
    // No JIT: the stats views' cost estimates look large on a big queue, but they run in
    // milliseconds, and compiling them took half a second per scrape (bench/RESULTS.md).
    // Behind a transaction pooler neither can be set: the monitoring role's grants are then
    // what keeps a scrape from writing.
    connection_->SetSession("configure session",
                            "SET default_transaction_read_only = on; SET jit = off");
  }
  connection_->SetDeadline(calls_end);
  statement_timeout_ = Millis(statement_timeout);
  lock_timeout_ = Millis(lock_timeout);
  if (options_.pooling == db::Pooling::kSession) {
    const db::Statement timeouts = Timeouts(statement_timeout_, lock_timeout_, false);
    Conn().Query(timeouts.name, timeouts.sql, timeouts.params);
  }
}

std::vector<db::Statement> StatsSource::InOwnTransaction(db::Statement statement) const {
  if (options_.pooling == db::Pooling::kSession) return {std::move(statement)};
  return {Timeouts(statement_timeout_, lock_timeout_, true), std::move(statement)};
}

db::Result StatsSource::Run(const db::Statement& statement) {
  if (auto found = prefetched_.find(statement.name); found != prefetched_.end()) {
    Prefetched prefetched = std::move(found->second);
    prefetched_.erase(found);
    if (prefetched.sql == statement.sql && prefetched.params == statement.params) {
      prefetched_time_ += prefetched.took;
      if (prefetched.error) throw db::DbError(*prefetched.error);
      return std::move(*prefetched.result);
    }
  }
  if (options_.pooling == db::Pooling::kSession) {
    return Conn().Query(statement.name, statement.sql, statement.params);
  }
  return Conn().RunInOneTransaction(InOwnTransaction(statement)).back();
}

void StatsSource::Prefetch(const FinishedQuery& finished) {
  prefetched_.clear();
  const std::vector<db::Statement> statements = {QueueStatement(),
                                                 FinishedStatement(finished),
                                                 PublishedByTaskStatement(),
                                                 WorkersStatement(),
                                                 JobsOnStaleWorkersStatement(),
                                                 TablesStatement(),
                                                 RetentionStatement(),
                                                 PausedTasksStatement(),
                                                 DeduplicatedStatement(),
                                                 SchedulesStatement(),
                                                 HealthStatement()};
  std::vector<std::vector<db::Statement>> transactions;
  transactions.reserve(statements.size());
  for (const db::Statement& s : statements) transactions.push_back(InOwnTransaction(s));
  const auto sent_at = std::chrono::steady_clock::now();
  std::vector<db::PipelineOutcome> outcomes = Conn().RunPipelines(transactions);
  auto previous = sent_at;
  for (size_t i = 0; i < statements.size(); ++i) {
    db::PipelineOutcome& outcome = outcomes[i];
    Prefetched prefetched{.sql = statements[i].sql,
                          .params = statements[i].params,
                          .took = outcome.ended_at - previous};
    previous = outcome.ended_at;
    if (outcome.error) {
      prefetched.error = std::move(outcome.error);
    } else {
      prefetched.result = std::move(outcome.results.back());
    }
    prefetched_.insert_or_assign(statements[i].name, std::move(prefetched));
  }
}

std::chrono::nanoseconds StatsSource::TakePrefetchedTime() {
  return std::exchange(prefetched_time_, std::chrono::nanoseconds(0));
}

std::vector<QueueRow> StatsSource::Queue() {
  db::Result r = Run(QueueStatement());
  std::vector<QueueRow> rows;
  for (int i = 0; i < r.Rows(); ++i) {
    rows.push_back({std::string(r.Text(i, 0)), r.Double(i, 1), r.Double(i, 2), r.Double(i, 3),
                    r.Double(i, 4), r.Double(i, 5), r.Double(i, 6), r.Double(i, 7),
                    r.Double(i, 8)});
  }
  return rows;
}

FinishedBatch StatsSource::Finished(const FinishedQuery& query) {
  db::Result r = Run(FinishedStatement(query));
  FinishedBatch batch;
  for (int i = 0; i < r.Rows(); ++i) {
    if (r.Text(i, 0) == "watermark") {
      batch.watermark = r.Int(i, 4);
      continue;
    }
    FinishedRow row;
    row.kind = r.Text(i, 0);
    row.task = r.Text(i, 1);
    row.status = r.Text(i, 2);
    row.bucket = r.IsNull(i, 3) ? 0 : static_cast<int>(r.Int(i, 3));
    row.n = r.Double(i, 4);
    row.total = r.IsNull(i, 5) ? 0 : r.Double(i, 5);
    batch.rows.push_back(std::move(row));
  }
  return batch;
}

std::vector<std::pair<std::string, double>> StatsSource::PublishedByTask() {
  db::Result r = Run(PublishedByTaskStatement());
  std::vector<std::pair<std::string, double>> out;
  for (int i = 0; i < r.Rows(); ++i) out.emplace_back(r.Text(i, 0), r.Double(i, 1));
  return out;
}

std::pair<double, double> StatsSource::Workers() {
  db::Result r = Run(WorkersStatement());
  std::pair<double, double> out{0, 0};
  for (int i = 0; i < r.Rows(); ++i) {
    (r.Text(i, 0) == "alive" ? out.first : out.second) = r.Double(i, 1);
  }
  return out;
}

std::vector<std::pair<std::string, double>> StatsSource::JobsOnStaleWorkers() {
  db::Result r = Run(JobsOnStaleWorkersStatement());
  std::vector<std::pair<std::string, double>> out;
  for (int i = 0; i < r.Rows(); ++i) out.emplace_back(r.Text(i, 0), r.Double(i, 1));
  return out;
}

std::vector<RetentionRow> StatsSource::Retention() {
  db::Result r = Run(RetentionStatement());
  std::vector<RetentionRow> out;
  for (int i = 0; i < r.Rows(); ++i) {
    RetentionRow row{std::string(r.Text(i, 0)), std::nullopt, r.Double(i, 2), r.Double(i, 3)};
    if (!r.IsNull(i, 1)) row.keep_seconds = r.Double(i, 1);
    out.push_back(std::move(row));
  }
  return out;
}

std::vector<std::string> StatsSource::PausedTasks() {
  db::Result r = Run(PausedTasksStatement());
  std::vector<std::string> out;
  for (int i = 0; i < r.Rows(); ++i) out.emplace_back(r.Text(i, 0));
  return out;
}

std::vector<std::pair<std::string, double>> StatsSource::Deduplicated() {
  db::Result r = Run(DeduplicatedStatement());
  std::vector<std::pair<std::string, double>> out;
  for (int i = 0; i < r.Rows(); ++i) out.emplace_back(r.Text(i, 0), r.Double(i, 1));
  return out;
}

std::vector<ScheduleRow> StatsSource::Schedules() {
  db::Result r = Run(SchedulesStatement());
  std::vector<ScheduleRow> out;
  for (int i = 0; i < r.Rows(); ++i) {
    ScheduleRow row{std::string(r.Text(i, 0)), std::nullopt, std::nullopt};
    if (!r.IsNull(i, 1)) row.last_enqueued_seconds = r.Double(i, 1);
    if (!r.IsNull(i, 2)) row.next_run_seconds = r.Double(i, 2);
    out.push_back(std::move(row));
  }
  return out;
}

std::vector<TableRow> StatsSource::Tables() {
  db::Result r = Run(TablesStatement());
  std::vector<TableRow> out;
  for (int i = 0; i < r.Rows(); ++i) {
    TableRow t{std::string(r.Text(i, 0)), r.Double(i, 1), r.Double(i, 2), r.Double(i, 3),
               std::nullopt};
    if (!r.IsNull(i, 4)) t.seconds_since_vacuum = r.Double(i, 4);
    out.push_back(std::move(t));
  }
  return out;
}

DatabaseHealth StatsSource::Health() {
  db::Result r = Run(HealthStatement());
  DatabaseHealth h;
  if (!r.IsNull(0, 0)) h.oldest_transaction_seconds = r.Double(0, 0);
  h.oldest_xid_age = r.Double(0, 1);
  h.notification_queue_usage = r.Double(0, 2);
  return h;
}

CustomResult StatsSource::Custom(const std::string& query, std::chrono::milliseconds timeout) {
  db::Connection& conn = Conn();
  conn.Execute("begin custom query", "BEGIN");
  try {
    const db::Statement timeouts = Timeouts(Millis(timeout), lock_timeout_, true);
    conn.Query("custom query timeout", timeouts.sql, timeouts.params);
    db::Result r = conn.Query("custom query", query);
    conn.Execute("end custom query", "COMMIT");
    CustomResult out;
    for (int c = 0; c < r.Columns(); ++c) out.columns.push_back(r.ColumnName(c));
    for (int i = 0; i < r.Rows(); ++i) {
      std::vector<std::optional<std::string>> row;
      for (int c = 0; c < r.Columns(); ++c) {
        row.push_back(r.IsNull(i, c) ? std::nullopt
                                     : std::optional<std::string>(std::string(r.Text(i, c))));
      }
      out.rows.push_back(std::move(row));
    }
    return out;
  } catch (const db::DbError&) {
    if (conn.IsOpen()) conn.Execute("rollback custom query", "ROLLBACK");
    throw;
  }
}

void StatsSource::ForgetIfBroken() {
  if (connection_ && !connection_->IsOpen()) connection_.reset();
}

}  // namespace pgjobs::exporter
