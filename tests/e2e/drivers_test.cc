// SPDX-License-Identifier: Apache-2.0
// The README's SQL API through the drivers our users use, as they write it: node-postgres (which
// sends every parameter untyped) and psycopg 3 (plain, prepared, binary, pipeline, composite).
#include <gtest/gtest.h>

#include <filesystem>

#include "tests/harness/pg_cluster.h"
#include "tests/harness/process.h"

namespace pgjobs::testing {
namespace {

const std::string kDrivers = std::string(PGJOBS_SOURCE_DIR) + "/tests/drivers";

// "host=127.0.0.1 port=N user=postgres dbname=D" as the URI both drivers take.
std::string Uri(const std::string& keyword_dsn) {
  auto field = [&keyword_dsn](const std::string& key) {
    const size_t at = keyword_dsn.find(key + "=");
    const size_t end = keyword_dsn.find(' ', at);
    return keyword_dsn.substr(at + key.size() + 1,
                              end == std::string::npos ? end : end - at - key.size() - 1);
  };
  return "postgresql://postgres@127.0.0.1:" + field("port") + "/" + field("dbname");
}

TEST(Drivers, NodePostgresRunsEveryDocumentedCallWithUntypedParameters) {
  ASSERT_TRUE(std::filesystem::exists(kDrivers + "/node_modules/pg"))
      << "node-postgres is not installed: run scripts/install-deps";
  const std::string dsn = Uri(PgCluster::Shared().FreshDatabase());
  ProcessResult r =
      RunProcess({"/usr/bin/env", "node", kDrivers + "/readme_api.js"}, {"PGJOBS_TEST_DSN=" + dsn});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out, "node-postgres: every documented call form works\n") << r.err;
}

TEST(Drivers, PsycopgRunsEveryDocumentedCallInEveryMode) {
  const std::string dsn = Uri(PgCluster::Shared().FreshDatabase());
  ProcessResult r =
      RunProcess({"/usr/bin/python3", kDrivers + "/readme_api.py"}, {"PGJOBS_TEST_DSN=" + dsn});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out, "psycopg: every documented call form works in every mode\n") << r.err;
}

}  // namespace
}  // namespace pgjobs::testing
