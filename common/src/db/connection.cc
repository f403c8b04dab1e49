#include "pgjobs/db/connection.h"

#include <libpq-fe.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <mutex>

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

// libpq's last error without its trailing newline.
std::string TrimmedError(const PGconn* conn) {
  std::string message = PQerrorMessage(conn);
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) {
    message.pop_back();
  }
  return message.empty() ? "connection lost" : message;
}

}  // namespace

struct Connection::Impl {
  PGconn* conn = nullptr;
  // Cancel() runs on other threads; the cancel object is replaced only under this mutex.
  std::mutex cancel_mutex;
  PGcancel* cancel = nullptr;
  bool broken = false;

  ~Impl() {
    if (cancel != nullptr) PQfreeCancel(cancel);
    if (conn != nullptr) PQfinish(conn);
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

  Result Check(std::string_view name, PGresult* result) {
    const ExecStatusType status = result != nullptr ? PQresultStatus(result) : PGRES_FATAL_ERROR;
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) Fail(name, result);
    return Result(std::make_shared<const Result::Impl>(result));
  }
};

Connection::Connection(const ConnectOptions& options) : impl_(std::make_unique<Impl>()) {
  // libpq takes a string without '=' as a bare database name; parse first so that a malformed DSN
  // is reported as such rather than as a failed connection to a local socket.
  char* parse_error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(options.dsn.c_str(), &parse_error);
  if (parsed == nullptr) {
    std::string reason = parse_error != nullptr ? parse_error : "out of memory";
    PQfreemem(parse_error);
    while (!reason.empty() && reason.back() == '\n') reason.pop_back();
    throw DbError("connecting to " + RedactDsn(options.dsn) + ": invalid DSN: " + reason, "",
                  "connect", true);
  }
  PQconninfoFree(parsed);
  const std::string timeout =
      std::to_string(std::max<long long>(1, (options.connect_timeout.count() + 999) / 1000));
  const char* keys[] = {"dbname", "application_name", "connect_timeout", nullptr};
  const char* values[] = {options.dsn.c_str(), options.application_name.c_str(), timeout.c_str(),
                          nullptr};
  // expand_dbname=1: the dsn is a full connection string; later keys fill in what it omits.
  impl_->conn = PQconnectdbParams(keys, values, 1);
  if (impl_->conn == nullptr) {
    throw DbError("connecting to " + RedactDsn(options.dsn) + ": out of memory", "", "connect",
                  true);
  }
  if (PQstatus(impl_->conn) != CONNECTION_OK) {
    throw DbError("connecting to " + RedactDsn(options.dsn) + ": " + TrimmedError(impl_->conn),
                  "08001", "connect", true);
  }
  impl_->cancel = PQgetCancel(impl_->conn);
}

Connection::~Connection() = default;
Connection::Connection(Connection&&) noexcept = default;
Connection& Connection::operator=(Connection&&) noexcept = default;

void Connection::Execute(std::string_view name, const std::string& sql) {
  PGresult* last = nullptr;
  if (PQsendQuery(impl_->conn, sql.c_str()) == 0) impl_->Fail(name, nullptr);
  // The simple protocol returns one result per statement; keep the first error, or the last.
  PGresult* failed = nullptr;
  while (PGresult* result = PQgetResult(impl_->conn)) {
    const ExecStatusType status = PQresultStatus(result);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK && failed == nullptr) {
      failed = result;
      continue;
    }
    if (last != nullptr) PQclear(last);
    last = result;
  }
  if (last != nullptr) PQclear(last);
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
  return impl_->Check(name, PQexecParams(impl_->conn, sql.c_str(), static_cast<int>(params.size()),
                                         nullptr, arrays.values.data(), nullptr, nullptr, 0));
}

void Connection::Prepare(const std::string& name, const std::string& sql) {
  impl_->Check(name, PQprepare(impl_->conn, name.c_str(), sql.c_str(), 0, nullptr));
}

Result Connection::QueryPrepared(const std::string& name, const Params& params) {
  ParamArrays arrays(params);
  return impl_->Check(name,
                      PQexecPrepared(impl_->conn, name.c_str(), static_cast<int>(params.size()),
                                     arrays.values.data(), nullptr, nullptr, 0));
}

PipelineOutcome Connection::RunPipeline(const std::vector<Statement>& statements) {
  PGconn* conn = impl_->conn;
  PipelineOutcome outcome;
  if (statements.empty()) return outcome;
  if (PQenterPipelineMode(conn) == 0) impl_->Fail(statements.front().name, nullptr);
  for (const Statement& s : statements) {
    ParamArrays arrays(s.params);
    if (PQsendQueryParams(conn, s.sql.c_str(), static_cast<int>(s.params.size()), nullptr,
                          arrays.values.data(), nullptr, nullptr, 0) == 0) {
      impl_->broken = true;  // a pipeline that cannot be sent cannot be resumed either
      impl_->Fail(s.name, nullptr);
    }
  }
  if (PQpipelineSync(conn) == 0) {
    impl_->broken = true;
    impl_->Fail("commit", nullptr);
  }
  outcome.results.resize(statements.size());
  PGresult* failed = nullptr;
  PGresult* lost = nullptr;
  bool connection_lost = false;
  // Each statement's results end with a null; the sync point's own result ends them all.
  for (size_t index = 0;;) {
    PGresult* r = PQgetResult(conn);
    if (r == nullptr) {
      if (PQstatus(conn) == CONNECTION_BAD || ++index > statements.size()) {
        connection_lost = true;
        break;
      }
      continue;
    }
    const ExecStatusType status = PQresultStatus(r);
    if (status == PGRES_PIPELINE_SYNC) {
      PQclear(r);
      break;
    }
    if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) {
      // index < size here: the loop stops once every statement's results have ended.
      outcome.results[index] = Result(std::make_shared<const Result::Impl>(r));
    } else if (status == PGRES_PIPELINE_ABORTED) {
      PQclear(r);  // skipped after an earlier failure
    } else if (PQstatus(conn) == CONNECTION_BAD) {
      lost = r;
      connection_lost = true;
      break;
    } else if (failed == nullptr) {
      failed = r;
      outcome.failed = index;
    } else {
      PQclear(r);
    }
  }
  if (connection_lost) {
    // The sync point may or may not have committed: report it as the commit that failed.
    if (failed != nullptr) PQclear(failed);
    impl_->broken = true;
    impl_->Fail("commit", lost);
  }
  PQexitPipelineMode(conn);
  if (failed != nullptr) outcome.error = impl_->ErrorOf(statements[*outcome.failed].name, failed);
  return outcome;
}

std::vector<Result> Connection::RunInOneTransaction(const std::vector<Statement>& statements) {
  PipelineOutcome outcome = RunPipeline(statements);
  if (outcome.error) throw *outcome.error;
  return std::move(outcome.results);
}

void Connection::Cancel() noexcept {
  std::lock_guard<std::mutex> lock(impl_->cancel_mutex);
  if (impl_->cancel == nullptr) return;
  char error[256];
  PQcancel(impl_->cancel, error, sizeof error);
}

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
