// SPDX-License-Identifier: Apache-2.0
#include "pgjobs/client/client.h"

#include <cmath>
#include <ctime>
#include <mutex>
#include <thread>

#include "pgjobs/db/connection.h"

namespace pgjobs::client {
namespace {

using db::Param;

// Characters, not bytes: the database counts a task's length in characters.
size_t Utf8Length(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

bool Blank(const std::string& s) { return s.find_first_not_of(" \t\n\r\f\v") == std::string::npos; }

// UTC, microseconds: the clients' sessions run with TimeZone UTC.
std::string Timestamp(std::chrono::system_clock::time_point at) {
  const auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(at.time_since_epoch()).count();
  const std::time_t seconds = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buf[40];
  const size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%06lld", static_cast<long long>(us % 1000000));
  return buf;
}

// One element of a text[] literal.
void AppendElement(std::string& out, const std::optional<std::string>& value) {
  if (out.size() > 1) out += ',';
  if (!value) {
    out += "NULL";
    return;
  }
  out += '"';
  for (char c : *value) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}

std::string Number(double value) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", value);
  return buf;
}

// A chunk's columns as the array literals publish_bulk's query takes.
struct Columns {
  std::string tasks = "{", arguments = "{", scheduled = "{", timeouts = "{", priorities = "{",
              retries = "{";
  void Add(const NewJob& job) {
    const PublishOptions& o = job.options;
    AppendElement(tasks, job.task);
    AppendElement(arguments, job.arguments);
    AppendElement(scheduled, o.scheduled_at ? std::optional<std::string>(Timestamp(*o.scheduled_at))
                                            : std::nullopt);
    AppendElement(timeouts, o.timeout_seconds ? std::optional<std::string>(std::to_string(
                                                    static_cast<long long>(*o.timeout_seconds)))
                                              : std::nullopt);
    AppendElement(priorities, o.priority ? std::optional<std::string>(std::to_string(*o.priority))
                                         : std::nullopt);
    AppendElement(retries, o.max_retries
                               ? std::optional<std::string>(std::to_string(*o.max_retries))
                               : std::nullopt);
  }
  [[nodiscard]] db::Params Params() const {
    return {tasks + "}",    arguments + "}",  scheduled + "}",
            timeouts + "}", priorities + "}", retries + "}"};
  }
};

constexpr const char* kBulkSql =
    "SELECT job_id FROM jobs.publish_bulk(ARRAY("
    "SELECT (u.t, u.a::jsonb, u.s::timestamp, u.o, u.p, u.m)::jobs.bulk_job "
    "FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::int[], $6::int[]) "
    "WITH ORDINALITY AS u(t, a, s, o, p, m, n) ORDER BY u.n))";

// What this side can tell of a job before the database does, with PublishBulk's reasons.
void Check(const NewJob& job, size_t index) {
  const std::string where = "PublishBulk: job " + std::to_string(index + 1) + ": ";
  if (Blank(job.task)) throw Error(where + "task must be a non-blank string");
  if (Utf8Length(job.task) > 200) {
    throw Error(where + "task must be at most 200 characters, got " +
                std::to_string(Utf8Length(job.task)));
  }
  if (const auto& t = job.options.timeout_seconds) {
    if (!std::isfinite(*t) || *t < 1 || *t > 99999 || std::floor(*t) != *t) {
      throw Error(where + "timeout must be a whole number of seconds from 1 to 99999, got " +
                  Number(*t) + " (use Publish for fractions of a second)");
    }
  }
  if (job.options.max_retries && *job.options.max_retries < 0) {
    throw Error(where + "max_retries must be zero or more, got " +
                std::to_string(*job.options.max_retries));
  }
}

}  // namespace

struct Client::Impl {
  ClientOptions options;
  std::vector<std::unique_ptr<db::Connection>> connections;

  db::Connection& Conn(size_t i) {
    if (connections.size() <= i) connections.resize(i + 1);
    auto& c = connections[i];
    if (!c || !c->IsOpen()) {
      c = std::make_unique<db::Connection>(
          db::ConnectOptions{.dsn = options.dsn,
                             .application_name = "pgjobs client",
                             .connect_timeout = options.connect_timeout,
                             .call_timeout = options.call_timeout});
      c->Execute("configure session", "SET TimeZone = 'UTC'; SET jit = off");
    }
    return *c;
  }
};

Client::Client(ClientOptions options) : impl_(std::make_unique<Impl>()) {
  db::CheckDsn(options.dsn);
  if (options.bulk_connections < 1 || options.bulk_chunk < 1) {
    throw Error("ClientOptions: bulk_connections and bulk_chunk must be at least 1");
  }
  impl_->options = std::move(options);
}

Client::~Client() = default;

long long Client::Publish(const std::string& task, const std::string& arguments,
                          const PublishOptions& o) {
  auto opt = [](bool has, const std::string& value) { return has ? Param(value) : Param(); };
  return impl_->Conn(0)
      .Query(
          "publish",
          "SELECT jobs.publish(i_task => $1, i_arguments => $2::jsonb, "
          "i_scheduled_at => $3::timestamptz, i_timeout => $4::numeric, "
          "i_priority => $5::int, i_max_retries => $6::int)",
          {task, arguments,
           opt(o.scheduled_at.has_value(),
               o.scheduled_at ? Timestamp(*o.scheduled_at) + "+00" : ""),
           opt(o.timeout_seconds.has_value(), o.timeout_seconds ? Number(*o.timeout_seconds) : ""),
           opt(o.priority.has_value(), o.priority ? std::to_string(*o.priority) : ""),
           opt(o.max_retries.has_value(), o.max_retries ? std::to_string(*o.max_retries) : "")})
      .Int(0, 0);
}

std::vector<long long> Client::PublishBulk(const std::vector<NewJob>& jobs) {
  for (size_t i = 0; i < jobs.size(); ++i) Check(jobs[i], i);
  const size_t chunk = static_cast<size_t>(impl_->options.bulk_chunk);
  const size_t chunks = (jobs.size() + chunk - 1) / chunk;
  std::vector<std::vector<long long>> ids(chunks);
  std::vector<std::string> errors(chunks);
  // Opened here, one thread at a time: a connection is not shared between threads.
  const size_t lanes = std::min(chunks, static_cast<size_t>(impl_->options.bulk_connections));
  for (size_t lane = 0; lane < lanes; ++lane) impl_->Conn(lane);
  auto run = [&](size_t lane) {
    db::Connection& conn = *impl_->connections[lane];
    for (size_t c = lane; c < chunks; c += lanes) {
      if (!conn.IsOpen()) {
        errors[c] = "the connection was lost before this chunk was sent";
        continue;
      }
      Columns columns;
      const size_t end = std::min(jobs.size(), (c + 1) * chunk);
      for (size_t i = c * chunk; i < end; ++i) columns.Add(jobs[i]);
      try {
        db::Result r = conn.Query("publish_bulk", kBulkSql, columns.Params());
        ids[c].reserve(static_cast<size_t>(r.Rows()));
        for (int row = 0; row < r.Rows(); ++row) ids[c].push_back(r.Int(row, 0));
      } catch (const Error& e) {
        errors[c] = e.what();
      }
    }
  };
  std::vector<std::thread> threads;
  for (size_t lane = 1; lane < lanes; ++lane) threads.emplace_back(run, lane);
  if (lanes > 0) run(0);
  for (auto& t : threads) t.join();

  std::vector<long long> published;
  published.reserve(jobs.size());
  std::string first_error;
  size_t failed_chunk = 0;
  for (size_t c = 0; c < chunks; ++c) {
    if (!errors[c].empty()) {
      if (first_error.empty()) {
        first_error = errors[c];
        failed_chunk = c;
      }
      continue;
    }
    published.insert(published.end(), ids[c].begin(), ids[c].end());
  }
  if (!first_error.empty()) {
    // The message is built before `published` moves into the error.
    std::string message = "PublishBulk: jobs " + std::to_string(failed_chunk * chunk + 1) + " to " +
                          std::to_string(std::min(jobs.size(), (failed_chunk + 1) * chunk)) +
                          " were not published: " + first_error + " (" +
                          std::to_string(published.size()) + " of " + std::to_string(jobs.size()) +
                          " were)";
    throw BulkError(message, std::move(published));
  }
  return published;
}

}  // namespace pgjobs::client
