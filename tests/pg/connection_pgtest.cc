// SPDX-License-Identifier: Apache-2.0
// db::Connection's pipelines against a real server: one round trip, one transaction, and the
// outcome of each statement.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

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

// Transactions sent together in one round trip each end at their own sync point: one's failure
// rolls back only its own statements. What the exporter's scrape relies on.
TEST_F(PipelineTest, RunPipelinesKeepsEachTransactionsFailureToItself) {
  std::vector<db::PipelineOutcome> out = Conn().RunPipelines({
      {{"first", "INSERT INTO t VALUES (1)", {}}, {"read", "SELECT count(*) FROM t", {}}},
      {{"good", "INSERT INTO t VALUES (2)", {}}, {"bad", "INSERT INTO t VALUES (1/0)", {}}},
      {},
      {{"last", "INSERT INTO t VALUES (3) RETURNING n", {}}},
  });
  ASSERT_EQ(out.size(), 4u);
  EXPECT_FALSE(out[0].failed.has_value());
  ASSERT_EQ(out[0].results.size(), 2u);
  EXPECT_EQ(out[0].results[1].Int(0, 0), 1);
  ASSERT_TRUE(out[1].failed.has_value());
  EXPECT_EQ(*out[1].failed, 1u);
  ASSERT_TRUE(out[1].error.has_value());
  EXPECT_EQ(out[1].error->Statement(), "bad");
  EXPECT_EQ(out[1].error->SqlState(), "22012");
  EXPECT_FALSE(out[2].failed.has_value());
  EXPECT_FALSE(out[3].failed.has_value()) << (out[3].error ? out[3].error->what() : "");
  ASSERT_EQ(out[3].results.size(), 1u);
  EXPECT_EQ(out[3].results[0].Int(0, 0), 3);
  EXPECT_LE(out[0].ended_at, out[3].ended_at);
  EXPECT_EQ(Value("SELECT string_agg(n::text, ',' ORDER BY n) FROM t"), "1,3");
  EXPECT_EQ(Int("SELECT 1"), 1) << "the connection is still usable";
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

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

using DeadlineTest = PgTest;

// A slow statement is cancelled at the deadline; the server answers the cancel. The connection
// is then given up, as a late cancel would hit its next statement.
TEST_F(DeadlineTest, AStatementRunningAtTheDeadlineIsCancelled) {
  Conn().SetDeadline(Clock::now() + std::chrono::milliseconds(300));
  const auto start = Clock::now();
  try {
    Conn().Query("sleep", "SELECT pg_sleep(5)");
    ADD_FAILURE() << "expected the deadline to cancel the statement";
  } catch (const db::DbError& e) {
    EXPECT_EQ(e.SqlState(), "57014") << e.what();
    EXPECT_TRUE(e.TimedOut());
    EXPECT_TRUE(e.ConnectionBroken());
  }
  EXPECT_LT(SecondsSince(start), 1.0);
  EXPECT_FALSE(Conn().IsOpen());
}

// A backend that cannot run (stopped, as by SIGSTOP or a frozen host) answers neither the
// statement nor the cancel: the call still returns by the deadline plus the cancel grace.
TEST_F(DeadlineTest, AStoppedBackendIsAbandonedByTheDeadline) {
  for (const char* kind : {"query", "pipeline"}) {
    db::Connection conn = Connect();
    const pid_t backend = conn.BackendPid();
    ASSERT_EQ(kill(backend, SIGSTOP), 0);
    conn.SetDeadline(Clock::now() + std::chrono::milliseconds(300));
    const auto start = Clock::now();
    try {
      if (std::string(kind) == "query") {
        conn.Query("stats", "SELECT 1");
      } else {
        conn.RunInOneTransaction({{"work", "SELECT 1", {}}});
      }
      ADD_FAILURE() << kind << ": expected the call to be abandoned";
    } catch (const db::DbError& e) {
      EXPECT_TRUE(e.TimedOut()) << e.what();
      EXPECT_TRUE(e.ConnectionBroken()) << e.what();
      EXPECT_EQ(e.Statement(), std::string(kind) == "query" ? "stats" : "commit");
      EXPECT_NE(std::string(e.what()).find("no answer from the server by the deadline"),
                std::string::npos)
          << e.what();
    }
    const double took = SecondsSince(start);
    kill(backend, SIGCONT);
    EXPECT_GT(took, 0.25) << kind;
    EXPECT_LT(took, 1.0) << kind;
    EXPECT_FALSE(conn.IsOpen()) << kind;
  }
}

// call_timeout bounds every call without an explicit deadline.
TEST_F(DeadlineTest, CallTimeoutBoundsEachCall) {
  db::Connection conn(
      db::ConnectOptions{.dsn = dsn_, .call_timeout = std::chrono::milliseconds(200)});
  const auto start = Clock::now();
  EXPECT_THROW(conn.Query("sleep", "SELECT pg_sleep(3)"), db::DbError);
  EXPECT_LT(SecondsSince(start), 1.0);
  db::Connection next(
      db::ConnectOptions{.dsn = dsn_, .call_timeout = std::chrono::milliseconds(200)});
  EXPECT_EQ(next.Query("quick", "SELECT 2").Int(0, 0), 2);
  EXPECT_EQ(next.Query("quick again", "SELECT 3").Int(0, 0), 3) << "each call gets its own time";
}

// A server that accepts the TCP connection and never answers: connect_timeout is ours to keep.
TEST(ConnectTest, ASilentServerTimesOutTheConnect) {
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(listener, 8), 0);
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string dsn =
      "postgresql://u:secret@127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/db";
  const auto start = Clock::now();
  try {
    db::Connection conn(
        db::ConnectOptions{.dsn = dsn, .connect_timeout = std::chrono::milliseconds(300)});
    ADD_FAILURE() << "expected the connect to time out";
  } catch (const db::DbError& e) {
    EXPECT_EQ(std::string(e.what()),
              "connecting to postgresql://u:***@127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) +
                  "/db: timed out after 300 ms");
    EXPECT_TRUE(e.ConnectionBroken());
  }
  EXPECT_LT(SecondsSince(start), 1.0);
  close(listener);
}

TEST(CheckDsnTest, AMalformedDsnIsRefusedWithoutConnecting) {
  try {
    db::CheckDsn("host=x port");
    ADD_FAILURE() << "expected a malformed DSN to be refused";
  } catch (const db::DbError& e) {
    EXPECT_EQ(std::string(e.what()),
              "connecting to host=x port: invalid DSN: missing \"=\" after \"port\" in "
              "connection info string");
  }
  EXPECT_NO_THROW(db::CheckDsn("postgresql://u:p@h/db"));
}

}  // namespace
}  // namespace pgjobs::testing
