// SPDX-License-Identifier: Apache-2.0
// The stats views and functions the exporter reads.
#include <map>
#include <thread>
#include <vector>

#include "tests/pg/fixture.h"

namespace pgjobs::testing {
namespace {

using StatsTest = PgTest;

struct TaskStats {
  long long ready, scheduled, retry_wait, running, expired;
  double oldest_ready_age, oldest_running, max_overdue;
};

std::map<std::string, TaskStats> ReadStats(db::Connection& conn) {
  db::Result r = conn.Query("stats", "SELECT * FROM jobs.stats_queue");
  std::map<std::string, TaskStats> out;
  for (int i = 0; i < r.Rows(); ++i) {
    out[std::string(r.Text(i, 0))] =
        TaskStats{r.Int(i, 1), r.Int(i, 2),    r.Int(i, 3),    r.Int(i, 4),
                  r.Int(i, 5), r.Double(i, 6), r.Double(i, 7), r.Double(i, 8)};
  }
  return out;
}

TEST_F(StatsTest, QueueStatsCountEveryStatePerTask) {
  Conn().Query("bulk",
               "SELECT count(*) FROM jobs.publish_bulk(ARRAY(SELECT ('a', NULL, NULL, NULL, NULL, "
               "NULL)::jobs.bulk_job FROM generate_series(1, 10)))");
  Publish("a", "i_scheduled_at => clock_timestamp() + interval '1 hour'");
  Publish("b", "i_timeout => 0.05");
  Publish("b");
  // a: 3 running (one nacked into retry_wait), b: one expired.
  db::Result taken = Conn().Query("c", "SELECT job_id FROM jobs.consume(3, ARRAY['a'])");
  ASSERT_EQ(taken.Rows(), 3);
  Conn().Query("nack", "SELECT jobs.nack($1::bigint, 'x')", {std::string(taken.Text(0, 0))});
  ASSERT_EQ(Conn().Query("c", "SELECT * FROM jobs.consume(1, ARRAY['b'])").Rows(), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(80));

  auto stats = ReadStats(Conn());
  ASSERT_EQ(stats.size(), 2u);
  const TaskStats& a = stats["a"];
  EXPECT_EQ(a.ready, 7);
  EXPECT_EQ(a.scheduled, 1);
  EXPECT_EQ(a.retry_wait, 1);
  EXPECT_EQ(a.running, 2);
  EXPECT_EQ(a.expired, 0);
  EXPECT_GT(a.oldest_ready_age, 0.05);
  EXPECT_LT(a.oldest_ready_age, 30);
  EXPECT_GT(a.oldest_running, 0.05);
  EXPECT_EQ(a.max_overdue, 0);
  const TaskStats& b = stats["b"];
  EXPECT_EQ(b.ready, 1);
  EXPECT_EQ(b.running, 0);
  EXPECT_EQ(b.expired, 1);
  EXPECT_GT(b.max_overdue, 0.01);
  EXPECT_LT(b.max_overdue, 30);
  // The states partition the queue.
  EXPECT_EQ(Int("SELECT sum(ready + scheduled + retry_wait + running + expired) FROM "
                "jobs.stats_queue"),
            Int("SELECT count(*) FROM jobs.job_queue"));
}

TEST_F(StatsTest, OldestReadyAgeIgnoresFutureAndBackoffJobs) {
  Publish("t", "i_scheduled_at => clock_timestamp() - interval '10 minutes' + interval '2 hours'");
  const long long retry = Publish("t");
  ASSERT_EQ(Int("SELECT job_id FROM jobs.consume(1)"), retry);
  Conn().Query("nack", "SELECT jobs.nack($1, 'x', clock_timestamp() + interval '1 hour')",
               {std::to_string(retry)});
  EXPECT_EQ(ReadStats(Conn())["t"].oldest_ready_age, 0);
  Publish("t", "i_scheduled_at => clock_timestamp() - interval '90 seconds'");
  const double age = ReadStats(Conn())["t"].oldest_ready_age;
  EXPECT_GE(age, 90);
  EXPECT_LT(age, 100);
}

// A snapshot held elsewhere keeps the dead entries of every finished job in the queue's indexes.
// A session's jobs.stats_queue and jobs.stats_jobs_on_stale_workers step over them once; later
// calls walk from the floors it found (migration 17), so a scrape every second does not step over
// them every second.
TEST_F(StatsTest, QueueStatsStepOverTheDeadEntriesOfFinishedJobsOnce) {
  db::Connection holder = Connect();
  holder.Execute("hold", "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM pg_class");
  FinishJobs(2000, "1");
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // their deadlines have passed
  db::Connection monitor = Connect();
  monitor.Execute("settings", "SET pgjobs.consume_floor_margin = '0'");
  const std::string read = kQueueIndexEntriesRead;
  // While every worker beats, jobs.stats_jobs_on_stale_workers does not look at all.
  const long long alive = Int("SELECT jobs.register_worker('w', 'h', 1, 1)");
  monitor.Execute("begin", "BEGIN");
  const long long unread = monitor.Query("read", read).Int(0, 0);
  EXPECT_EQ(monitor.Query("stale", "SELECT * FROM jobs.stats_jobs_on_stale_workers").Rows(), 0);
  EXPECT_EQ(monitor.Query("read", read).Int(0, 0), unread);
  monitor.Execute("commit", "COMMIT");
  // Once one stopped beating, it must look for its jobs.
  Conn().Execute("stale worker",
                 "UPDATE jobs.worker SET heartbeat_at = now() - interval '1 hour' WHERE "
                 "worker_id = " +
                     std::to_string(alive));
  std::vector<long long> entries;
  for (int call = 1; call <= 3; ++call) {
    Publish("t");
    monitor.Execute("begin", "BEGIN");
    const long long before = monitor.Query("read", read).Int(0, 0);
    EXPECT_EQ(monitor.Query("stale", "SELECT * FROM jobs.stats_jobs_on_stale_workers").Rows(), 0);
    auto stats = ReadStats(monitor);
    EXPECT_EQ(stats["t"].ready, call) << "call " << call;
    EXPECT_EQ(stats["t"].running, 0) << "call " << call;
    EXPECT_GT(stats["t"].oldest_ready_age, 0) << "call " << call;
    entries.push_back(monitor.Query("read", read).Int(0, 0) - before);
    monitor.Execute("commit", "COMMIT");
  }
  EXPECT_GE(entries[0], 6000) << "the first call walks every dead entry (3 walks of 2,000)";
  for (size_t call = 1; call < entries.size(); ++call) {
    EXPECT_LT(entries[call], 50) << "call " << call + 1 << " read " << entries[call]
                                 << " index entries";
  }
  holder.Execute("release", "COMMIT");
}

// A job that finished within its timeout keeps its deadline ahead: walked by deadline, its dead
// entry would be stepped over at every scrape for a whole timeout. By start time, the calls after
// the first read only the jobs that started since the previous call or after the oldest job
// still running, which stays counted however long it runs.
TEST_F(StatsTest, QueueStatsStepOverJobsThatFinishedWithinTheirTimeoutOnce) {
  db::Connection holder = Connect();
  holder.Execute("hold", "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM pg_class");
  FinishJobs(2000);  // the default timeout: their deadlines are a minute ahead
  Publish("long");
  ASSERT_EQ(Conn().Query("take", "SELECT * FROM jobs.consume(1, '{long}')").Rows(), 1);
  db::Connection monitor = Connect();
  monitor.Execute("settings", "SET pgjobs.consume_floor_margin = '0'");
  const std::string read = kQueueIndexEntriesRead;
  std::vector<long long> entries;
  for (int call = 1; call <= 3; ++call) {
    monitor.Execute("begin", "BEGIN");
    const long long before = monitor.Query("read", read).Int(0, 0);
    auto stats = ReadStats(monitor);
    EXPECT_EQ(stats["long"].running, 1) << "call " << call;
    EXPECT_EQ(stats["t"].running, 0) << "call " << call;
    entries.push_back(monitor.Query("read", read).Int(0, 0) - before);
    monitor.Execute("commit", "COMMIT");
  }
  EXPECT_GE(entries[0], 2000) << "the first call walks every dead entry";
  for (size_t call = 1; call < entries.size(); ++call) {
    EXPECT_LT(entries[call], 50) << "call " << call + 1 << " read " << entries[call]
                                 << " index entries";
  }
  holder.Execute("release", "COMMIT");
}

// The floors never pass a running job's start, so a job that expires between two calls is
// still counted; runnable jobs the counters know of but the walk from the floor does not find
// are walked down to; one below the floor behind others is found by the next full walk, at most
// pgjobs.stats_full_scan_interval later.
TEST_F(StatsTest, QueueStatsFindWhatLiesBelowTheirFloors) {
  db::Connection monitor = Connect();
  monitor.Execute("settings", "SET pgjobs.consume_floor_margin = '0'");
  Publish("u", "i_timeout => 0.05");
  ASSERT_EQ(Conn().Query("take", "SELECT * FROM jobs.consume(1, '{u}')").Rows(), 1);
  EXPECT_EQ(ReadStats(monitor)["u"].running, 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto stats = ReadStats(monitor);
  EXPECT_EQ(stats["u"].running, 0);
  EXPECT_EQ(stats["u"].expired, 1);
  EXPECT_GT(stats["u"].max_overdue, 0.04);

  Publish("t", "i_scheduled_at => clock_timestamp() - interval '1 hour'");
  EXPECT_GE(ReadStats(monitor)["t"].oldest_ready_age, 3600) << "alone below the floor";
  Conn().Execute("take it", "SELECT count(*) FROM jobs.consume(1, '{t}')");
  Publish("t");
  EXPECT_LT(ReadStats(monitor)["t"].oldest_ready_age, 60);
  Publish("t", "i_scheduled_at => clock_timestamp() - interval '1 hour'");
  EXPECT_LT(ReadStats(monitor)["t"].oldest_ready_age, 60) << "below the floor, behind another";
  monitor.Execute("full walks", "SET pgjobs.stats_full_scan_interval = '0'");
  EXPECT_GE(ReadStats(monitor)["t"].oldest_ready_age, 3600);
}

TEST_F(StatsTest, TasksThatLeftTheQueueDisappear) {
  const long long id = Publish("gone");
  ASSERT_EQ(ReadStats(Conn()).count("gone"), 1u);
  Conn().Query("c", "SELECT * FROM jobs.consume(1)");
  Conn().Query("ack", "SELECT jobs.ack($1)", {std::to_string(id)});
  EXPECT_EQ(ReadStats(Conn()).count("gone"), 0u);
}

TEST_F(StatsTest, PublishedCountsEveryQueuedJobPerTaskAndNothingRolledBack) {
  auto published = [&](const std::string& task) {
    return Int(
        "SELECT coalesce((SELECT published_total FROM jobs.stats_published_by_task "
        "WHERE task = $1), 0)",
        {task});
  };
  Publish("mail");
  Conn().Query("bulk",
               "SELECT count(*) FROM jobs.publish_bulk(ARRAY(SELECT (t, NULL, NULL, NULL, NULL, "
               "0)::jobs.bulk_job FROM unnest(ARRAY['mail', 'mail', 'sms']) t))");
  Conn().Execute("rolled back", "BEGIN; SELECT jobs.publish('mail'); ROLLBACK");
  // A unique key that is held queues nothing, so it is not counted as queued.
  Publish("sms", "i_unique_key => 'k'");
  Publish("sms", "i_unique_key => 'k'");
  EXPECT_EQ(published("mail"), 3);
  EXPECT_EQ(published("sms"), 2);

  // Finished and then retried by an operator: queued again, so counted again.
  const long long id = Int("SELECT job_id FROM jobs.consume(1, ARRAY['sms'])");
  Conn().Query("nack", "SELECT jobs.nack($1::bigint, 'no')", {std::to_string(id)});
  ASSERT_EQ(Int("SELECT count(*) FROM jobs.job WHERE job_id = $1", {std::to_string(id)}), 1);
  ASSERT_EQ(Int("SELECT count(*) FROM jobs.retry(ARRAY[$1::bigint])", {std::to_string(id)}), 1);
  EXPECT_EQ(published("sms"), 3);
  EXPECT_EQ(published("mail"), 3);
}

TEST_F(StatsTest, CountersStayExactUnderConcurrentWork) {
  Conn().Query("bulk",
               "SELECT count(*) FROM jobs.publish_bulk(ARRAY(SELECT ('t' || (i % 4), NULL, NULL, "
               "NULL, NULL, 1)::jobs.bulk_job FROM generate_series(1, 2000) i))");
  std::vector<std::thread> threads;
  for (int c = 0; c < 4; ++c) {
    threads.emplace_back([this, c] {
      db::Connection conn = Connect();
      for (int round = 0; round < 40; ++round) {
        db::Result r = conn.Query("consume", "SELECT job_id FROM jobs.consume(10)");
        for (int i = 0; i < r.Rows(); ++i) {
          const std::string id(r.Text(i, 0));
          if ((i + c) % 3 == 0) {
            conn.Query("nack", "SELECT jobs.nack($1::bigint, 'x', clock_timestamp())", {id});
          } else if ((i + c) % 3 == 1) {
            conn.Query("ack", "SELECT jobs.ack($1::bigint)", {id});
          }  // else: left running
        }
        conn.Query("publish", "SELECT jobs.publish('t9')");
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(Int("SELECT coalesce(sum(ready + scheduled + retry_wait), 0) FROM jobs.stats_queue"),
            Int("SELECT count(*) FROM jobs.job_queue WHERE status = 'pending'"));
  EXPECT_EQ(Int("SELECT coalesce(sum(running + expired), 0) FROM jobs.stats_queue"),
            Int("SELECT count(*) FROM jobs.job_queue WHERE status = 'running'"));
  EXPECT_EQ(Int("SELECT count(*) FROM (SELECT task, sum(n) FROM jobs.pending_count GROUP BY task "
                "EXCEPT SELECT task, count(*) FROM jobs.job_queue WHERE status = 'pending' "
                "GROUP BY task) d"),
            0);
}

// consume and fail_attempts count their own moves; an operator's direct edits are counted by the
// row triggers instead. Each edit here would leave a counter off by one if either path missed it.
TEST_F(StatsTest, EditsByHandKeepCountersRight) {
  const auto pending_counts = [this] {
    return Int("SELECT count(*) FROM (SELECT task, sum(n) FROM jobs.pending_count GROUP BY task "
               "HAVING sum(n) <> 0 EXCEPT SELECT task, count(*) FROM jobs.job_queue "
               "WHERE status = 'pending' GROUP BY task) d") +
           Int("SELECT count(*) FROM (SELECT task, count(*) FROM jobs.job_queue "
               "WHERE status = 'pending' GROUP BY task EXCEPT SELECT task, sum(n) "
               "FROM jobs.pending_count GROUP BY task) d");
  };
  for (int i = 0; i < 6; ++i) Publish("a");
  const long long running = Int("SELECT job_id FROM jobs.consume(1)");
  Conn().Execute("move task",
                 "UPDATE jobs.job_queue SET task = 'b' WHERE job_id IN "
                 "(SELECT job_id FROM jobs.job_queue WHERE status = 'pending' "
                 "ORDER BY job_id LIMIT 2)");
  EXPECT_EQ(pending_counts(), 0);
  EXPECT_EQ(Int("SELECT ready FROM jobs.stats_queue WHERE task = 'b'"), 2);
  Conn().Execute("cancel", "DELETE FROM jobs.job_queue WHERE task = 'b'");
  EXPECT_EQ(pending_counts(), 0);
  Conn().Execute("requeue by hand",
                 "UPDATE jobs.job_queue SET status = 'pending', started_at = "
                 "NULL, expires_at = NULL WHERE job_id = " +
                     std::to_string(running));
  EXPECT_EQ(Int("SELECT ready FROM jobs.stats_queue WHERE task = 'a'"), 4);
  Conn().Execute("reprioritise", "UPDATE jobs.job_queue SET priority = 5");
  const long long taken = Int("SELECT max(job_id) FROM jobs.consume(2)");
  Conn().Execute("delete running",
                 "DELETE FROM jobs.job_queue WHERE job_id = " + std::to_string(taken));
  EXPECT_EQ(pending_counts(), 0);
  EXPECT_EQ(Int("SELECT ready FROM jobs.stats_queue WHERE task = 'a'"), 2);
  // The functions' own counting still holds after the session saw the setting.
  Conn().Query("c", "SELECT * FROM jobs.consume(1)");
  EXPECT_EQ(pending_counts(), 0);
  EXPECT_EQ(Int("SELECT ready FROM jobs.stats_queue WHERE task = 'a'"), 1);
}

TEST_F(StatsTest, TruncateAndRecountKeepCountersRight) {
  Publish("t");
  Conn().Execute("truncate", "TRUNCATE jobs.job_queue");
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.stats_queue"), 0);
  Publish("t");
  Conn().Execute("corrupt", "UPDATE jobs.pending_count SET n = n + 5");
  Conn().Execute("recount", "SELECT jobs.recount_pending()");
  EXPECT_EQ(Int("SELECT ready FROM jobs.stats_queue WHERE task = 't'"), 1);
}

// Reads jobs.finished_stats from `watermark` and returns (rows by kind/task/status/bucket, next).
struct Finished {
  std::map<std::string, long long> counts;  // "kind task status bucket" -> n
  std::map<std::string, double> sums;
  long long next = 0;
};

Finished ReadFinished(db::Connection& conn, const std::string& watermark) {
  db::Result r =
      conn.Query("finished",
                 "SELECT kind, task, status, bucket, n, total FROM jobs.finished_stats($1, "
                 "'{0.5, 10}', '{0.1, 1}', '{1, 2, 3}')",
                 {watermark == "NULL" ? db::Param() : db::Param(watermark)});
  Finished f;
  for (int i = 0; i < r.Rows(); ++i) {
    if (r.Text(i, 0) == "watermark") {
      f.next = r.Int(i, 4);
      continue;
    }
    const std::string key = std::string(r.Text(i, 0)) + " " + std::string(r.Text(i, 1)) + " " +
                            std::string(r.Text(i, 2)) + " " + std::string(r.Text(i, 3));
    f.counts[key] = r.Int(i, 4);
    if (!r.IsNull(i, 5)) f.sums[key] = r.Double(i, 5);
  }
  return f;
}

TEST_F(StatsTest, FinishedStatsCountEachFinishedJobExactlyOnce) {
  Finished start = ReadFinished(Conn(), "NULL");
  EXPECT_TRUE(start.counts.empty());
  const long long ok = Publish("t");
  const long long bad = Publish("t", "i_max_retries => 1");
  ASSERT_EQ(Conn().Query("c", "SELECT * FROM jobs.consume(2)").Rows(), 2);
  Conn().Query("ack", "SELECT jobs.ack($1)", {std::to_string(ok)});
  Conn().Query("nack", "SELECT jobs.nack($1, 'x', clock_timestamp())", {std::to_string(bad)});
  ASSERT_EQ(Int("SELECT count(*) FROM jobs.consume(1)"), 1);
  Conn().Query("nack", "SELECT jobs.nack($1, 'x')", {std::to_string(bad)});

  // A third job is acked in a transaction still open during the read: it must not be counted
  // yet, nor skipped later.
  const long long slow = Publish("u");
  ASSERT_EQ(Int("SELECT count(*) FROM jobs.consume(1, ARRAY['u'])"), 1);
  db::Connection other = Connect();
  other.Execute("begin", "BEGIN");
  other.Query("ack", "SELECT jobs.ack($1)", {std::to_string(slow)});

  Finished first = ReadFinished(Conn(), std::to_string(start.next));
  EXPECT_EQ(first.counts["finished t success "], 1);
  EXPECT_EQ(first.counts["finished t failure "], 1);
  EXPECT_EQ(first.counts.count("finished u success "), 0u);
  // Both t jobs waited less than 0.5 s and ran less than 0.1 s; the failed one made 2 attempts.
  EXPECT_EQ(first.counts["wait t  1"], 2);
  EXPECT_EQ(first.counts["run t  1"], 2);
  EXPECT_EQ(first.counts["attempts t  1"], 1);
  EXPECT_EQ(first.counts["attempts t  2"], 1);
  EXPECT_DOUBLE_EQ(first.sums["attempts t  2"], 2.0);

  other.Execute("commit", "COMMIT");
  Finished second = ReadFinished(Conn(), std::to_string(first.next));
  EXPECT_EQ(second.counts["finished u success "], 1);
  EXPECT_EQ(second.counts.count("finished t success "), 0u);
  Finished third = ReadFinished(Conn(), std::to_string(second.next));
  EXPECT_TRUE(third.counts.empty());
}

TEST_F(StatsTest, AckStampsEveryJobWithItsTransaction) {
  for (int i = 0; i < 3; ++i) Publish("t");
  Conn().Execute("begin", "BEGIN");
  const std::string xid(Conn().Query("xid", "SELECT pg_current_xact_id()::text").Text(0, 0));
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.ack(ARRAY(SELECT job_id FROM jobs.consume(3)), NULL)"),
            3);
  Conn().Execute("commit", "COMMIT");
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job WHERE finished_xid = " + xid), 3);
}

TEST_F(StatsTest, FinishedStatsBucketsAreLessOrEqual) {
  // Attempts of exactly 1, 2 and 3 fall in the buckets whose bound they equal; 4 goes to +Inf.
  for (int attempts = 1; attempts <= 4; ++attempts) {
    const long long id = Publish("t", "i_max_retries => 5");
    for (int run = 1; run <= attempts; ++run) {
      ASSERT_EQ(Int("SELECT count(*) FROM jobs.consume(1)"), 1);
      if (run < attempts) {
        Conn().Query("nack", "SELECT jobs.nack($1, 'x', clock_timestamp())", {std::to_string(id)});
      }
    }
    Conn().Query("ack", "SELECT jobs.ack($1)", {std::to_string(id)});
  }
  Finished f = ReadFinished(Conn(), "0");
  EXPECT_EQ(f.counts["attempts t  1"], 1);
  EXPECT_EQ(f.counts["attempts t  2"], 1);
  EXPECT_EQ(f.counts["attempts t  3"], 1);
  EXPECT_EQ(f.counts["attempts t  4"], 1);
}

TEST_F(StatsTest, PublishedTotalAndTableHealth) {
  EXPECT_EQ(Int("SELECT published_total FROM jobs.stats_published"), 0);
  Publish("t");
  Publish("t");
  EXPECT_EQ(Int("SELECT published_total FROM jobs.stats_published"), 2);
  EXPECT_EQ(Value("SELECT string_agg(table_name, ',' ORDER BY table_name) FROM jobs.stats_tables"),
            "job,job_queue");
  EXPECT_GT(Int("SELECT total_bytes FROM jobs.stats_tables WHERE table_name = 'job_queue'"), 0);
}

}  // namespace
}  // namespace pgjobs::testing

namespace pgjobs::testing {
namespace {

TEST_F(StatsTest, WorkersAreAliveUntilTheyStopBeatingAndTheirJobsAreFound) {
  const long long alive = Int("SELECT jobs.register_worker('w1', 'host-a', 11, 4)");
  const long long dying =
      Int("SELECT jobs.register_worker('w2', 'host-b', 12, 2, interval '50 milliseconds')");
  const long long stopped = Int("SELECT jobs.register_worker('w3', 'host-c', 13, 1)");
  Conn().Query("stop", "SELECT jobs.unregister_worker($1)", {std::to_string(stopped)});
  Publish("a");
  Publish("a");
  Publish("b");
  ASSERT_EQ(Int("SELECT count(*) FROM jobs.consume(1, ARRAY['a'], $1)", {std::to_string(alive)}),
            1);
  ASSERT_EQ(Int("SELECT count(*) FROM jobs.consume(2, NULL, $1)", {std::to_string(dying)}), 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(80));
  EXPECT_EQ(Value("SELECT jobs.heartbeat($1)", {std::to_string(alive)}), "t");
  EXPECT_EQ(Value("SELECT jobs.heartbeat($1)", {std::to_string(stopped)}), "f");
  EXPECT_EQ(Value("SELECT string_agg(state || '=' || workers, ',' ORDER BY state) FROM "
                  "jobs.stats_workers"),
            "alive=1,stale=1");
  EXPECT_EQ(Value("SELECT string_agg(task || '=' || jobs, ',' ORDER BY task) FROM "
                  "jobs.stats_jobs_on_stale_workers"),
            "a=1,b=1");
  db::DbError bad = Refusal("SELECT jobs.register_worker('w', 'h', 1, 0)");
  EXPECT_EQ(bad.ServerMessage(), "jobs.register_worker: concurrency must be at least 1, got 0");
}

}  // namespace
}  // namespace pgjobs::testing
