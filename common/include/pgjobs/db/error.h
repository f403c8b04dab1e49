// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <string_view>

#include "pgjobs/error.h"

namespace pgjobs::db {

/// What a SQLSTATE says about retrying. Pure data; see ClassifySqlState.
struct SqlStateTraits {
  /// The same call may succeed later (connection trouble, deadlock, serialization, shutdown,
  /// resource shortage, timeouts).
  bool transient = false;
  /// The statement was cancelled: statement_timeout, lock_timeout or an explicit cancel.
  bool timed_out = false;
  /// The connection itself failed (class 08, or the server shutting down).
  bool connection_lost = false;
  /// A value sent with the call was refused (class 22, data exception, or 23, integrity
  /// constraint): the same call fails again, and a call without that value may not.
  bool bad_value = false;
  /// The object is not in a state the call allows (55000): for the queue, an ack or nack of an
  /// attempt that no longer runs.
  bool wrong_state = false;
};

/// Classifies a five-character SQLSTATE. Unknown or malformed codes are permanent errors.
SqlStateTraits ClassifySqlState(std::string_view sqlstate);

/// A failed database call. what() names the statement and carries PostgreSQL's message.
class DbError : public Error {
 public:
  /// `statement` is the name of the statement that failed (never its parameters); `sqlstate` is
  /// empty when the server sent none (the connection broke); `connection_broken` says whether the
  /// connection can still be used.
  DbError(const std::string& message, std::string sqlstate, std::string statement,
          bool connection_broken, std::string server_message = "");

  /// The server's SQLSTATE, or "" when none arrived.
  const std::string& SqlState() const { return sqlstate_; }
  /// PostgreSQL's primary message alone (no statement name, detail or hint), or "".
  const std::string& ServerMessage() const { return server_message_; }
  /// The name of the statement that failed.
  const std::string& Statement() const { return statement_; }
  /// The connection is unusable: reconnect before the next call.
  bool ConnectionBroken() const { return connection_broken_; }
  /// Retrying the same work (after reconnecting, if broken) may succeed.
  bool Transient() const;
  /// The statement was cancelled by a timeout or a cancel request.
  bool TimedOut() const;
  /// A value sent with the call was refused (see SqlStateTraits::bad_value).
  bool BadValue() const;
  /// The object is not in a state the call allows (see SqlStateTraits::wrong_state).
  bool WrongState() const;
  /// The call names a function, table or column the database does not have: its schema is
  /// older than the caller (undefined_function, undefined_table, undefined_column).
  bool MissingObject() const {
    return sqlstate_ == "42883" || sqlstate_ == "42P01" || sqlstate_ == "42703";
  }
  /// The role may not do this (insufficient_privilege).
  bool PermissionDenied() const { return sqlstate_ == "42501"; }
  /// The connection broke during COMMIT: the transaction may or may not have committed, and the
  /// work must not be replayed blindly.
  bool CommitOutcomeUnknown() const { return connection_broken_ && statement_ == "commit"; }

 private:
  std::string sqlstate_;
  std::string statement_;
  std::string server_message_;
  bool connection_broken_;
};

}  // namespace pgjobs::db
