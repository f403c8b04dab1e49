// db::Connection's pipelines against a real server: one round trip, one transaction, and the
// outcome of each statement.
#include <chrono>
#include <thread>

#include "tests/pg/fixture.h"

namespace pgjobs::testing {
namespace {

class PipelineTest : public PgTest {
 protected:
  void SetUp() override {
    PgTest::SetUp();
    Conn().Execute("table", "CREATE TABLE t (n int PRIMARY KEY)");
  }
  long long Rows() { return Int("SELECT count(*) FROM t"); }
};

TEST_F(PipelineTest, StatementsCommitTogetherAndReturnTheirResults) {
  std::vector<db::Result> results = Conn().RunInOneTransaction({
      {"first", "INSERT INTO t VALUES ($1::int)", {"1"}},
      {"second", "INSERT INTO t VALUES ($1::int) RETURNING n * 10", {"2"}},
      {"read", "SELECT count(*) FROM t", {}},
  });
  ASSERT_EQ(results.size(), 3u);
  EXPECT_EQ(results[1].Int(0, 0), 20);
  EXPECT_EQ(results[2].Int(0, 0), 2) << "later statements see earlier ones";
  EXPECT_EQ(Rows(), 2);
  // The connection is usable afterwards, in and out of pipelines.
  EXPECT_EQ(Int("SELECT 7"), 7);
  EXPECT_EQ(Conn().RunInOneTransaction({{"again", "SELECT 8", {}}})[0].Int(0, 0), 8);
}

TEST_F(PipelineTest, AFailureRollsBackEverythingAndNamesItsStatement) {
  try {
    Conn().RunInOneTransaction({
        {"first", "INSERT INTO t VALUES (1)", {}},
        {"duplicate", "INSERT INTO t VALUES (1)", {}},
        {"never run", "INSERT INTO t VALUES (3)", {}},
    });
    FAIL() << "expected the duplicate to fail";
  } catch (const db::DbError& e) {
    EXPECT_EQ(e.Statement(), "duplicate");
    EXPECT_EQ(e.SqlState(), "23505");
    EXPECT_FALSE(e.ConnectionBroken());
    EXPECT_FALSE(e.CommitOutcomeUnknown());
  }
  EXPECT_EQ(Rows(), 0) << "the implicit transaction rolled back";
  EXPECT_EQ(Int("SELECT 1"), 1) << "the connection is still usable";
}

// After an explicit BEGIN, a failure leaves the transaction open for the caller to roll back to
// a savepoint: what the sql handler's batches do.
TEST_F(PipelineTest, RunPipelineReportsTheFailureAndLeavesTheTransactionToTheCaller) {
  db::PipelineOutcome out = Conn().RunPipeline({
      {"begin", "BEGIN", {}},
      {"savepoint", "SAVEPOINT job", {}},
      {"good", "INSERT INTO t VALUES (1)", {}},
      {"release", "RELEASE SAVEPOINT job", {}},
      {"savepoint", "SAVEPOINT job", {}},
      {"bad", "INSERT INTO t VALUES (1/0)", {}},
      {"skipped", "INSERT INTO t VALUES (2)", {}},
      {"commit", "COMMIT", {}},
  });
  ASSERT_TRUE(out.failed.has_value());
  EXPECT_EQ(*out.failed, 5u);
  ASSERT_TRUE(out.error.has_value());
  EXPECT_EQ(out.error->Statement(), "bad");
  EXPECT_EQ(out.error->SqlState(), "22012");
  out = Conn().RunPipeline({
      {"rollback to savepoint", "ROLLBACK TO SAVEPOINT job", {}},
      {"release", "RELEASE SAVEPOINT job", {}},
      {"after", "INSERT INTO t VALUES (3)", {}},
      {"commit", "COMMIT", {}},
  });
  EXPECT_FALSE(out.failed.has_value()) << (out.error ? out.error->what() : "");
  EXPECT_EQ(Value("SELECT string_agg(n::text, ',' ORDER BY n) FROM t"), "1,3");
}

// Once the statements are sent, a lost connection may or may not have committed them.
TEST_F(PipelineTest, ALostConnectionIsACommitOfUnknownOutcome) {
  const std::string pid = std::to_string(Conn().BackendPid());
  std::thread killer([this, pid] {
    db::Connection other = Connect();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    other.Query("terminate", "SELECT pg_terminate_backend($1::int)", {pid});
  });
  try {
    Conn().RunInOneTransaction({
        {"insert", "INSERT INTO t VALUES (1)", {}},
        {"wait", "SELECT pg_sleep(5)", {}},
    });
    ADD_FAILURE() << "expected the connection to be lost";
  } catch (const db::DbError& e) {
    EXPECT_EQ(e.Statement(), "commit") << e.what();
    EXPECT_TRUE(e.ConnectionBroken());
    EXPECT_TRUE(e.CommitOutcomeUnknown());
  }
  killer.join();
  EXPECT_FALSE(Conn().IsOpen());
}

}  // namespace
}  // namespace pgjobs::testing
