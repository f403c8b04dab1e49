// SPDX-License-Identifier: Apache-2.0
#include "pgjobs/db/error.h"

#include <utility>

namespace pgjobs::db {

SqlStateTraits ClassifySqlState(std::string_view sqlstate) {
  SqlStateTraits traits;
  if (sqlstate.size() != 5) return traits;
  const std::string_view cls = sqlstate.substr(0, 2);
  if (cls == "08") {  // connection_exception
    traits.transient = true;
    traits.connection_lost = true;
  } else if (sqlstate == "57P01" || sqlstate == "57P02" || sqlstate == "57P03") {
    // admin_shutdown, crash_shutdown, cannot_connect_now: the server is going or coming back.
    traits.transient = true;
    traits.connection_lost = true;
  } else if (sqlstate == "57014" || sqlstate == "55P03") {
    // query_canceled (statement_timeout or cancel), lock_not_available (lock_timeout).
    traits.transient = true;
    traits.timed_out = true;
  } else if (sqlstate == "40001" || sqlstate == "40P01") {
    traits.transient = true;  // serialization_failure, deadlock_detected
  } else if (cls == "53") {
    traits.transient = true;  // insufficient_resources (too many connections, out of memory)
  } else if (cls == "22" || cls == "23") {
    traits.bad_value = true;  // data_exception, integrity_constraint_violation
  } else if (sqlstate == "55000") {
    traits.wrong_state = true;  // object_not_in_prerequisite_state
  }
  return traits;
}

DbError::DbError(const std::string& message, std::string sqlstate, std::string statement,
                 bool connection_broken, std::string server_message)
    : Error(message),
      sqlstate_(std::move(sqlstate)),
      statement_(std::move(statement)),
      server_message_(std::move(server_message)),
      connection_broken_(connection_broken) {}

bool DbError::Transient() const {
  return connection_broken_ || ClassifySqlState(sqlstate_).transient;
}

bool DbError::TimedOut() const { return ClassifySqlState(sqlstate_).timed_out; }

bool DbError::BadValue() const { return ClassifySqlState(sqlstate_).bad_value; }

bool DbError::WrongState() const { return ClassifySqlState(sqlstate_).wrong_state; }

}  // namespace pgjobs::db
