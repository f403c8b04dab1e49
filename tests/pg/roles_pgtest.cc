// SPDX-License-Identifier: Apache-2.0
// Least privilege: each role can do its part and nothing else.
#include "tests/pg/fixture.h"

namespace pgjobs::testing {
namespace {

class RolesTest : public PgTest {
 protected:
  void SetUp() override {
    PgTest::SetUp();
    // Login users are cluster-wide; create each once.
    Conn().Execute("users", R"sql(
      DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_pub') THEN
          CREATE ROLE app_pub LOGIN IN ROLE jobs_publisher;
          CREATE ROLE app_worker LOGIN IN ROLE jobs_consumer;
          CREATE ROLE app_monitor LOGIN IN ROLE jobs_monitor;
        END IF;
      END $$)sql");
  }
};

TEST_F(RolesTest, PublisherMayOnlyPublish) {
  db::Connection pub = As("app_pub");
  EXPECT_EQ(Denied(pub, "SELECT jobs.publish('t')"), "allowed");
  EXPECT_EQ(Denied(pub,
                   "SELECT * FROM jobs.publish_bulk(ARRAY[('t', NULL, NULL, NULL, NULL, "
                   "NULL)]::jobs.bulk_job[])"),
            "allowed");
  EXPECT_EQ(Denied(pub, "SELECT * FROM jobs.consume(1)"), "42501");
  EXPECT_EQ(Denied(pub, "DELETE FROM jobs.job_queue"), "42501");
  EXPECT_EQ(Denied(pub, "SELECT * FROM jobs.stats_queue"), "42501");
}

TEST_F(RolesTest, ConsumerMayConsumeAckAndNack) {
  Publish("t");
  Publish("t");
  db::Connection worker = As("app_worker");
  db::Result r = worker.Query("consume", "SELECT job_id FROM jobs.consume(2)");
  ASSERT_EQ(r.Rows(), 2);
  EXPECT_EQ(Denied(worker, "SELECT jobs.ack(" + std::string(r.Text(0, 0)) + ")"), "allowed");
  EXPECT_EQ(Denied(worker, "SELECT jobs.nack(" + std::string(r.Text(1, 0)) + ", 'x')"), "allowed");
  EXPECT_EQ(Denied(worker, "SELECT jobs.expire()"), "allowed");
  EXPECT_EQ(Denied(worker, "SELECT jobs.publish('t')"), "42501");
  EXPECT_EQ(Denied(worker, "UPDATE jobs.job_queue SET priority = 1"), "42501");
  EXPECT_EQ(Denied(worker, "SELECT jobs.recount_pending()"), "42501");
}

TEST_F(RolesTest, MonitorMayOnlyReadStats) {
  Publish("t");
  db::Connection monitor = As("app_monitor");
  EXPECT_EQ(Denied(monitor, "SELECT * FROM jobs.stats_queue"), "allowed");
  EXPECT_EQ(Denied(monitor, "SELECT * FROM jobs.stats_published"), "allowed");
  EXPECT_EQ(Denied(monitor, "SELECT * FROM jobs.stats_published_by_task"), "allowed");
  EXPECT_EQ(Denied(monitor, "SELECT * FROM jobs.stats_tables"), "allowed");
  EXPECT_EQ(Denied(monitor, "SELECT * FROM jobs.finished_stats(NULL, '{}', '{}', '{}')"),
            "allowed");
  EXPECT_EQ(Denied(monitor, "SELECT * FROM jobs.all"), "allowed");
  EXPECT_EQ(Denied(monitor, "SELECT * FROM jobs.job_queue"), "42501");
  EXPECT_EQ(Denied(monitor, "SELECT * FROM jobs.job"), "42501");
  EXPECT_EQ(Denied(monitor, "SELECT jobs.publish('t')"), "42501");
  EXPECT_EQ(Denied(monitor, "SELECT * FROM jobs.consume(1)"), "42501");
}

}  // namespace
}  // namespace pgjobs::testing
