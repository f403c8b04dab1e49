// SPDX-License-Identifier: Apache-2.0
// jobs-worker behind Debian's PgBouncer in transaction pooling, with fewer server connections
// than the worker has clients, so that any statement relying on a session (a named prepared
// statement, a session SET, LISTEN) lands on a server connection that does not have it.
#include "tests/harness/pgbouncer.h"

#include <gtest/gtest.h>

#include "tests/e2e/worker_fixture.h"
#include "tests/harness/process.h"

namespace pgjobs::testing {
namespace {

class PgBouncerWorkerTest : public WorkerTest {
 protected:
  void SetUp() override {
    WorkerTest::SetUp();
    bouncer_ = std::make_unique<PgBouncer>(PgCluster::Shared().Port(), "transaction", 2);
    pooled_dsn_ = bouncer_->Dsn(DsnValue(dsn_, "dbname"));
  }
  void TearDown() override {
    WorkerTest::TearDown();
    bouncer_.reset();
  }
  std::unique_ptr<PgBouncer> bouncer_;
  std::string pooled_dsn_;
};

TEST_F(PgBouncerWorkerTest, DrainsAcksRetriesAndTimesOutJobsThroughTransactionPooling) {
  Sql("CREATE TABLE results (n int PRIMARY KEY); GRANT ALL ON results TO PUBLIC");
  database_options_ = ", pooling: transaction";
  Start(R"yaml(
worker: {concurrency: 8, poll_interval: 100ms, heartbeat_interval: 200ms}
maintenance: {interval: 300ms}
tasks:
  ok:   {command: ["/bin/true"]}
  fail: {command: ["/bin/sh", "-c", "echo boom >&2; exit 3"]}
  slow: {command: ["/bin/sh", "-c", "sleep 5"]}
  store:
    sql: "INSERT INTO results VALUES (($1::jsonb->>'n')::int)"
)yaml",
        pooled_dsn_);
  Sql("SELECT jobs.publish('ok') FROM generate_series(1, 300);"
      "SELECT jobs.publish('store', jsonb_build_object('n', i)) FROM generate_series(1, 300) i;"
      "SELECT jobs.publish('fail', i_max_retries => 1) FROM generate_series(1, 3);"
      "SELECT jobs.publish('slow', i_timeout => 0.3, i_max_retries => 0);");
  WaitFor("SELECT count(*) FROM jobs.job", 604, 60);
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job WHERE task IN ('ok', 'store') "
                "AND status = 'success'"),
            600);
  EXPECT_EQ(Int("SELECT count(*) FROM results"), 300) << "each once: n is the primary key";
  EXPECT_EQ(Int("SELECT sum(n) FROM results"), 300 * 301 / 2);
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job WHERE task = 'fail' AND status = 'failure' "
                "AND attempts = 2"),
            3)
      << "each failed, was retried once, and failed again";
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job WHERE task = 'slow' AND status = 'failure'"), 1);

  auto m = Metrics();
  EXPECT_EQ(m["pgjobs_worker_jobs_total{outcome=\"success\",task=\"ok\"}"], 300);
  EXPECT_EQ(m["pgjobs_worker_jobs_total{outcome=\"success\",task=\"store\"}"], 300);
  EXPECT_EQ(m["pgjobs_worker_job_retries_total{task=\"fail\"}"], 3);
  EXPECT_EQ(m["pgjobs_worker_job_timeouts_total{task=\"slow\"}"], 1);
  EXPECT_EQ(m["pgjobs_worker_database_up"], 1);
  EXPECT_EQ(m["pgjobs_worker_db_errors_total{call=\"consume\"}"], 0);
  EXPECT_EQ(m["pgjobs_worker_maintenance_leader"], 1);
  // Heartbeats and maintenance went through the pooler too.
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.worker WHERE heartbeat_at > now() - interval '2 s'"), 1);
  const std::string log = worker_->Output();
  EXPECT_EQ(log.find("level=warn"), std::string::npos) << log;
  EXPECT_EQ(log.find("level=error"), std::string::npos) << log;
  EXPECT_EQ(bouncer_->Output().find("ERROR"), std::string::npos) << bouncer_->Output();
}

// Without a direct connection the worker cannot LISTEN behind the pooler: it polls. With
// notify_dsn it listens there, and a job published to an idle worker starts at once although
// the poll is 30 s away.
TEST_F(PgBouncerWorkerTest, ListensOnNotifyDsnAndPollsWithoutIt) {
  database_options_ = ", pooling: transaction, notify_dsn: \"" + dsn_ + "\"";
  Start("worker: {poll_interval: 30s}\ntasks:\n  t: {command: [\"/bin/true\"]}\n", pooled_dsn_);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the worker is idle
  for (int i = 0; i < 3; ++i) {
    Sql("SELECT jobs.publish('t')");
    WaitFor("SELECT count(*) FROM jobs.job", i + 1, 3);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_GE(Metrics()["pgjobs_worker_wakeups_total{source=\"notify\"}"], 3);
  EXPECT_EQ(Int("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                "'jobs-worker listener'"),
            1)
      << "one direct session listens";
  worker_.reset();

  Sql("TRUNCATE jobs.job");
  database_options_ = ", pooling: transaction";
  Start("worker: {poll_interval: 300ms}\ntasks:\n  t: {command: [\"/bin/true\"]}\n", pooled_dsn_);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  Sql("SELECT jobs.publish('t')");
  WaitFor("SELECT count(*) FROM jobs.job", 1, 3);
  auto m = Metrics();
  EXPECT_GT(m["pgjobs_worker_wakeups_total{source=\"poll\"}"], 0);
  EXPECT_EQ(m["pgjobs_worker_wakeups_total{source=\"notify\"}"], 0);
}

TEST_F(PgBouncerWorkerTest, ConfigRefusesAMisplacedOrMalformedNotifyDsnAndAnUnknownMode) {
  std::ofstream(dir_ + "/a.yaml") << "database: {dsn: \"" << dsn_ << "\", notify_dsn: \"" << dsn_
                                  << "\"}\ntasks:\n  t: {command: [\"/bin/true\"]}\n";
  ProcessResult a = RunProcess({kBin, "--config.file=" + dir_ + "/a.yaml", "--config.check"});
  EXPECT_EQ(a.exit_code, 2);
  EXPECT_NE(a.err.find("database.notify_dsn: only used with pooling: transaction"),
            std::string::npos)
      << a.err;
  std::ofstream(dir_ + "/b.yaml") << "database: {dsn: \"" << dsn_
                                  << "\", pooling: statement}\ntasks:\n  t: {command: "
                                     "[\"/bin/true\"]}\n";
  ProcessResult b = RunProcess({kBin, "--config.file=" + dir_ + "/b.yaml", "--config.check"});
  EXPECT_EQ(b.exit_code, 2);
  EXPECT_NE(b.err.find("expected one of session, transaction, got 'statement'"), std::string::npos)
      << b.err;
  std::ofstream(dir_ + "/c.yaml") << "database: {dsn: \"" << dsn_
                                  << "\", pooling: transaction, notify_dsn: \"host=h port\"}\n"
                                     "tasks:\n  t: {command: [\"/bin/true\"]}\n";
  ProcessResult c = RunProcess({kBin, "--config.file=" + dir_ + "/c.yaml", "--config.check"});
  EXPECT_EQ(c.exit_code, 2);
  EXPECT_NE(c.err.find("database.notify_dsn: "), std::string::npos) << c.err;
  EXPECT_NE(c.err.find("invalid DSN"), std::string::npos) << c.err;
}

}  // namespace
}  // namespace pgjobs::testing
