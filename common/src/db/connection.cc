// SPDX-License-Identifier: Apache-2.0
#include "pgjobs/db/connection.h"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <map>
#include <mutex>
#include <thread>

#include "pgjobs/db/dsn.h"

namespace pgjobs::db {

struct Result::Impl {
  explicit Impl(PGresult* r) : result(r) {}
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl() { PQclear(result); }
  PGresult* result;
};

Result::Result() = default;
Result::Result(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

int Result::Rows() const { return impl_ ? PQntuples(impl_->result) : 0; }
int Result::Columns() const { return impl_ ? PQnfields(impl_->result) : 0; }

void Result::Check(int row, int column) const {
  if (row < 0 || row >= Rows() || column < 0 || column >= Columns()) {
    throw Error("result has " + std::to_string(Rows()) + " rows and " + std::to_string(Columns()) +
                " columns; no value at row " + std::to_string(row) + ", column " +
                std::to_string(column));
  }
}

bool Result::IsNull(int row, int column) const {
  Check(row, column);
  return PQgetisnull(impl_->result, row, column) != 0;
}

std::string_view Result::Text(int row, int column) const {
  Check(row, column);
  return {PQgetvalue(impl_->result, row, column),
          static_cast<size_t>(PQgetlength(impl_->result, row, column))};
}

long long Result::Int(int row, int column) const {
  std::string_view text = Text(row, column);
  long long value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    throw Error("column " + std::string(PQfname(impl_->result, column)) +
                ": expected an integer, got '" + std::string(text) + "'");
  }
  return value;
}

double Result::Double(int row, int column) const {
  const std::string text(Text(row, column));
  if (text == "Infinity") return HUGE_VAL;
  if (text == "-Infinity") return -HUGE_VAL;
  if (text == "NaN") return std::nan("");
  char* end = nullptr;
  errno = 0;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || errno == ERANGE) {
    throw Error("column " + std::string(PQfname(impl_->result, column)) +
                ": expected a number, got '" + text + "'");
  }
  return value;
}

std::string Result::ColumnName(int column) const {
  if (column < 0 || column >= Columns()) {
    throw Error("result has " + std::to_string(Columns()) + " columns; no column " +
                std::to_string(column));
  }
  return PQfname(impl_->result, column);
}

int Result::ColumnIndex(std::string_view name) const {
  for (int c = 0; c < Columns(); ++c) {
    if (name == PQfname(impl_->result, c)) return c;
  }
  throw Error("result has no column named '" + std::string(name) + "'");
}

namespace {

using Clock = std::chrono::steady_clock;

// libpq's last error without its trailing newline.
std::string TrimmedError(const PGconn* conn) {
  std::string message = conn != nullptr ? PQerrorMessage(conn) : "";
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) {
    message.pop_back();
  }
  return message.empty() ? "connection lost" : message;
}

// Milliseconds from now until `until`, for poll(): at least 0, at most a minute per wait (the
// caller loops).
int PollTimeout(Clock::time_point until) {
  if (until == Clock::time_point::max()) return 60000;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(until - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(ms, 0, 60000));
}

// Cancel requests in flight. PQcancel opens a connection of its own and blocks without a
// timeout of its own, so it runs on a thread that the caller never waits for; this bounds how
// many such threads a server that accepts but never answers can hold.
std::atomic<int> cancels_in_flight{0};
constexpr int kMaxCancelsInFlight = 8;

}  // namespace

void CheckDsn(const std::string& dsn) {
  // libpq takes a string without '=' as a bare database name; parse first so that a malformed
  // DSN is reported as such rather than as a failed connection to a local socket.
  char* parse_error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(dsn.c_str(), &parse_error);
  if (parsed == nullptr) {
    std::string reason = parse_error != nullptr ? parse_error : "out of memory";
    PQfreemem(parse_error);
    while (!reason.empty() && reason.back() == '\n') reason.pop_back();
    throw DbError("connecting to " + RedactDsn(dsn) + ": invalid DSN: " + reason, "", "connect",
                  true);
  }
  PQconninfoFree(parsed);
}

struct Connection::Impl {
  PGconn* conn = nullptr;
  // Cancel() runs on other threads: the cancel object is shared with the thread that sends it.
  std::mutex cancel_mutex;
  std::shared_ptr<PGcancel> cancel;
  bool broken = false;
  Pooling pooling = Pooling::kSession;
  // Under Pooling::kTransaction: the statements Prepare() was given, run unnamed.
  std::map<std::string, std::string, std::less<>> statements;
  std::chrono::milliseconds call_timeout{0};
  std::optional<Clock::time_point> deadline;
  // The deadline of the call in progress, fixed when it starts.
  Clock::time_point call_deadline = Clock::time_point::max();

  ~Impl() {
    if (conn != nullptr) PQfinish(conn);
  }

  // Fixes the deadline of a call that starts now.
  void StartCall() {
    call_deadline = deadline.value_or(Clock::time_point::max());
    if (call_timeout.count() > 0) {
      call_deadline = std::min(call_deadline, Clock::now() + call_timeout);
    }
  }

  // Sends a cancel request from a thread of its own. The connection is given up afterwards: the
  // request may reach the server after the statement it meant has ended, and would then cancel
  // the next one.
  void SendCancel() noexcept {
    broken = true;
    std::shared_ptr<PGcancel> c;
    {
      std::lock_guard<std::mutex> lock(cancel_mutex);
      c = cancel;
    }
    if (!c || cancels_in_flight.fetch_add(1) >= kMaxCancelsInFlight) {
      if (c) --cancels_in_flight;
      return;
    }
    try {
      std::thread([c] {
        char error[256];
        PQcancel(c.get(), error, sizeof error);
        --cancels_in_flight;
      }).detach();
    } catch (const std::system_error&) {
      --cancels_in_flight;  // no thread to spare: the deadline still abandons the connection
    }
  }

  // Turns a failed result (or none) into a DbError: "<statement>: <message> (<detail>) hint:
  // <hint> [SQLSTATE xxxxx]". Consumes `result`.
  [[noreturn]] void Fail(std::string_view name, PGresult* result) { throw ErrorOf(name, result); }

  DbError ErrorOf(std::string_view name, PGresult* result) {
    std::string sqlstate;
    std::string primary;
    std::string message;
    if (result != nullptr) {
      auto field = [result](int code) {
        const char* value = PQresultErrorField(result, code);
        return value != nullptr ? std::string(value) : std::string();
      };
      sqlstate = field(PG_DIAG_SQLSTATE);
      primary = field(PG_DIAG_MESSAGE_PRIMARY);
      message = primary;
      if (const std::string detail = field(PG_DIAG_MESSAGE_DETAIL); !detail.empty()) {
        message += " (" + detail + ")";
      }
      if (const std::string hint = field(PG_DIAG_MESSAGE_HINT); !hint.empty()) {
        message += " hint: " + hint;
      }
      if (!sqlstate.empty()) message += " [SQLSTATE " + sqlstate + "]";
      PQclear(result);
    }
    if (primary.empty()) message = TrimmedError(conn);
    if (PQstatus(conn) == CONNECTION_BAD) broken = true;
    return DbError(std::string(name) + ": " + message, sqlstate, std::string(name), broken,
                   primary);
  }

  // The server neither answered by the deadline nor to the cancel: nothing more can be read from
  // this connection in order, so it is given up.
  [[noreturn]] void Abandon(std::string_view name) {
    broken = true;
    throw DbError(std::string(name) +
                      ": no answer from the server by the deadline, nor to a cancel request; "
                      "the connection was abandoned [SQLSTATE 57014]",
                  "57014", std::string(name), true);
  }

  // Waits until the socket is ready for `events`, or until `until`. False on timeout.
  bool WaitSocket(short events, Clock::time_point until) {
    pollfd fd{PQsocket(conn), events, 0};
    for (;;) {
      const int ready = poll(&fd, 1, PollTimeout(until));
      if (ready > 0) return true;
      if (ready < 0 && errno != EINTR) return true;  // let libpq see and report the error
      if (Clock::now() >= until) return false;
    }
  }

  // Runs `wait_once(until)` until it reports done, enforcing the call's deadline: at the
  // deadline the statement is cancelled, and kCancelGrace later the connection is abandoned.
  template <typename Step>
  void UntilDone(std::string_view name, Step&& step) {
    Clock::time_point until = call_deadline;
    bool cancelled = false;
    for (;;) {
      if (step(until)) return;
      if (Clock::now() < until) continue;
      if (cancelled) Abandon(name);
      SendCancel();
      cancelled = true;
      until = Clock::now() + Connection::kCancelGrace;
    }
  }

  // Sends what libpq has buffered (non-blocking mode), reading meanwhile as the protocol
  // requires, within the call's deadline.
  void Flush(std::string_view name) {
    UntilDone(name, [&](Clock::time_point until) {
      const int left = PQflush(conn);
      if (left == 0) return true;
      if (left < 0) {
        broken = true;
        Fail(name, nullptr);
      }
      if (WaitSocket(POLLIN | POLLOUT, until) && PQconsumeInput(conn) == 0) {
        broken = true;
        Fail(name, nullptr);
      }
      return false;
    });
  }

  // The next result of the call in progress (nullptr at the end of one statement's results),
  // waiting for it within the call's deadline.
  PGresult* NextResult(std::string_view name) {
    UntilDone(name, [&](Clock::time_point until) {
      if (!PQisBusy(conn)) return true;
      if (WaitSocket(POLLIN, until) && PQconsumeInput(conn) == 0) {
        broken = true;
        Fail(name, nullptr);
      }
      return false;
    });
    return PQgetResult(conn);
  }

  // Sends a query that `send` queued, then returns its one result.
  template <typename Send>
  Result Call(std::string_view name, Send&& send) {
    StartCall();
    if (send() == 0) Fail(name, nullptr);
    Flush(name);
    PGresult* result = NextResult(name);
    // Drain the end of the statement's results; a second result is an error only in theory.
    while (PGresult* extra = NextResult(name)) PQclear(extra);
    return Check(name, result);
  }

  Result Check(std::string_view name, PGresult* result) {
    const ExecStatusType status = result != nullptr ? PQresultStatus(result) : PGRES_FATAL_ERROR;
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) Fail(name, result);
    return Result(std::make_shared<const Result::Impl>(result));
  }
};

Connection::Connection(const ConnectOptions& options) : impl_(std::make_unique<Impl>()) {
  CheckDsn(options.dsn);
  impl_->call_timeout = options.call_timeout;
  impl_->pooling = options.pooling;
  const char* keys[] = {"dbname", "application_name", nullptr};
  const char* values[] = {options.dsn.c_str(), options.application_name.c_str(), nullptr};
  // expand_dbname=1: the dsn is a full connection string; later keys fill in what it omits.
  impl_->conn = PQconnectStartParams(keys, values, 1);
  if (impl_->conn == nullptr) {
    throw DbError("connecting to " + RedactDsn(options.dsn) + ": out of memory", "", "connect",
                  true);
  }
  auto failed = [&](const std::string& reason) {
    return DbError("connecting to " + RedactDsn(options.dsn) + ": " + reason, "08001", "connect",
                   true);
  };
  // libpq enforces connect_timeout only when it blocks itself; here every wait is ours.
  const Clock::time_point until = Clock::now() + options.connect_timeout;
  PostgresPollingStatusType polling = PGRES_POLLING_WRITING;
  while (PQstatus(impl_->conn) != CONNECTION_BAD && polling != PGRES_POLLING_OK &&
         polling != PGRES_POLLING_FAILED) {
    const short events = polling == PGRES_POLLING_READING ? POLLIN : POLLOUT;
    if (!impl_->WaitSocket(events, until)) {
      throw failed("timed out after " + std::to_string(options.connect_timeout.count()) + " ms");
    }
    polling = PQconnectPoll(impl_->conn);
  }
  if (PQstatus(impl_->conn) != CONNECTION_OK) throw failed(TrimmedError(impl_->conn));
  // Non-blocking: a send that the server does not read (a stopped backend) must not block us.
  PQsetnonblocking(impl_->conn, 1);
  impl_->cancel = std::shared_ptr<PGcancel>(PQgetCancel(impl_->conn), [](PGcancel* c) {
    if (c != nullptr) PQfreeCancel(c);
  });
}

Connection::~Connection() = default;
Connection::Connection(Connection&&) noexcept = default;
Connection& Connection::operator=(Connection&&) noexcept = default;

void Connection::SetDeadline(std::optional<Clock::time_point> deadline) {
  impl_->deadline = deadline;
}

void Connection::Execute(std::string_view name, const std::string& sql) {
  impl_->StartCall();
  if (PQsendQuery(impl_->conn, sql.c_str()) == 0) impl_->Fail(name, nullptr);
  impl_->Flush(name);
  // The simple protocol returns one result per statement; keep the first error.
  PGresult* failed = nullptr;
  while (PGresult* result = impl_->NextResult(name)) {
    const ExecStatusType status = PQresultStatus(result);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK && failed == nullptr) {
      failed = result;
      continue;
    }
    PQclear(result);
  }
  if (failed != nullptr) impl_->Fail(name, failed);
  if (PQstatus(impl_->conn) == CONNECTION_BAD) impl_->Fail(name, nullptr);
}

namespace {

struct ParamArrays {
  std::vector<const char*> values;
  explicit ParamArrays(const Params& params) {
    values.reserve(params.size());
    for (const Param& p : params) values.push_back(p ? p->c_str() : nullptr);
  }
};

}  // namespace

Result Connection::Query(std::string_view name, const std::string& sql, const Params& params) {
  ParamArrays arrays(params);
  return impl_->Call(name, [&] {
    return PQsendQueryParams(impl_->conn, sql.c_str(), static_cast<int>(params.size()), nullptr,
                             arrays.values.data(), nullptr, nullptr, 0);
  });
}

void Connection::SetSession(std::string_view name, const std::string& sql) {
  if (impl_->pooling == Pooling::kSession) Execute(name, sql);
}

void Connection::Prepare(const std::string& name, const std::string& sql) {
  if (impl_->pooling == Pooling::kTransaction) {
    impl_->statements[name] = sql;
    return;
  }
  impl_->Call(name,
              [&] { return PQsendPrepare(impl_->conn, name.c_str(), sql.c_str(), 0, nullptr); });
}

Result Connection::QueryPrepared(const std::string& name, const Params& params) {
  if (impl_->pooling == Pooling::kTransaction) {
    auto statement = impl_->statements.find(name);
    if (statement == impl_->statements.end()) {
      throw Error("statement '" + name + "' was never prepared on this connection");
    }
    return Query(name, statement->second, params);
  }
  ParamArrays arrays(params);
  return impl_->Call(name, [&] {
    return PQsendQueryPrepared(impl_->conn, name.c_str(), static_cast<int>(params.size()),
                               arrays.values.data(), nullptr, nullptr, 0);
  });
}

PipelineOutcome Connection::RunPipeline(const std::vector<Statement>& statements) {
  if (statements.empty()) return {};
  return std::move(RunPipelines({statements}).front());
}

std::vector<PipelineOutcome> Connection::RunPipelines(
    const std::vector<std::vector<Statement>>& transactions) {
  PGconn* conn = impl_->conn;
  std::vector<PipelineOutcome> outcomes(transactions.size());
  if (transactions.empty()) return outcomes;
  // What a failure to enter pipeline mode is reported as.
  const std::string first_name =
      transactions.front().empty() ? "commit" : transactions.front().front().name;
  impl_->StartCall();
  if (PQenterPipelineMode(conn) == 0) impl_->Fail(first_name, nullptr);
  for (const std::vector<Statement>& statements : transactions) {
    for (const Statement& s : statements) {
      ParamArrays arrays(s.params);
      std::vector<Oid> types(s.param_types.begin(), s.param_types.end());
      types.resize(types.empty() ? 0 : s.params.size(), 0);
      if (PQsendQueryParams(conn, s.sql.c_str(), static_cast<int>(s.params.size()),
                            types.empty() ? nullptr : types.data(), arrays.values.data(), nullptr,
                            nullptr, 0) == 0) {
        impl_->broken = true;  // a pipeline that cannot be sent cannot be resumed either
        impl_->Fail(s.name, nullptr);
      }
    }
    // Each transaction ends at its own sync point: a failure aborts the rest of its own
    // statements, not those of the next transaction.
    if (PQpipelineSync(conn) == 0) {
      impl_->broken = true;
      impl_->Fail("commit", nullptr);
    }
  }
  std::vector<PGresult*> failed(transactions.size(), nullptr);
  try {
    impl_->Flush("commit");
    for (size_t t = 0; t < transactions.size(); ++t) {
      const size_t count = transactions[t].size();
      PipelineOutcome& outcome = outcomes[t];
      outcome.results.resize(count);
      // Each statement's results end with a null; the sync point's own result ends them all.
      for (size_t index = 0;;) {
        PGresult* r = impl_->NextResult("commit");
        if (r == nullptr) {
          if (PQstatus(conn) == CONNECTION_BAD || ++index > count) {
            impl_->broken = true;
            impl_->Fail("commit", nullptr);
          }
          continue;
        }
        const ExecStatusType status = PQresultStatus(r);
        if (status == PGRES_PIPELINE_SYNC) {
          PQclear(r);
          outcome.ended_at = std::chrono::steady_clock::now();
          break;
        }
        if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) {
          // index < count here: the loop stops once every statement's results have ended.
          outcome.results[index] = Result(std::make_shared<const Result::Impl>(r));
        } else if (status == PGRES_PIPELINE_ABORTED) {
          PQclear(r);  // skipped after an earlier failure
        } else if (PQstatus(conn) == CONNECTION_BAD) {
          impl_->broken = true;
          impl_->Fail("commit", r);
        } else if (failed[t] == nullptr) {
          failed[t] = r;
          outcome.failed = index;
        } else {
          PQclear(r);
        }
      }
    }
  } catch (const DbError&) {
    // Lost (or abandoned) once the sync points were sent: a transaction may or may not have
    // committed, so it is reported as the commit that failed (CommitOutcomeUnknown).
    for (PGresult* r : failed) PQclear(r);
    impl_->broken = true;
    throw;
  }
  PQexitPipelineMode(conn);
  for (size_t t = 0; t < transactions.size(); ++t) {
    if (failed[t] == nullptr) continue;
    outcomes[t].error = impl_->ErrorOf(transactions[t][*outcomes[t].failed].name, failed[t]);
  }
  return outcomes;
}

std::vector<Result> Connection::RunInOneTransaction(const std::vector<Statement>& statements) {
  PipelineOutcome outcome = RunPipeline(statements);
  if (outcome.error) throw DbError(*outcome.error);
  return std::move(outcome.results);
}

void Connection::Cancel() noexcept { impl_->SendCancel(); }

bool Connection::IsOpen() const {
  return impl_ && !impl_->broken && PQstatus(impl_->conn) == CONNECTION_OK;
}

int Connection::Socket() const { return PQsocket(impl_->conn); }

int Connection::BackendPid() const { return PQbackendPID(impl_->conn); }

std::optional<Notification> Connection::NextNotification() {
  if (PQconsumeInput(impl_->conn) == 0) impl_->Fail("notifications", nullptr);
  PGnotify* notify = PQnotifies(impl_->conn);
  if (notify == nullptr) return std::nullopt;
  Notification out{notify->relname, notify->extra};
  PQfreemem(notify);
  return out;
}

}  // namespace pgjobs::db
