// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include "pgjobs/db/error.h"

namespace pgjobs::db {
namespace {

TEST(ClassifySqlState, ConnectionFailuresAreTransientAndLost) {
  for (const char* code : {"08000", "08006", "08001", "57P01", "57P02", "57P03"}) {
    SqlStateTraits t = ClassifySqlState(code);
    EXPECT_TRUE(t.transient) << code;
    EXPECT_TRUE(t.connection_lost) << code;
    EXPECT_FALSE(t.timed_out) << code;
  }
}

TEST(ClassifySqlState, TimeoutsAreTransient) {
  for (const char* code : {"57014", "55P03"}) {
    SqlStateTraits t = ClassifySqlState(code);
    EXPECT_TRUE(t.transient) << code;
    EXPECT_TRUE(t.timed_out) << code;
    EXPECT_FALSE(t.connection_lost) << code;
  }
}

TEST(ClassifySqlState, ConflictsAndShortagesAreTransient) {
  EXPECT_TRUE(ClassifySqlState("40001").transient);
  EXPECT_TRUE(ClassifySqlState("40P01").transient);
  EXPECT_TRUE(ClassifySqlState("53300").transient);
}

TEST(ClassifySqlState, BadInputIsPermanent) {
  for (const char* code : {"22023", "55000", "42P01", "23505", "", "XX", "0800"}) {
    SqlStateTraits t = ClassifySqlState(code);
    EXPECT_FALSE(t.transient) << code;
    EXPECT_FALSE(t.connection_lost) << code;
  }
}

TEST(ClassifySqlState, TellsBadValuesAndWrongStatesFromTheRest) {
  for (const char* code : {"22021", "22P02", "22P05", "22023", "22012", "23505", "23514"}) {
    EXPECT_TRUE(ClassifySqlState(code).bad_value) << code;
    EXPECT_FALSE(ClassifySqlState(code).wrong_state) << code;
  }
  EXPECT_TRUE(ClassifySqlState("55000").wrong_state);
  for (const char* code : {"42501", "42883", "08006", "57014", "55P03", "", "XX000"}) {
    EXPECT_FALSE(ClassifySqlState(code).bad_value) << code;
    EXPECT_FALSE(ClassifySqlState(code).wrong_state) << code;
  }
  EXPECT_TRUE(DbError("x", "22021", "complete", false).BadValue());
  EXPECT_TRUE(DbError("x", "55000", "ack", false).WrongState());
}

TEST(DbError, CommitOutcomeUnknownOnlyWhenCommitBrokeTheConnection) {
  EXPECT_TRUE(DbError("x", "", "commit", true).CommitOutcomeUnknown());
  EXPECT_FALSE(DbError("x", "", "ack", true).CommitOutcomeUnknown());
  EXPECT_FALSE(DbError("x", "40001", "commit", false).CommitOutcomeUnknown());
  EXPECT_TRUE(DbError("x", "", "ack", true).Transient());
  EXPECT_FALSE(DbError("x", "22023", "publish", false).Transient());
  EXPECT_TRUE(DbError("x", "57014", "stats", false).TimedOut());
}

}  // namespace
}  // namespace pgjobs::db
