// SPDX-License-Identifier: Apache-2.0
// The SQL API of the queue, against a real PostgreSQL.
#include <poll.h>

#include <algorithm>
#include <set>
#include <thread>

#include "tests/pg/fixture.h"

namespace pgjobs::testing {
namespace {

using QueueTest = PgTest;

// Consumes one job and returns its id, or -1 when none is runnable.
long long ConsumeOne(db::Connection& conn, const std::string& tasks = "NULL") {
  db::Result r = conn.Query("consume", "SELECT job_id FROM jobs.consume(1, " + tasks + ")");
  return r.Rows() == 0 ? -1 : r.Int(0, 0);
}

TEST_F(QueueTest, PublishAppliesDefaults) {
  const long long id = Publish("email.send");
  db::Result r = Conn().Query(
      "read",
      "SELECT task, arguments IS NULL, status, priority, attempts, max_retries, timeout, "
      "scheduled_at <= clock_timestamp(), state FROM jobs.all WHERE job_id = $1",
      {std::to_string(id)});
  ASSERT_EQ(r.Rows(), 1);
  EXPECT_EQ(r.Text(0, 0), "email.send");
  EXPECT_EQ(r.Text(0, 1), "t");
  EXPECT_EQ(r.Text(0, 2), "pending");
  EXPECT_EQ(r.Text(0, 3), "0");
  EXPECT_EQ(r.Text(0, 4), "0");
  EXPECT_EQ(r.Text(0, 5), "3");
  EXPECT_EQ(r.Text(0, 6), "60.00");
  EXPECT_EQ(r.Text(0, 7), "t");
  EXPECT_EQ(r.Text(0, 8), "ready");
}

TEST_F(QueueTest, PublishTakesNamedArgumentsAndRoundTripsArguments) {
  const std::string args = R"({"args": [1, "two", null], "kwargs": {"nested": {"x": [true]}}})";
  const long long id =
      Int("SELECT job_id FROM jobs.publish(i_task => 'a.b', i_arguments => $1::jsonb, "
          "i_timeout => 12.5, i_priority => 7, i_max_retries => 0)",
          {args});
  db::Result r = Conn().Query("consume",
                              "SELECT job_id, task, arguments = $1::jsonb, attempts, max_retries, "
                              "timeout FROM jobs.consume(1)",
                              {args});
  ASSERT_EQ(r.Rows(), 1);
  EXPECT_EQ(r.Int(0, 0), id);
  EXPECT_EQ(r.Text(0, 1), "a.b");
  EXPECT_EQ(r.Text(0, 2), "t");
  EXPECT_EQ(r.Text(0, 3), "1");
  EXPECT_EQ(r.Text(0, 4), "0");
  EXPECT_EQ(r.Text(0, 5), "12.50");
}

TEST_F(QueueTest, ConsumeTakesGreaterPriorityFirstThenOldest) {
  const long long low_old = Publish("t", "i_priority => 1");
  const long long high = Publish("t", "i_priority => 9");
  const long long low_new = Publish("t", "i_priority => 1");
  const long long lowest = Publish("t");
  EXPECT_EQ(ConsumeOne(Conn()), high);
  EXPECT_EQ(ConsumeOne(Conn()), low_old);
  EXPECT_EQ(ConsumeOne(Conn()), low_new);
  EXPECT_EQ(ConsumeOne(Conn()), lowest);
  EXPECT_EQ(ConsumeOne(Conn()), -1);
}

TEST_F(QueueTest, ScheduledJobWaitsUntilItsTime) {
  const long long id = Publish("t", "i_scheduled_at => clock_timestamp() + interval '300 ms'");
  EXPECT_EQ(Value("SELECT state FROM jobs.all WHERE job_id = " + std::to_string(id)), "scheduled");
  EXPECT_EQ(ConsumeOne(Conn()), -1);
  std::this_thread::sleep_for(std::chrono::milliseconds(350));
  EXPECT_EQ(ConsumeOne(Conn()), id);
}

TEST_F(QueueTest, ConsumeTakesOnlyTheGivenTasks) {
  const long long a = Publish("a");
  const long long b = Publish("b");
  EXPECT_EQ(ConsumeOne(Conn(), "ARRAY['b']"), b);
  EXPECT_EQ(ConsumeOne(Conn(), "ARRAY['b', 'c']"), -1);
  EXPECT_EQ(ConsumeOne(Conn(), "ARRAY['a']"), a);
}

TEST_F(QueueTest, ConsumeTakesAtMostNum) {
  for (int i = 0; i < 5; ++i) Publish("t");
  EXPECT_EQ(Conn().Query("c", "SELECT * FROM jobs.consume(3)").Rows(), 3);
  EXPECT_EQ(Conn().Query("c", "SELECT * FROM jobs.consume(3)").Rows(), 2);
  EXPECT_EQ(Conn().Query("c", "SELECT * FROM jobs.consume(3)").Rows(), 0);
}

TEST_F(QueueTest, AckMovesTheJobToHistory) {
  const long long id = Publish("t", "i_arguments => '{\"k\": 1}'");
  ASSERT_EQ(ConsumeOne(Conn()), id);
  Conn().Query("ack", "SELECT jobs.ack($1)", {std::to_string(id)});
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job_queue"), 0);
  db::Result r = Conn().Query(
      "read",
      "SELECT status, attempts, arguments->>'k', finished_at >= started_at, tracebacks "
      "IS NULL FROM jobs.job WHERE job_id = $1",
      {std::to_string(id)});
  ASSERT_EQ(r.Rows(), 1);
  EXPECT_EQ(r.Text(0, 0), "success");
  EXPECT_EQ(r.Text(0, 1), "1");
  EXPECT_EQ(r.Text(0, 2), "1");
  EXPECT_EQ(r.Text(0, 3), "t");
  EXPECT_EQ(r.Text(0, 4), "t");
}

TEST_F(QueueTest, NackRetriesAfterExponentialBackoffAndKeepsTracebacks) {
  const long long id = Publish("t");
  const std::string sid = std::to_string(id);
  ASSERT_EQ(ConsumeOne(Conn()), id);
  Conn().Query("nack", "SELECT jobs.nack($1, 'first failure')", {sid});
  // Attempt 1 failed: runnable again after retry_delay(1) = 2 s.
  EXPECT_EQ(
      Value("SELECT status || ' ' || state || ' ' || attempts FROM jobs.all WHERE job_id = " + sid),
      "pending retry_wait 1");
  const double delay = std::stod(
      Value("SELECT extract(epoch FROM scheduled_at - clock_timestamp()) FROM jobs.job_queue "
            "WHERE job_id = " +
            sid));
  EXPECT_GT(delay, 1.5);
  EXPECT_LE(delay, 2.0);
  EXPECT_EQ(ConsumeOne(Conn()), -1);
  MakeRunnable(id);
  ASSERT_EQ(ConsumeOne(Conn()), id);
  Conn().Query("nack", "SELECT jobs.nack($1, 'second failure')", {sid});
  const double delay2 = std::stod(
      Value("SELECT extract(epoch FROM scheduled_at - clock_timestamp()) FROM jobs.job_queue "
            "WHERE job_id = " +
            sid));
  EXPECT_GT(delay2, 3.5);
  EXPECT_LE(delay2, 4.0);
  EXPECT_EQ(Value("SELECT string_agg(t->>'attempt' || ':' || (t->>'error'), ',') "
                  "FROM jobs.job_queue, jsonb_array_elements(tracebacks) t WHERE job_id = " +
                  sid),
            "1:first failure,2:second failure");
  EXPECT_EQ(Int("SELECT extract(epoch FROM jobs.retry_delay(20))::int"), 3600);
}

TEST_F(QueueTest, NackHonoursAnExplicitRetryTime) {
  const long long id = Publish("t");
  ASSERT_EQ(ConsumeOne(Conn()), id);
  Conn().Query("nack", "SELECT jobs.nack($1, 'later', clock_timestamp() - interval '1 s')",
               {std::to_string(id)});
  EXPECT_EQ(ConsumeOne(Conn()), id);
}

TEST_F(QueueTest, MaxRetriesNMeansAtMostNPlusOneRuns) {
  const long long id = Publish("t", "i_max_retries => 2");
  const std::string sid = std::to_string(id);
  for (int run = 1; run <= 3; ++run) {
    ASSERT_EQ(ConsumeOne(Conn()), id) << "run " << run;
    Conn().Query("nack", "SELECT jobs.nack($1, 'fail ' || $2, clock_timestamp())",
                 {sid, std::to_string(run)});
  }
  EXPECT_EQ(ConsumeOne(Conn()), -1);
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job_queue"), 0);
  EXPECT_EQ(Value("SELECT status || ' ' || attempts || ' ' || jsonb_array_length(tracebacks) "
                  "FROM jobs.job WHERE job_id = " +
                  sid),
            "failure 3 3");
}

TEST_F(QueueTest, MaxRetriesZeroRunsOnce) {
  const long long id = Publish("t", "i_max_retries => 0");
  ASSERT_EQ(ConsumeOne(Conn()), id);
  Conn().Query("nack", "SELECT jobs.nack($1, 'boom')", {std::to_string(id)});
  EXPECT_EQ(Value("SELECT status FROM jobs.job WHERE job_id = " + std::to_string(id)), "failure");
}

TEST_F(QueueTest, ExpiredJobIsVisibleThenReclaimedAsARetry) {
  const long long id = Publish("t", "i_timeout => 0.1");
  const std::string sid = std::to_string(id);
  ASSERT_EQ(ConsumeOne(Conn()), id);
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.expired"), 0);
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.running"), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.expired WHERE job_id = " + sid), 1);
  EXPECT_EQ(Int("SELECT jobs.expire()"), 1);
  EXPECT_EQ(Int("SELECT jobs.expire()"), 0);
  EXPECT_EQ(Value("SELECT state || ' ' || attempts || ' ' || (tracebacks->0->>'error') "
                  "FROM jobs.all WHERE job_id = " +
                  sid),
            "retry_wait 1 timeout: attempt 1 ran longer than 0.10 s");
}

TEST_F(QueueTest, LateAckOfAReclaimedAttemptIsRefusedAndChangesNothing) {
  const long long id = Publish("t", "i_timeout => 0.05");
  const std::string sid = std::to_string(id);
  ASSERT_EQ(ConsumeOne(Conn()), id);
  std::this_thread::sleep_for(std::chrono::milliseconds(80));
  ASSERT_EQ(Int("SELECT jobs.expire()"), 1);
  MakeRunnable(id);
  db::Result second = Conn().Query("consume", "SELECT job_id, attempts FROM jobs.consume(1)");
  ASSERT_EQ(second.Rows(), 1);
  ASSERT_EQ(second.Int(0, 1), 2);

  // The first worker wakes up late and acks attempt 1: refused, attempt 2 keeps running.
  db::DbError late = Refusal("SELECT jobs.ack($1, 1)", {sid});
  EXPECT_EQ(late.SqlState(), "55000");
  EXPECT_EQ(late.ServerMessage(), "jobs.ack: job " + sid + " is running attempt 2, not attempt 1");
  db::DbError late_nack = Refusal("SELECT jobs.nack($1, 'late', NULL, 1)", {sid});
  EXPECT_EQ(late_nack.SqlState(), "55000");
  EXPECT_EQ(Value("SELECT status || ' ' || attempts FROM jobs.job_queue WHERE job_id = " + sid),
            "running 2");
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job"), 0);

  Conn().Query("ack", "SELECT jobs.ack($1, 2)", {sid});
  EXPECT_EQ(Value("SELECT status || ' ' || attempts FROM jobs.job WHERE job_id = " + sid),
            "success 2");
}

TEST_F(QueueTest, ExpiryWithoutRetriesLeftFinishesAsExpiredAndConsumeReclaimsItself) {
  const long long id = Publish("t", "i_timeout => 0.05, i_max_retries => 0");
  ASSERT_EQ(ConsumeOne(Conn()), id);
  std::this_thread::sleep_for(std::chrono::milliseconds(80));
  // No separate reaper: the next consume reclaims it.
  EXPECT_EQ(ConsumeOne(Conn()), -1);
  EXPECT_EQ(Value("SELECT status || ' ' || (tracebacks->0->>'error') FROM jobs.job "
                  "WHERE job_id = " +
                  std::to_string(id)),
            "expired timeout: attempt 1 ran longer than 0.05 s");
}

// Every consume asks whether a running job has expired. That must be a range read of the
// running-jobs index whatever the plan: comparing with clock_timestamp() (volatile, so never an
// index bound) read every running job on every call, and an EXISTS planned for any moment (the
// plan PL/pgSQL keeps after five calls) read the whole table when nothing had expired. Both cost
// more than the consume itself once workers hold many jobs.
TEST_F(QueueTest, ConsumeChecksForExpiredJobsWithoutReadingEveryRunningJob) {
  Conn().Execute("publish",
                 "SELECT jobs.publish_bulk(ARRAY(SELECT ('t', NULL, NULL, NULL, NULL, "
                 "NULL)::jobs.bulk_job FROM generate_series(1, 2000)))");
  ASSERT_EQ(Int("SELECT count(*) FROM jobs.consume(2000)"), 2000);
  Conn().Execute("analyze", "ANALYZE jobs.job_queue");
  const std::string read =
      "SELECT pg_stat_get_xact_tuples_returned('jobs.job_queue_running_expiry'::regclass) || "
      "'/' || pg_stat_get_xact_tuples_returned('jobs.job_queue'::regclass)";
  for (int call = 1; call <= 8; ++call) {
    Conn().Execute("begin", "BEGIN");
    const std::string before = Value(read);
    EXPECT_EQ(Int("SELECT count(*) FROM jobs.consume(1)"), 0);
    EXPECT_EQ(Value(read), before)
        << "call " << call << ": running-index entries / table rows read by consume";
    Conn().Execute("commit", "COMMIT");
  }
}

TEST_F(QueueTest, PublishBulkReturnsIdsInOrderWithEachJobsSettings) {
  db::Result r = Conn().Query("bulk",
                              "SELECT job_id FROM jobs.publish_bulk(ARRAY["
                              "('a', '{\"n\": 1}', NULL, 5, 2, 1),"
                              "('b', NULL, '2999-01-01 00:00:00', NULL, NULL, NULL),"
                              "('a', '[3]', NULL, NULL, -1, 0)]::jobs.bulk_job[])");
  ASSERT_EQ(r.Rows(), 3);
  EXPECT_LT(r.Int(0, 0), r.Int(1, 0));
  EXPECT_LT(r.Int(1, 0), r.Int(2, 0));
  db::Result rows = Conn().Query(
      "read",
      "SELECT task, arguments::text, state, timeout, priority, max_retries FROM jobs.all "
      "ORDER BY job_id");
  ASSERT_EQ(rows.Rows(), 3);
  EXPECT_EQ(rows.Text(0, 0), "a");
  EXPECT_EQ(rows.Text(0, 1), "{\"n\": 1}");
  EXPECT_EQ(rows.Text(0, 3), "5.00");
  EXPECT_EQ(rows.Text(0, 4), "2");
  EXPECT_EQ(rows.Text(0, 5), "1");
  EXPECT_EQ(rows.Text(1, 2), "scheduled");
  EXPECT_EQ(rows.Text(1, 3), "60.00");
  EXPECT_EQ(rows.Text(1, 5), "3");
  EXPECT_EQ(rows.Text(2, 1), "[3]");
  EXPECT_EQ(rows.Text(2, 4), "-1");
}

TEST_F(QueueTest, PublishNotifiesWithTheTask) {
  db::Connection listener = Connect();
  listener.Execute("listen", "LISTEN jobs");
  Publish("email.send");
  Conn().Query("bulk",
               "SELECT * FROM jobs.publish_bulk(ARRAY[('x', NULL, NULL, NULL, NULL, NULL), "
               "('y', NULL, NULL, NULL, NULL, NULL), ('x', NULL, NULL, NULL, NULL, "
               "NULL)]::jobs.bulk_job[])");
  std::multiset<std::string> payloads;
  for (int i = 0; i < 50 && payloads.size() < 3; ++i) {
    pollfd pfd{listener.Socket(), POLLIN, 0};
    poll(&pfd, 1, 100);
    while (auto n = listener.NextNotification()) {
      EXPECT_EQ(n->channel, "jobs");
      payloads.insert(n->payload);
    }
  }
  EXPECT_EQ(payloads, (std::multiset<std::string>{"email.send", "x", "y"}));
}

struct BadCall {
  std::string sql;
  std::string sqlstate;
  std::string message;
};

TEST_F(QueueTest, BadInputIsRefusedWithAClearErrorAndLeavesNoTrace) {
  const long long pending = Publish("t");
  const long long done = Publish("t");
  ASSERT_EQ(ConsumeOne(Conn()), pending);  // ids are consumed in publish order at equal priority
  Conn().Query("ack", "SELECT jobs.ack($1)", {std::to_string(pending)});
  const long long waiting = Publish("t");
  const std::string p = std::to_string(waiting);
  const std::string d = std::to_string(pending);
  (void)done;

  const std::vector<BadCall> calls = {
      {"SELECT jobs.publish(NULL)", "22023",
       "jobs.publish: task must be a non-blank string, got NULL"},
      {"SELECT jobs.publish('')", "22023", "jobs.publish: task must be a non-blank string, got ''"},
      {"SELECT jobs.publish('t', i_timeout => 0)", "22023",
       "jobs.publish: timeout must be a number of seconds from 0.01 to 99999.99, got 0"},
      {"SELECT jobs.publish('t', i_timeout => -3)", "22023",
       "jobs.publish: timeout must be a number of seconds from 0.01 to 99999.99, got -3"},
      {"SELECT jobs.publish('t', i_max_retries => -1)", "22023",
       "jobs.publish: max_retries must be zero or more, got -1"},
      {"SELECT * FROM jobs.publish_bulk(ARRAY[('ok', NULL, NULL, NULL, NULL, NULL), "
       "('ok', NULL, NULL, 0, NULL, NULL)]::jobs.bulk_job[])",
       "22023",
       "jobs.publish_bulk: element 2: timeout must be a number of seconds from 0.01 to 99999.99, "
       "got 0"},
      {"SELECT * FROM jobs.publish_bulk(ARRAY[(NULL, NULL, NULL, NULL, NULL, "
       "NULL)]::jobs.bulk_job[])",
       "22023", "jobs.publish_bulk: element 1: task must be a non-blank string, got NULL"},
      {"SELECT jobs.ack(" + p + ")", "55000",
       "jobs.ack: job " + p + " is not running (it is pending)"},
      {"SELECT jobs.ack(" + d + ")", "55000",
       "jobs.ack: job " + d + " is not running (it finished with status success)"},
      {"SELECT jobs.ack(987654)", "55000", "jobs.ack: job 987654 does not exist"},
      {"SELECT jobs.nack(" + p + ", 'x')", "55000",
       "jobs.nack: job " + p + " is not running (it is pending)"},
      {"SELECT jobs.ack(NULL::bigint)", "22023", "jobs.ack: job_id must not be NULL"},
      {"SELECT * FROM jobs.ack(ARRAY[1, 2]::bigint[], ARRAY[1])", "22023",
       "jobs.ack: attempts has 1 elements but job_ids has 2"},
      {"SELECT * FROM jobs.nack(ARRAY[1]::bigint[], ARRAY['a', 'b'], NULL, NULL)", "22023",
       "jobs.nack: tracebacks has 2 elements but job_ids has 1"},
      {"SELECT * FROM jobs.consume(0)", "22023", "jobs.consume: num must be at least 1, got 0"},
      {"SELECT * FROM jobs.consume(NULL)", "22023",
       "jobs.consume: num must be at least 1, got NULL"},
  };
  const std::string before = Value(
      "SELECT (SELECT count(*) FROM jobs.job_queue) || '/' || (SELECT count(*) FROM jobs.job) || "
      "'/' || (SELECT string_agg(status || attempts, ',') FROM jobs.job_queue)");
  for (const BadCall& call : calls) {
    db::DbError e = Refusal(call.sql);
    EXPECT_EQ(e.SqlState(), call.sqlstate) << call.sql;
    EXPECT_EQ(e.ServerMessage(), call.message) << call.sql;
  }
  EXPECT_EQ(Value("SELECT (SELECT count(*) FROM jobs.job_queue) || '/' || (SELECT count(*) FROM "
                  "jobs.job) || '/' || (SELECT string_agg(status || attempts, ',') FROM "
                  "jobs.job_queue)"),
            before);
}

TEST_F(QueueTest, BatchAckAndNackCompleteWhatIsRunningAndReportIt) {
  std::vector<long long> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(Publish("t", "i_max_retries => 0"));
  const long long idle = Publish("t");
  ASSERT_EQ(Conn().Query("c", "SELECT * FROM jobs.consume(4)").Rows(), 4);
  auto list = [](std::initializer_list<long long> v) {
    std::string s = "{";
    for (long long x : v) s += (s.size() > 1 ? "," : "") + std::to_string(x);
    return s + "}";
  };
  db::Result acked =
      Conn().Query("ack", "SELECT job_id FROM jobs.ack($1::bigint[], NULL) ORDER BY 1",
                   {list({ids[0], ids[1], idle})});
  ASSERT_EQ(acked.Rows(), 2);
  EXPECT_EQ(acked.Int(0, 0), ids[0]);
  EXPECT_EQ(acked.Int(1, 0), ids[1]);
  db::Result nacked = Conn().Query(
      "nack",
      "SELECT job_id FROM jobs.nack($1::bigint[], ARRAY['e2', 'e3', 'e0'], NULL, NULL) ORDER BY 1",
      {list({ids[2], ids[3], ids[0]})});
  ASSERT_EQ(nacked.Rows(), 2);
  EXPECT_EQ(Value("SELECT string_agg(status || ':' || (tracebacks->0->>'error'), ',' ORDER BY "
                  "job_id) FROM jobs.job WHERE status = 'failure'"),
            "failure:e2,failure:e3");
  EXPECT_EQ(Value("SELECT status FROM jobs.job_queue WHERE job_id = " + std::to_string(idle)),
            "pending");
}

TEST_F(QueueTest, ConcurrentConsumersNeverShareAJobAndLoseNone) {
  constexpr int kJobs = 3000;
  constexpr int kConsumers = 6;
  Conn().Query("bulk",
               "SELECT count(*) FROM jobs.publish_bulk(ARRAY(SELECT ('t' || (i % 3), "
               "jsonb_build_object('i', i), NULL, NULL, NULL, NULL)::jobs.bulk_job FROM "
               "generate_series(1, $1::int) i))",
               {std::to_string(kJobs)});
  std::vector<std::vector<long long>> seen(kConsumers);
  std::vector<std::thread> threads;
  for (int c = 0; c < kConsumers; ++c) {
    threads.emplace_back([this, c, &seen] {
      db::Connection conn = Connect();
      for (;;) {
        db::Result r = conn.Query("consume", "SELECT job_id FROM jobs.consume(7)");
        if (r.Rows() == 0) break;
        std::string ids = "{";
        for (int i = 0; i < r.Rows(); ++i) {
          seen[c].push_back(r.Int(i, 0));
          ids += (i ? "," : "") + std::string(r.Text(i, 0));
        }
        ids += "}";
        // Half of the batches are acked one by one, half at once.
        if (c % 2 == 0) {
          conn.Query("ack", "SELECT count(*) FROM jobs.ack($1::bigint[], NULL)", {ids});
        } else {
          for (int i = 0; i < r.Rows(); ++i) {
            conn.Query("ack", "SELECT jobs.ack($1::bigint)", {std::string(r.Text(i, 0))});
          }
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  std::vector<long long> all;
  for (const auto& s : seen) all.insert(all.end(), s.begin(), s.end());
  std::sort(all.begin(), all.end());
  EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end()) << "a job was consumed twice";
  EXPECT_EQ(all.size(), static_cast<size_t>(kJobs));
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job WHERE status = 'success'"), kJobs);
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job_queue"), 0);
  for (const auto& s : seen) EXPECT_GT(s.size(), 0u) << "a consumer was starved or blocked";
}

TEST_F(QueueTest, ConsumersDoNotBlockEachOther) {
  Publish("t");
  Publish("t");
  db::Connection other = Connect();
  Conn().Execute("begin", "BEGIN");
  ASSERT_EQ(Conn().Query("c", "SELECT * FROM jobs.consume(1)").Rows(), 1);
  // The first transaction still holds its job's row lock; the second consumer skips it at once.
  other.Execute("timeout", "SET lock_timeout = '200ms'");
  EXPECT_EQ(other.Query("c", "SELECT * FROM jobs.consume(5)").Rows(), 1);
  Conn().Execute("commit", "COMMIT");
}

TEST_F(QueueTest, ViewsShowEveryStateWithTheirColumns) {
  Publish("ready");
  Publish("later", "i_scheduled_at => clock_timestamp() + interval '1 hour'");
  const long long retry = Publish("retry");
  ASSERT_EQ(ConsumeOne(Conn(), "ARRAY['retry']"), retry);
  Conn().Query("nack", "SELECT jobs.nack($1, 'x')", {std::to_string(retry)});
  Publish("run");
  ConsumeOne(Conn(), "ARRAY['run']");
  EXPECT_EQ(Value("SELECT string_agg(task || '=' || state, ',' ORDER BY task) FROM jobs.all"),
            "later=scheduled,ready=ready,retry=retry_wait,run=running");
  EXPECT_EQ(Value("SELECT string_agg(task, ',') FROM jobs.running"), "run");
  for (const char* view : {"jobs.all", "jobs.running", "jobs.expired"}) {
    db::Result r = Conn().Query("columns", std::string("SELECT * FROM ") + view + " LIMIT 0");
    for (const char* column : {"job_id", "task", "status", "priority", "attempts", "max_retries",
                               "timeout", "scheduled_at"}) {
      EXPECT_NO_THROW(r.ColumnIndex(column)) << view << "." << column;
    }
  }
}

// jobs.complete reports a batch of results in one call and says what became of each job, so that
// a worker never restates the rule for a job that failed for good.
TEST_F(QueueTest, CompleteAcksAndNacksAndSaysWhatBecameOfEachJob) {
  const long long ok = Publish("t");
  const long long again = Publish("t", "i_max_retries => 1");
  const long long dead = Publish("t", "i_max_retries => 0");
  const long long reclaimed = Publish("t");
  Conn().Query("consume", "SELECT * FROM jobs.consume(4)");
  auto s = [](long long v) { return std::to_string(v); };
  db::Result r = Conn().Query(
      "complete",
      "SELECT job_id, outcome FROM jobs.complete($1::bigint[], $2::int[], $3::bigint[], "
      "$4::text[], $5::int[]) ORDER BY job_id",
      {"{" + s(ok) + "," + s(reclaimed) + "}", "{1,2}", "{" + s(again) + "," + s(dead) + "}",
       "{boom,bang}", "{1,1}"});
  ASSERT_EQ(r.Rows(), 3) << "the attempt that no longer runs is left out";
  EXPECT_EQ(r.Int(0, 0), ok);
  EXPECT_EQ(r.Text(0, 1), "success");
  EXPECT_EQ(r.Int(1, 0), again);
  EXPECT_EQ(r.Text(1, 1), "retry");
  EXPECT_EQ(r.Int(2, 0), dead);
  EXPECT_EQ(r.Text(2, 1), "failure");
  EXPECT_EQ(Value("SELECT string_agg(job_id || status, ',' ORDER BY job_id) FROM jobs.job"),
            s(ok) + "success," + s(dead) + "failure");
  EXPECT_EQ(Value("SELECT tracebacks->0->>'error' FROM jobs.all WHERE job_id = " + s(again)),
            "boom");
  EXPECT_EQ(Value("SELECT count(*) FROM jobs.complete('{}', '{}', '{}', '{}', '{}')"), "0");
  db::DbError e = Refusal("SELECT * FROM jobs.complete('{}', '{}', $1::bigint[], '{}', '{1}')",
                          {"{" + s(reclaimed) + "}"});
  EXPECT_EQ(e.SqlState(), "22023");
  EXPECT_EQ(e.ServerMessage(), "jobs.complete: tracebacks has 0 elements but job_ids has 1");
}

// A snapshot held elsewhere keeps the dead entries of every finished job in the queue's indexes.
// A session's consume steps over them once, not on every call: its check for expired jobs
// looks only at deadlines passed since its last call, and its search starts below the oldest job
// it last took (migration 11).
TEST_F(QueueTest, ConsumeStepsOverTheDeadEntriesOfFinishedJobsOnce) {
  db::Connection holder = Connect();
  holder.Execute("hold", "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM pg_class");
  FinishJobs(2000, "1");
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // their deadlines have passed
  db::Connection worker = Connect();
  worker.Execute("settings", "SET pgjobs.consume_floor_margin = '0'");
  const std::string read = kQueueIndexEntriesRead;
  std::vector<long long> entries;
  for (int call = 1; call <= 4; ++call) {
    Conn().Query("one more", "SELECT jobs.publish('t')");
    worker.Execute("begin", "BEGIN");
    const long long before = worker.Query("read", read).Int(0, 0);
    EXPECT_EQ(worker.Query("consume", "SELECT count(*) FROM jobs.consume(10, '{t}')").Int(0, 0), 1)
        << "call " << call;
    entries.push_back(worker.Query("read", read).Int(0, 0) - before);
    worker.Execute("commit", "COMMIT");
  }
  EXPECT_GE(entries[0], 4000) << "the first call steps over every dead entry";
  for (size_t call = 1; call < entries.size(); ++call) {
    EXPECT_LT(entries[call], 50) << "call " << call + 1 << " read " << entries[call]
                                 << " index entries";
  }
  holder.Execute("release", "COMMIT");
}

// What lies below a session's floor is found by its next full search, at most
// pgjobs.consume_full_scan_interval later: a job published with a scheduled_at long past, and
// one whose publishing transaction committed after the floor had passed it.
TEST_F(QueueTest, JobsBelowASessionsFloorAreFoundByItsNextFullSearch) {
  db::Connection worker = Connect();
  worker.Execute("settings",
                 "SET pgjobs.consume_floor_margin = '0'; "
                 "SET pgjobs.consume_full_scan_interval = '300 ms'; "
                 "SET pgjobs.consume_full_scan_share = '1'");  // cost never stretches it
  auto consume = [&worker] {
    return worker.Query("consume", "SELECT count(*) FROM jobs.consume(10, '{t}')").Int(0, 0);
  };
  db::Connection slow_publisher = Connect();
  slow_publisher.Execute("publish and wait", "BEGIN; SELECT jobs.publish('t')");
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  Publish("t");
  EXPECT_EQ(consume(), 1) << "the first call searches fully and sets the floor";
  slow_publisher.Execute("commit late", "COMMIT");
  Publish("t", "i_scheduled_at => clock_timestamp() - interval '1 hour'");
  EXPECT_EQ(consume(), 0) << "both lie below the floor";
  std::this_thread::sleep_for(std::chrono::milliseconds(350));
  EXPECT_LT(std::stod(std::string(
                worker.Query("due", "SELECT jobs.seconds_until_next_due('{t}')").Text(0, 0))),
            0)
      << "the idle worker's look sees them due";
  EXPECT_EQ(consume(), 2) << "the full search takes them";
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job_queue WHERE status = 'pending'"), 0);
}

// A full search costs what the dead entries below the floor cost to step over, and while a
// snapshot is held elsewhere they pile up: the interval between full searches is their cost over
// pgjobs.consume_full_scan_share, and never more than pgjobs.consume_full_scan_max_interval
// (migration 17).
TEST_F(QueueTest, FullSearchesAreSpacedOutByWhatTheyCost) {
  db::Connection worker = Connect();
  worker.Execute("settings",
                 "SET pgjobs.consume_floor_margin = '0'; "
                 "SET pgjobs.consume_full_scan_interval = '0'; "
                 "SET pgjobs.consume_full_scan_share = '1e-9'; "
                 "SET pgjobs.consume_full_scan_max_interval = '1 hour'");
  auto consume = [&worker] {
    return worker.Query("consume", "SELECT count(*) FROM jobs.consume(10, '{t}')").Int(0, 0);
  };
  // Dead entries for the full search to step over, as a snapshot held elsewhere leaves them.
  db::Connection holder = Connect();
  holder.Execute("hold", "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM pg_class");
  FinishJobs(2000);
  Publish("t");
  EXPECT_EQ(consume(), 1) << "the first call searches fully";
  EXPECT_GT(std::stod(std::string(
                worker.Query("cost", "SELECT current_setting('pgjobs.consume_full_scan_cost')")
                    .Text(0, 0))),
            0);
  Publish("t", "i_scheduled_at => clock_timestamp() - interval '1 hour'");
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(consume(), 0) << "its cost over a tiny share puts the next full search an hour away";
  worker.Execute("cap", "SET pgjobs.consume_full_scan_max_interval = '10 ms'");
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(consume(), 1) << "the cap brings it back";
  holder.Execute("release", "COMMIT");
}

}  // namespace
}  // namespace pgjobs::testing
