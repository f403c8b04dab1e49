// SPDX-License-Identifier: Apache-2.0
// Day-2 operations in SQL: retention and pruning, cancel, retry, reschedule, pause, maintenance,
// and the operator's and monitor's rights to them.
#include <chrono>

#include "tests/pg/fixture.h"

namespace pgjobs::testing {
namespace {

using OperationsTest = PgTest;

std::string Id(long long id) { return std::to_string(id); }

// Consumes one job as worker `worker_id` (SQL text) and returns its id, or -1.
long long ConsumeOne(db::Connection& conn, const std::string& worker_id = "NULL") {
  db::Result r =
      conn.Query("consume", "SELECT job_id FROM jobs.consume(1, NULL, " + worker_id + ")");
  return r.Rows() == 0 ? -1 : r.Int(0, 0);
}

TEST_F(OperationsTest, RetentionHasDefaultsAndRefusesBadValues) {
  EXPECT_EQ(Value("SELECT string_agg(status || '=' || keep, ',' ORDER BY status) "
                  "FROM jobs.retention"),
            "cancelled=30 days,expired=30 days,failure=30 days,success=7 days");
  Conn().Execute("set", "SELECT jobs.set_retention('success', NULL)");
  EXPECT_EQ(Value("SELECT keep IS NULL FROM jobs.stats_retention WHERE status = 'success'"), "t");
  db::DbError unknown = Refusal("SELECT jobs.set_retention('done', '1 day')");
  EXPECT_EQ(unknown.SqlState(), "22023");
  EXPECT_NE(std::string(unknown.what()).find("i_status"), std::string::npos) << unknown.what();
  EXPECT_EQ(Refusal("SELECT jobs.set_retention('failure', '-1 day')").SqlState(), "22023");
  EXPECT_EQ(Refusal("SELECT jobs.prune(0)").SqlState(), "22023");
}

TEST_F(OperationsTest, PruneRemovesOnlyWhatIsPastRetentionOldestFirstAndCountsIt) {
  // 5 successes finished 8 days ago, 3 finished 6 days ago, 2 failures 8 days ago.
  Conn().Execute("history", R"sql(
    INSERT INTO jobs.job (job_id, task, status, priority, attempts, max_retries, timeout,
                          published_at, scheduled_at, started_at, finished_at)
    SELECT g, 't', CASE WHEN g > 8 THEN 'failure' ELSE 'success' END, 0, 1, 3, 60,
           now() - d, now() - d, now() - d, now() - d
    FROM generate_series(1, 10) AS g,
         LATERAL (SELECT CASE WHEN g BETWEEN 6 AND 8 THEN interval '6 days'
                              ELSE interval '8 days' END
                         + g * interval '1 s' AS d) AS a)sql");
  EXPECT_EQ(Int("SELECT jobs.prune(2)"), 2);
  // Oldest first: of the five 8-day-old successes, 5 and 4 (finished earliest) went.
  EXPECT_EQ(Value("SELECT string_agg(job_id::text, ',' ORDER BY job_id) FROM jobs.job "
                  "WHERE status = 'success'"),
            "1,2,3,6,7,8");
  EXPECT_EQ(Int("SELECT jobs.prune()"), 3);
  EXPECT_EQ(Value("SELECT string_agg(job_id::text, ',' ORDER BY job_id) FROM jobs.job"),
            "6,7,8,9,10");
  EXPECT_EQ(Value("SELECT string_agg(status || '=' || pruned_total, ',' ORDER BY status) "
                  "FROM jobs.stats_retention"),
            "cancelled=0,expired=0,failure=0,success=5");
  // A shorter retention for failures takes them too; nothing finished in the last 5 minutes
  // goes, whatever the retention.
  Conn().Execute("set", "SELECT jobs.set_retention('failure', '1 day')");
  Conn().Execute("set", "SELECT jobs.set_retention('success', '0')");
  const long long fresh = Publish("t");
  ASSERT_EQ(ConsumeOne(Conn()), fresh);
  Conn().Execute("ack", "SELECT jobs.ack(" + Id(fresh) + ")");
  EXPECT_EQ(Int("SELECT jobs.prune()"), 5);
  EXPECT_EQ(Value("SELECT string_agg(job_id::text, ',') FROM jobs.job"), Id(fresh));
  EXPECT_GT(std::stod(Value("SELECT oldest_age_seconds FROM jobs.stats_retention "
                            "WHERE status = 'success'")),
            0.0);
}

TEST_F(OperationsTest, CancelEndsPendingJobsAndMarksRunningOnes) {
  const long long pending = Publish("t", "i_scheduled_at => now() + interval '1 hour'");
  const long long running = Publish("t");
  const long long worker = Int("SELECT jobs.register_worker('w', 'h', 1, 1)");
  ASSERT_EQ(ConsumeOne(Conn(), Id(worker)), running);
  const long long finished = Publish("t");
  ASSERT_EQ(ConsumeOne(Conn(), Id(worker)), finished);
  Conn().Execute("ack", "SELECT jobs.ack(" + Id(finished) + ")");

  EXPECT_EQ(Value("SELECT string_agg(c::text, ',' ORDER BY c) FROM jobs.cancel(ARRAY[" +
                  Id(pending) + ", " + Id(running) + ", " + Id(finished) + ", 999]) AS c"),
            Id(pending) + "," + Id(running));
  EXPECT_EQ(Value("SELECT status || ',' || (started_at IS NULL) FROM jobs.job WHERE job_id = " +
                  Id(pending)),
            "cancelled,true");
  EXPECT_EQ(Value("SELECT sum(scheduled) FROM jobs.stats_queue"), "0");
  // The worker sees the mark; its nack then ends the job as cancelled, without a retry.
  EXPECT_EQ(
      Value("SELECT string_agg(c::text, ',') FROM jobs.cancel_requested(" + Id(worker) + ") AS c"),
      Id(running));
  EXPECT_EQ(Value("SELECT count(*) FROM jobs.cancel(ARRAY[" + Id(running) + "])"), "0");
  Conn().Execute("nack", "SELECT jobs.nack(" + Id(running) + "::bigint, 'stopped'::text)");
  EXPECT_EQ(Value("SELECT status || ',' || attempts || ',' || (tracebacks -> -1 ->> 'error') "
                  "FROM jobs.job WHERE job_id = " +
                  Id(running)),
            "cancelled,1,cancelled while running: stopped");
  // Counted as finished, but a job that never started adds nothing to the histograms.
  db::Result stats =
      Conn().Query("stats",
                   "SELECT kind, status, n FROM jobs.finished_stats(0, '{1}', '{1}', '{1}') "
                   "WHERE kind <> 'watermark' ORDER BY kind, status");
  std::string seen;
  for (int i = 0; i < stats.Rows(); ++i) {
    seen += std::string(stats.Text(i, 0)) + ":" + std::string(stats.Text(i, 1)) + "=" +
            std::string(stats.Text(i, 2)) + " ";
  }
  EXPECT_EQ(seen, "attempts:=2 finished:cancelled=2 finished:success=1 run:=2 wait:=2 ");
  EXPECT_EQ(Refusal("SELECT jobs.cancel(NULL)").SqlState(), "22023");
  EXPECT_EQ(Refusal("SELECT jobs.cancel(ARRAY[1, NULL]::bigint[])").SqlState(), "22023");
}

TEST_F(OperationsTest, AMarkedJobThatExpiresEndsCancelled) {
  const long long id = Publish("t", "i_timeout => 0.05");
  ASSERT_EQ(ConsumeOne(Conn()), id);
  Conn().Execute("cancel", "SELECT jobs.cancel(ARRAY[" + Id(id) + "])");
  Conn().Execute("wait", "SELECT pg_sleep(0.1)");
  EXPECT_EQ(Int("SELECT jobs.expire()"), 1);
  EXPECT_EQ(Value("SELECT status FROM jobs.job WHERE job_id = " + Id(id)), "cancelled");
}

TEST_F(OperationsTest, RetryQueuesFinishedFailuresWithTheirHistory) {
  const long long failed = Publish("t", "i_max_retries => 0");
  ASSERT_EQ(ConsumeOne(Conn()), failed);
  Conn().Execute("nack", "SELECT jobs.nack(" + Id(failed) + "::bigint, 'first'::text)");
  const long long succeeded = Publish("t");
  ASSERT_EQ(ConsumeOne(Conn()), succeeded);
  Conn().Execute("ack", "SELECT jobs.ack(" + Id(succeeded) + ")");

  EXPECT_EQ(Value("SELECT string_agg(r::text, ',') FROM jobs.retry(ARRAY[" + Id(failed) + ", " +
                  Id(succeeded) + ", 999]) AS r"),
            Id(failed));
  EXPECT_EQ(Value("SELECT state || ',' || attempts || ',' || max_retries FROM jobs.all "
                  "WHERE job_id = " +
                  Id(failed)),
            "ready,1,1");
  EXPECT_EQ(Value("SELECT sum(ready) FROM jobs.stats_queue"), "1");
  // One more attempt: it fails for good again, both tracebacks kept.
  ASSERT_EQ(ConsumeOne(Conn()), failed);
  Conn().Execute("nack", "SELECT jobs.nack(" + Id(failed) + "::bigint, 'second'::text)");
  EXPECT_EQ(Value("SELECT status || ',' || attempts || ',' || jsonb_array_length(tracebacks) "
                  "FROM jobs.job WHERE job_id = " +
                  Id(failed)),
            "failure,2,2");
}

TEST_F(OperationsTest, RescheduleMovesOnlyPendingJobs) {
  const long long pending = Publish("t");
  const long long running = Publish("t", "i_priority => 5");
  ASSERT_EQ(ConsumeOne(Conn()), running);
  EXPECT_EQ(Value("SELECT string_agg(r::text, ',') FROM jobs.reschedule(ARRAY[" + Id(pending) +
                  ", " + Id(running) + "], now() + interval '1 hour') AS r"),
            Id(pending));
  EXPECT_EQ(Value("SELECT state FROM jobs.all WHERE job_id = " + Id(pending)), "scheduled");
  EXPECT_EQ(ConsumeOne(Conn()), -1);
  db::DbError infinite = Refusal("SELECT jobs.reschedule(ARRAY[1], 'infinity')");
  EXPECT_EQ(infinite.SqlState(), "22023");
  EXPECT_NE(std::string(infinite.what()).find("i_at"), std::string::npos) << infinite.what();
  EXPECT_EQ(Refusal("SELECT jobs.reschedule(ARRAY[1], NULL)").SqlState(), "22023");
}

TEST_F(OperationsTest, ConsumeSkipsPausedTasksUntilResumed) {
  const long long paused = Publish("slow", "i_priority => 9");
  const long long other = Publish("fast");
  EXPECT_EQ(Value("SELECT jobs.pause('slow')"), "t");
  EXPECT_EQ(Value("SELECT jobs.pause('slow')"), "f");
  EXPECT_EQ(Value("SELECT string_agg(task, ',') FROM jobs.stats_paused_tasks"), "slow");
  EXPECT_EQ(ConsumeOne(Conn()), other);
  EXPECT_EQ(ConsumeOne(Conn()), -1);
  EXPECT_EQ(Value("SELECT count(*) FROM jobs.consume(5, ARRAY['slow'])"), "0");
  EXPECT_EQ(Value("SELECT jobs.seconds_until_next_due(ARRAY['slow']) IS NULL"), "t");
  EXPECT_EQ(Value("SELECT jobs.resume('slow')"), "t");
  EXPECT_EQ(Value("SELECT jobs.resume('slow')"), "f");
  EXPECT_EQ(ConsumeOne(Conn()), paused);
  EXPECT_EQ(Refusal("SELECT jobs.pause(' ')").SqlState(), "22023");
}

TEST_F(OperationsTest, RetentionDropsWholeDaysOfAStatusAndCountsTheirJobs) {
  // Finished jobs are partitioned by UTC day and status; history made here needs its days.
  EXPECT_EQ(Int("SELECT jobs.create_job_partitions(now() - interval '12 days', 3)"), 3);
  EXPECT_EQ(Int("SELECT jobs.create_job_partitions(now() - interval '12 days', 3)"), 0)
      << "a day is created once";
  Conn().Execute("history", R"sql(
    INSERT INTO jobs.job (job_id, task, status, priority, attempts, max_retries, timeout,
                          published_at, scheduled_at, started_at, finished_at)
    SELECT g, 't', CASE WHEN g % 4 = 0 THEN 'failure' ELSE 'success' END, 0, 1, 3, 60,
           a.at, a.at, a.at, a.at
    FROM generate_series(1, 400) AS g,
         LATERAL (SELECT date_trunc('day', now() - interval '11 days') + g * interval '1 min'
                         AS at) AS a)sql");
  const std::string day =
      Value("SELECT 'job_day_' || to_char(now() - interval '11 days', 'YYYYMMDD')");
  EXPECT_EQ(Value("SELECT string_agg(DISTINCT tableoid::regclass::text, ',') FROM jobs.job"),
            "jobs." + day + "_failure,jobs." + day + "_success");
  // Success is kept 7 days: its whole day goes, whatever the limit, and is counted; failures
  // (30 days) stay. prunable says so first.
  EXPECT_EQ(Value("SELECT string_agg(status || '=' || jobs, ',' ORDER BY status) "
                  "FROM jobs.prunable()"),
            "cancelled=0,expired=0,failure=0,success=300");
  EXPECT_EQ(Int("SELECT jobs.prune(1)"), 300);
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job"), 100);
  EXPECT_EQ(Value("SELECT to_regclass('jobs." + day + "_success') IS NULL"), "t");
  EXPECT_EQ(Value("SELECT string_agg(status || '=' || pruned_total, ',' ORDER BY status) "
                  "FROM jobs.stats_retention"),
            "cancelled=0,expired=0,failure=0,success=300");
  // A day whose statuses are all gone goes too.
  Conn().Execute("set",
                 "SELECT jobs.set_retention(s, '10 days') FROM unnest(ARRAY["
                 "'failure', 'expired', 'cancelled']) AS s");
  EXPECT_EQ(Int("SELECT jobs.prune()"), 100);
  EXPECT_EQ(Value("SELECT to_regclass('jobs." + day + "') IS NULL"), "t");
  // Retry moves a job out of its partition; a job finished today lands in today's.
  const long long id = Publish("t", "i_max_retries => 0");
  ASSERT_EQ(ConsumeOne(Conn()), id);
  Conn().Execute("nack", "SELECT jobs.nack(" + Id(id) + "::bigint, 'boom'::text)");
  EXPECT_EQ(
      Value("SELECT tableoid::regclass::text FROM jobs.job WHERE job_id = " + Id(id)),
      "jobs.job_day_" + Value("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD')") + "_failure");
  EXPECT_EQ(Value("SELECT string_agg(r::text, ',') FROM jobs.retry(ARRAY[" + Id(id) + "]) r"),
            Id(id));
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job"), 0);
  EXPECT_EQ(Refusal("SELECT jobs.create_job_partitions(now(), 0)").SqlState(), "22023");
  EXPECT_EQ(Refusal("SELECT jobs.create_job_partitions('infinity', 1)").SqlState(), "22023");
}

TEST_F(OperationsTest, ADayWhoseJobsLandedInTheDefaultPartitionStaysThere) {
  // Maintenance was off: jobs of a day without a partition are in jobs.job_default, and the
  // day is not created over them (which would fail); they are pruned row by row.
  Conn().Execute("history", R"sql(
    INSERT INTO jobs.job (job_id, task, status, priority, attempts, max_retries, timeout,
                          published_at, scheduled_at, started_at, finished_at)
    VALUES (1, 't', 'success', 0, 1, 3, 60, now() - interval '9 days',
            now() - interval '9 days', now() - interval '9 days', now() - interval '9 days'))sql");
  EXPECT_EQ(Value("SELECT tableoid::regclass::text FROM jobs.job"), "jobs.job_default");
  EXPECT_EQ(Int("SELECT jobs.create_job_partitions(now() - interval '10 days', 3)"), 2);
  EXPECT_EQ(Value("SELECT tableoid::regclass::text FROM jobs.job"), "jobs.job_default");
  EXPECT_EQ(Int("SELECT jobs.prune()"), 1);
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job"), 0);
}

TEST_F(OperationsTest, MaintainExpiresPrunesAndForgetsLongGoneWorkers) {
  const long long gone = Int("SELECT jobs.register_worker('gone', 'h', 1, 1)");
  const long long holding = Int("SELECT jobs.register_worker('holding', 'h', 2, 1)");
  const long long alive = Int("SELECT jobs.register_worker('alive', 'h', 3, 1)");
  const long long running = Publish("t", "i_timeout => 3600, i_priority => 5");
  const long long expiring = Publish("t", "i_timeout => 0.05, i_max_retries => 0");
  ASSERT_EQ(ConsumeOne(Conn(), Id(holding)), running);
  ASSERT_EQ(ConsumeOne(Conn()), expiring);  // nothing consumes after it: maintain expires it
  Conn().Execute("age",
                 "UPDATE jobs.worker SET heartbeat_at = now() - interval '2 hours' "
                 "WHERE worker_id IN (" +
                     Id(gone) + ", " + Id(holding) + ")");
  Conn().Execute("history", R"sql(
    INSERT INTO jobs.job (job_id, task, status, priority, attempts, max_retries, timeout,
                          published_at, scheduled_at, started_at, finished_at)
    VALUES (1000, 't', 'success', 0, 1, 3, 60, now() - interval '9 days',
            now() - interval '9 days', now() - interval '9 days', now() - interval '9 days'))sql");
  Conn().Execute("wait", "SELECT pg_sleep(0.1)");
  EXPECT_EQ(Value("SELECT string_agg(step || '=' || n, ',') FROM jobs.maintain()"),
            "expire=1,schedules=0,partitions=0,prune=1,workers=1,unique_keys=0,compact=0");
  EXPECT_EQ(Value("SELECT string_agg(worker_id::text, ',' ORDER BY worker_id) FROM jobs.worker"),
            Id(holding) + "," + Id(alive));
  EXPECT_EQ(Refusal("SELECT * FROM jobs.maintain(NULL)").SqlState(), "22023");
}

// After a long transaction, vacuum empties the queue's indexes, but a B-tree never gives its
// pages back. jobs.compact_queue (maintain's last step) rebuilds one emptied index a call, and
// never waits long for its locks: writers would queue behind it.
TEST_F(OperationsTest, CompactRebuildsEmptiedQueueIndexesWithoutWaitingForLocks) {
  const std::string index_pages =
      "SELECT sum(c.relpages) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
      "WHERE i.indrelid = 'jobs.job_queue'::regclass";
  db::Connection holder = Connect();
  holder.Execute("hold", "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM pg_class");
  for (int round = 0; round < 4; ++round) {
    Conn().Execute("churn",
                   "SELECT count(*) FROM jobs.publish_bulk(ARRAY(SELECT ('t', NULL, NULL, NULL, "
                   "NULL, NULL)::jobs.bulk_job FROM generate_series(1, 5000))); "
                   "SELECT count(*) FROM jobs.ack(ARRAY(SELECT job_id FROM jobs.consume(5000)), "
                   "NULL)");
  }
  Conn().Execute("flush statistics", "SELECT pg_stat_force_next_flush()");
  Conn().Execute("vacuum while held", "VACUUM jobs.job_queue");
  EXPECT_EQ(Int("SELECT jobs.compact_queue(100000)"), 0)
      << "row versions vacuum cannot remove yet still count: nothing to gain";
  Conn().Execute("analyze while held", "ANALYZE jobs.job_queue");
  EXPECT_EQ(Int("SELECT jobs.compact_queue(100000)"), 0) << "whatever ANALYZE counted";
  holder.Execute("release", "COMMIT");
  Conn().Execute("vacuum", "VACUUM jobs.job_queue");
  const long long bloated = Int(index_pages);
  ASSERT_GT(bloated, 100);

  db::Connection writer = Connect();
  writer.Execute("write", "BEGIN; LOCK TABLE jobs.job_queue IN ROW EXCLUSIVE MODE");
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(Int("SELECT jobs.compact_queue(100000)"), 0) << "a writer holds the table";
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_EQ(Value("SHOW lock_timeout"), "0") << "the caller's setting is left as it was";
  writer.Execute("end", "COMMIT");

  const long long large =
      Int("SELECT count(*) FROM pg_index WHERE indrelid = 'jobs.job_queue'::regclass "
          "AND pg_relation_size(indexrelid) >= 100000");
  ASSERT_GE(large, 4) << "the churn bloats the key and the pending and running indexes";
  for (long long index = 1; index <= large; ++index) {
    EXPECT_EQ(Int("SELECT jobs.compact_queue(100000)"), 1) << "index " << index;
  }
  EXPECT_EQ(Int("SELECT jobs.compact_queue(100000)"), 0) << "all " << large << " are compact";
  EXPECT_LT(Int(index_pages), bloated / 10);
  EXPECT_EQ(Value("SHOW lock_timeout"), "0");
  EXPECT_EQ(Refusal("SELECT jobs.compact_queue(-1)").SqlState(), "22023");
}

class OperatorRoleTest : public PgTest {
 protected:
  void SetUp() override {
    PgTest::SetUp();
    Conn().Execute("users", R"sql(
      DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_operator') THEN
          CREATE ROLE app_operator LOGIN IN ROLE jobs_operator;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_monitor') THEN
          CREATE ROLE app_monitor LOGIN IN ROLE jobs_monitor;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_worker') THEN
          CREATE ROLE app_worker LOGIN IN ROLE jobs_consumer;
        END IF;
      END $$)sql");
  }
};

TEST_F(OperatorRoleTest, OperatorControlsJobsButNeitherPublishesNorConsumes) {
  const long long id = Publish("t");
  db::Connection op = As("app_operator");
  EXPECT_EQ(Denied(op, "SELECT jobs.pause('t')"), "allowed");
  EXPECT_EQ(Denied(op, "SELECT jobs.resume('t')"), "allowed");
  EXPECT_EQ(Denied(op, "SELECT jobs.reschedule(ARRAY[" + Id(id) + "], now())"), "allowed");
  EXPECT_EQ(Denied(op, "SELECT jobs.cancel(ARRAY[" + Id(id) + "])"), "allowed");
  EXPECT_EQ(Denied(op, "SELECT jobs.retry(ARRAY[" + Id(id) + "])"), "allowed");
  EXPECT_EQ(Denied(op, "SELECT jobs.prune(10)"), "allowed");
  EXPECT_EQ(Denied(op, "SELECT jobs.set_retention('success', '1 day')"), "allowed");
  EXPECT_EQ(Denied(op, "SELECT * FROM jobs.maintain()"), "allowed");
  EXPECT_EQ(Denied(op, "SELECT * FROM jobs.job_overview"), "allowed");
  EXPECT_EQ(Denied(op, "SELECT jobs.publish('t')"), "42501");
  EXPECT_EQ(Denied(op, "SELECT * FROM jobs.consume(1)"), "42501");
  EXPECT_EQ(Denied(op, "DELETE FROM jobs.job"), "42501");
  EXPECT_EQ(Denied(op, "SELECT arguments FROM jobs.job"), "42501");
}

TEST_F(OperatorRoleTest, MonitorReadsJobsWithoutTheirArgumentsAndControlsNothing) {
  Publish("t", "i_arguments => '{\"email\": \"someone@example.org\"}'");
  db::Connection monitor = As("app_monitor");
  EXPECT_EQ(Denied(monitor, "SELECT job_id, task, state, tracebacks FROM jobs.job_overview"),
            "allowed");
  EXPECT_EQ(Denied(monitor, "SELECT * FROM jobs.stats_retention"), "allowed");
  EXPECT_EQ(Denied(monitor, "SELECT * FROM jobs.stats_paused_tasks"), "allowed");
  EXPECT_EQ(Denied(monitor, "SELECT arguments FROM jobs.job_overview"), "42703");
  EXPECT_EQ(Denied(monitor, "SELECT jobs.cancel(ARRAY[1])"), "42501");
  EXPECT_EQ(Denied(monitor, "SELECT jobs.pause('t')"), "42501");
  EXPECT_EQ(Denied(monitor, "SELECT jobs.prune()"), "42501");
  db::Connection worker = As("app_worker");
  EXPECT_EQ(Denied(worker, "SELECT * FROM jobs.cancel_requested(1)"), "allowed");
  EXPECT_EQ(Denied(worker, "SELECT * FROM jobs.maintain()"), "allowed");
  EXPECT_EQ(Denied(worker, "SELECT jobs.cancel(ARRAY[1])"), "42501");
  EXPECT_EQ(Denied(worker, "SELECT jobs.retry(ARRAY[1])"), "42501");
}

}  // namespace
}  // namespace pgjobs::testing
