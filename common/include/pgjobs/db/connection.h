// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pgjobs/db/error.h"

namespace pgjobs::db {

/// A statement parameter in text format; std::nullopt is SQL NULL.
using Param = std::optional<std::string>;
using Params = std::vector<Param>;

/// The rows a statement returned. Cheap to copy (shared, immutable). Values are in text format.
class Result {
 public:
  Result();
  /// Number of rows.
  int Rows() const;
  /// Number of columns.
  int Columns() const;
  /// Whether the value at (row, column) is NULL. Throws pgjobs::Error when out of range.
  bool IsNull(int row, int column) const;
  /// The value at (row, column) as text ("" for NULL). Throws pgjobs::Error when out of range.
  std::string_view Text(int row, int column) const;
  /// The value parsed as an integer; throws pgjobs::Error naming the column if it is not one.
  long long Int(int row, int column) const;
  /// The value parsed as a double ("Infinity"/"NaN" accepted); throws pgjobs::Error if not one.
  double Double(int row, int column) const;
  /// The name of column `column`; throws pgjobs::Error when out of range.
  std::string ColumnName(int column) const;
  /// The index of the column named `name`; throws pgjobs::Error if there is none.
  int ColumnIndex(std::string_view name) const;

  struct Impl;  // libpq's result, hidden from users of this header.
  explicit Result(std::shared_ptr<const Impl> impl);

 private:
  void Check(int row, int column) const;
  std::shared_ptr<const Impl> impl_;
};

/// The type OID of jsonb, for Statement::param_types.
inline constexpr unsigned int kJsonbType = 3802;

/// One statement of a pipeline (Connection::RunPipeline, RunInOneTransaction). `name` is what
/// errors call it.
struct Statement {
  std::string name;
  std::string sql;
  Params params = {};
  /// The parameters' types (built-in type OIDs), when the statement must not infer them: a
  /// declared parameter may go unused, where an inferred one must appear. Empty: inferred.
  std::vector<unsigned int> param_types = {};
};

/// What Connection::RunPipeline did: one Result per statement that succeeded, and the first
/// failure. The statements after a failure, up to the end of the pipeline, were skipped.
struct PipelineOutcome {
  std::vector<Result> results;
  /// The index of the statement that failed, if one did.
  std::optional<size_t> failed;
  std::optional<DbError> error;
  /// When this client had read the transaction's last result (RunPipelines: the server runs
  /// the transactions one after another, so the gap from the previous one is roughly its time).
  std::chrono::steady_clock::time_point ended_at;
};

/// A notification received on a LISTENed channel.
struct Notification {
  std::string channel;
  std::string payload;
};

/// How the server side of a connection is kept. kTransaction is for a pooler in transaction
/// mode (PgBouncer's pool_mode=transaction): each transaction may run on another server
/// session, so nothing may live in the session. Prepare() then only remembers the text and
/// QueryPrepared() runs it as an unnamed statement, and SetSession() does nothing.
enum class Pooling { kSession, kTransaction };

/// How to reach the database.
struct ConnectOptions {
  /// A libpq connection string or postgresql:// URI.
  std::string dsn;
  /// Shown in pg_stat_activity.application_name.
  std::string application_name = "pgjobs";
  /// Gives up connecting after this long.
  std::chrono::milliseconds connect_timeout{5000};
  /// Every call returns within this long (0: no limit of its own); see Connection::SetDeadline.
  std::chrono::milliseconds call_timeout{0};
  Pooling pooling = Pooling::kSession;
};

/// Throws DbError (statement "connect") when `dsn` is not a valid libpq connection string or
/// URI, naming the problem and showing the DSN with its password redacted. Does not connect.
void CheckDsn(const std::string& dsn);

/// One libpq connection. Not thread-safe, except Cancel(), which any thread may call while
/// another runs a statement. Every error is a DbError naming the statement; after an error with
/// ConnectionBroken() the object must be replaced.
///
/// Every wait has a deadline that this class enforces itself, whatever the server or the
/// network does: the earlier of SetDeadline's and the call's start plus call_timeout. At the
/// deadline the running statement is cancelled; if the server has not answered kCancelGrace
/// later (a stopped backend, a cut network), the connection is abandoned and the call throws a
/// DbError that is TimedOut() and ConnectionBroken(). A connection that sent a cancel is not
/// used again (IsOpen() is false): the cancel could arrive late and hit the next statement. So
/// a server-side statement_timeout a little shorter than the deadline is the gentler limit,
/// and this deadline the one that holds when the server cannot keep it.
class Connection {
 public:
  /// How long a cancelled statement may take to answer before the connection is abandoned.
  static constexpr std::chrono::milliseconds kCancelGrace{200};

  /// Connects within connect_timeout, or throws DbError (ConnectionBroken) whose message shows
  /// the DSN with its password redacted and libpq's reason.
  explicit Connection(const ConnectOptions& options);
  ~Connection();
  Connection(Connection&&) noexcept;
  Connection& operator=(Connection&&) noexcept;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  /// Runs one or more statements without parameters (the simple query protocol). `name` is what
  /// errors call them.
  void Execute(std::string_view name, const std::string& sql);
  /// Runs one statement with parameters bound separately from the text.
  Result Query(std::string_view name, const std::string& sql, const Params& params = {});
  /// Runs SET statements that shape the session (performance settings, say), which last only
  /// as long as the server session: under Pooling::kTransaction they would reach other clients
  /// of the pooler and not stay with this one, so they are skipped there.
  void SetSession(std::string_view name, const std::string& sql);
  /// Prepares `sql` as the named statement, once per connection (under Pooling::kTransaction,
  /// remembers it to run unnamed).
  void Prepare(const std::string& name, const std::string& sql);
  /// Runs a statement prepared with Prepare(). Throws pgjobs::Error for a name never prepared
  /// under Pooling::kTransaction.
  Result QueryPrepared(const std::string& name, const Params& params = {});

  /// Runs `statements` as one transaction in one round trip (libpq pipeline mode): they commit
  /// together when the last one succeeds, or none does. Returns one Result per statement; throws
  /// the first failure as a DbError naming its statement. A connection lost once the statements
  /// were sent is reported as statement "commit", so that CommitOutcomeUnknown() is true.
  std::vector<Result> RunInOneTransaction(const std::vector<Statement>& statements);
  /// Sends `statements` in one round trip and reports each one's outcome without throwing for
  /// a failed statement. Without an explicit BEGIN they form one implicit transaction; after an
  /// explicit BEGIN, a failure leaves the transaction open and aborted, for the caller to roll
  /// back (to a savepoint, say). Throws only when the connection is lost, as statement "commit".
  PipelineOutcome RunPipeline(const std::vector<Statement>& statements);
  /// Sends several transactions in one round trip, each ending at a sync point of its own, so
  /// that one's failure does not touch the others (each as RunPipeline). Throws only when the
  /// connection is lost, as statement "commit".
  std::vector<PipelineOutcome> RunPipelines(
      const std::vector<std::vector<Statement>>& transactions);

  /// Every call from now on returns by `deadline` (plus kCancelGrace); std::nullopt: only
  /// call_timeout applies.
  void SetDeadline(std::optional<std::chrono::steady_clock::time_point> deadline);

  /// Asks the server to cancel the statement running now; safe from any thread, never blocks
  /// (the request is sent from a thread of its own). Best effort. The connection is not used
  /// again afterwards (see above).
  void Cancel() noexcept;
  /// False once a call found the connection broken.
  bool IsOpen() const;
  /// The socket, for waiting on notifications with poll().
  int Socket() const;
  /// Reads what the server has sent and returns the next pending notification, if any. Never
  /// blocks.
  std::optional<Notification> NextNotification();
  /// The server's process id for this session.
  int BackendPid() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pgjobs::db
