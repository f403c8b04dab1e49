// SPDX-License-Identifier: Apache-2.0
// The jobs-migrate binary, run as a user would.
#include <gtest/gtest.h>

#include "pgjobs/migrate/migrator.h"
#include "tests/harness/pg_cluster.h"
#include "tests/harness/process.h"

namespace pgjobs::testing {
namespace {

const std::string kBin = PGJOBS_MIGRATE_BIN;

std::string UriFor(const std::string& keyword_dsn) {
  // "host=127.0.0.1 port=N user=postgres dbname=D" -> postgresql://postgres@127.0.0.1:N/D
  auto field = [&](const std::string& key) {
    const size_t start = keyword_dsn.find(key + "=") + key.size() + 1;
    return keyword_dsn.substr(start, keyword_dsn.find(' ', start) - start);
  };
  return "postgresql://postgres:unused@127.0.0.1:" + field("port") + "/" + field("dbname");
}

TEST(JobsMigrateCli, InstallsThenReportsUpToDate) {
  const std::string uri = UriFor(PgCluster::Shared().EmptyDatabase());
  ProcessResult first = RunProcess({kBin, uri});
  EXPECT_EQ(first.exit_code, 0) << first.err;
  std::string expected;
  for (const auto& m : migrate::BundledMigrations()) {
    expected +=
        "jobs-migrate: applied migration " + std::to_string(m.version) + " (" + m.name + ")\n";
  }
  EXPECT_EQ(first.out, expected);
  ProcessResult again = RunProcess({kBin, uri});
  EXPECT_EQ(again.exit_code, 0);
  EXPECT_EQ(again.out, "jobs-migrate: schema is up to date\n");
}

TEST(JobsMigrateCli, TakesTheDsnFromTheEnvironmentAndShowsStatus) {
  const std::string uri = UriFor(PgCluster::Shared().EmptyDatabase());
  ProcessResult partial = RunProcess({kBin, "--target", "1"}, {"PGJOBS_DSN=" + uri});
  EXPECT_EQ(partial.exit_code, 0) << partial.err;
  ProcessResult status = RunProcess({kBin, "--status"}, {"PGJOBS_DSN=" + uri});
  EXPECT_EQ(status.exit_code, 0) << status.err;
  EXPECT_TRUE(status.out.starts_with("1\tqueue\tapplied ")) << status.out;
  EXPECT_NE(status.out.find("\n2\tstats\tpending\n"), std::string::npos) << status.out;
}

TEST(JobsMigrateCli, AWrongDsnIsAClearErrorWithoutThePassword) {
  ProcessResult r = RunProcess({kBin, "postgresql://app:s3cret@127.0.0.1:1/db"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(r.err.starts_with(
      "jobs-migrate: connecting to postgresql://app:***@127.0.0.1:1/db: connection to server at "
      "\"127.0.0.1\", port 1 failed: Connection refused"))
      << r.err;
  EXPECT_EQ(r.err.find("s3cret"), std::string::npos);

  ProcessResult garbage = RunProcess({kBin, "not a dsn"});
  EXPECT_EQ(garbage.exit_code, 1);
  EXPECT_EQ(garbage.err,
            "jobs-migrate: connecting to not a dsn: invalid DSN: missing \"=\" after \"not\" in "
            "connection info string\n");
}

TEST(JobsMigrateCli, BadArgumentsExitTwo) {
  ProcessResult none = RunProcess({kBin}, {}, {"PGJOBS_DSN"});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_EQ(none.err,
            "jobs-migrate: no database given: pass a DSN "
            "(postgresql://user:password@host:5432/db) or set PGJOBS_DSN\n");
  ProcessResult target = RunProcess({kBin, "--target", "x", "postgresql:///db"});
  EXPECT_EQ(target.exit_code, 2);
  EXPECT_EQ(target.err,
            "jobs-migrate: --target: expected a version number of 1 or more, got 'x'\n");
  ProcessResult unknown = RunProcess({kBin, "--frobnicate"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_TRUE(unknown.err.starts_with("jobs-migrate: unknown option '--frobnicate'\n"));
}

}  // namespace
}  // namespace pgjobs::testing
