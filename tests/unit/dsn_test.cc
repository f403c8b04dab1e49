// SPDX-License-Identifier: Apache-2.0
#include "pgjobs/db/dsn.h"

#include <gtest/gtest.h>

namespace pgjobs::db {
namespace {

TEST(RedactDsn, HidesUriPassword) {
  EXPECT_EQ(RedactDsn("postgresql://app:s3cret@db.example:5432/queue"),
            "postgresql://app:***@db.example:5432/queue");
  EXPECT_EQ(RedactDsn("postgres://app:p%40ss@host/db?sslmode=require"),
            "postgres://app:***@host/db?sslmode=require");
}

TEST(RedactDsn, HidesUriQueryPassword) {
  EXPECT_EQ(RedactDsn("postgresql://host/db?user=a&password=x&sslmode=disable"),
            "postgresql://host/db?user=a&password=***&sslmode=disable");
}

TEST(RedactDsn, KeepsUriWithoutPassword) {
  EXPECT_EQ(RedactDsn("postgresql://app@host/db"), "postgresql://app@host/db");
  EXPECT_EQ(RedactDsn("postgresql:///db"), "postgresql:///db");
}

TEST(RedactDsn, HidesKeywordPassword) {
  EXPECT_EQ(RedactDsn("host=db user=app password=s3cret dbname=q"),
            "host=db user=app password=*** dbname=q");
  EXPECT_EQ(RedactDsn("password = 'a b\\' c' host=db"), "password = *** host=db");
}

}  // namespace
}  // namespace pgjobs::db
