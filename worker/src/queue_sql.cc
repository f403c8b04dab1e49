// SPDX-License-Identifier: Apache-2.0
#include "queue_sql.h"

#include <algorithm>
#include <cmath>

namespace pgjobs::worker::queue_sql {
namespace {

template <typename T>
std::string NumberArray(const std::vector<T>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) out += (i ? "," : "") + std::to_string(values[i]);
  return out + "}";
}

}  // namespace

std::string TextArray(const std::vector<std::string>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ',';
    out += '"';
    for (char c : values[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

void PrepareDispatcher(db::Connection& conn) {
  // consume's commit need not wait for the WAL flush: if a crash loses it, its jobs are simply
  // still pending, and the acks of those lost attempts are refused. Behind a transaction pooler
  // neither lasts: the dispatcher listens on notify_dsn instead (Dispatcher::Listener).
  conn.SetSession("listen", "SET synchronous_commit = off; LISTEN jobs");
  // date_part, not extract: it yields the float8 directly, where extract computes a numeric
  // first, a cost paid for every job.
  conn.Prepare("consume",
               "SELECT job_id, task, coalesce(arguments::text, 'null'), attempts, "
               "max_retries, timeout::float8, "
               "date_part('epoch', started_at - scheduled_at), "
               "date_part('epoch', started_at - published_at) "
               "FROM jobs.consume($1::int, $2::varchar[], $3::bigint)");
  conn.Prepare("next due", "SELECT jobs.seconds_until_next_due($1::varchar[])");
}

long long Register(db::Connection& conn, const std::string& name, const std::string& host, int pid,
                   int concurrency, std::chrono::milliseconds stale_after) {
  return conn
      .Query("register", "SELECT jobs.register_worker($1, $2, $3::int, $4::int, $5::interval)",
             {name, host, std::to_string(pid), std::to_string(concurrency),
              std::to_string(stale_after.count()) + " milliseconds"})
      .Int(0, 0);
}

void Heartbeat(db::Connection& conn, long long worker_id) {
  conn.Query("heartbeat", "SELECT jobs.heartbeat($1::bigint)", {std::to_string(worker_id)});
}

std::vector<long long> CancelRequested(db::Connection& conn, long long worker_id) {
  db::Result r = conn.Query("cancel requested", "SELECT jobs.cancel_requested($1::bigint)",
                            {std::to_string(worker_id)});
  std::vector<long long> out;
  for (int i = 0; i < r.Rows(); ++i) out.push_back(r.Int(i, 0));
  return out;
}

void Unregister(db::Connection& conn, long long worker_id) {
  conn.Query("unregister", "SELECT jobs.unregister_worker($1::bigint)",
             {std::to_string(worker_id)});
}

std::vector<Consumed> Consume(db::Connection& conn, int want, const std::string& tasks,
                              long long worker_id, Clock::time_point now) {
  db::Result rows =
      conn.QueryPrepared("consume", {std::to_string(want), tasks, std::to_string(worker_id)});
  std::vector<Consumed> out(static_cast<size_t>(rows.Rows()));
  for (int i = 0; i < rows.Rows(); ++i) {
    Consumed& c = out[static_cast<size_t>(i)];
    Job& job = c.taken.job;
    job.id = rows.Int(i, 0);
    job.task = rows.Text(i, 1);
    job.arguments = rows.Text(i, 2);
    job.attempt = static_cast<int>(rows.Int(i, 3));
    job.max_retries = static_cast<int>(rows.Int(i, 4));
    job.deadline = now + std::chrono::microseconds(static_cast<long long>(rows.Double(i, 5) * 1e6));
    c.wait_seconds = rows.Double(i, 6);
    c.taken.since_publish = rows.Double(i, 7);
    c.taken.started = now;
  }
  return out;
}

std::optional<double> SecondsUntilNextDue(db::Connection& conn, const std::string& tasks) {
  db::Result due = conn.QueryPrepared("next due", {tasks});
  if (due.IsNull(0, 0)) return std::nullopt;
  const double seconds = due.Double(0, 0);
  if (!std::isfinite(seconds)) return std::nullopt;
  return seconds;
}

const Decision* Find(const Decisions& decisions, long long job_id) {
  auto it = std::lower_bound(decisions.begin(), decisions.end(), job_id,
                             [](const auto& d, long long id) { return d.first < id; });
  return it != decisions.end() && it->first == job_id ? &it->second : nullptr;
}

Decisions Complete(db::Connection& conn, const std::vector<Report>& reports) {
  std::vector<long long> ack_ids, nack_ids;
  std::vector<int> ack_attempts, nack_attempts;
  std::vector<std::string> tracebacks;
  ack_ids.reserve(reports.size());
  ack_attempts.reserve(reports.size());
  for (const Report& r : reports) {
    if (r.traceback) {
      nack_ids.push_back(r.job_id);
      nack_attempts.push_back(r.attempt);
      tracebacks.push_back(*r.traceback);
    } else {
      ack_ids.push_back(r.job_id);
      ack_attempts.push_back(r.attempt);
    }
  }
  db::Result rows =
      conn.Query("complete",
                 "SELECT job_id, outcome FROM jobs.complete($1::bigint[], $2::int[], $3::bigint[], "
                 "$4::text[], $5::int[])",
                 {NumberArray(ack_ids), NumberArray(ack_attempts), NumberArray(nack_ids),
                  TextArray(tracebacks), NumberArray(nack_attempts)});
  Decisions out;
  out.reserve(static_cast<size_t>(rows.Rows()));
  for (int i = 0; i < rows.Rows(); ++i) {
    const std::string_view outcome = rows.Text(i, 1);
    out.emplace_back(rows.Int(i, 0), outcome == "success" ? Decision::kSucceeded
                                     : outcome == "retry" ? Decision::kRetried
                                                          : Decision::kFailed);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return out;
}

db::Statement StatementTimeout(long long milliseconds) {
  return {"statement timeout",
          "SELECT set_config('statement_timeout', $1, true)",
          {std::to_string(milliseconds)}};
}

db::Statement Ack(const Job& job) {
  return {"ack",
          "SELECT jobs.ack($1::bigint, $2::int)",
          {std::to_string(job.id), std::to_string(job.attempt)}};
}

}  // namespace pgjobs::worker::queue_sql
