// SPDX-License-Identifier: Apache-2.0
// Values that once stopped the queue are refused where they enter, with 22023 and the argument
// named; the table's constraints refuse them on every other path.
#include "tests/pg/fixture.h"

namespace pgjobs::testing {
namespace {

struct Refused {
  std::string sql;
  std::string message;
};

class PoisonTest : public PgTest {
 protected:
  void ExpectRefused(const std::vector<Refused>& cases) {
    for (const Refused& c : cases) {
      db::DbError e = Refusal(c.sql);
      EXPECT_EQ(e.SqlState(), "22023") << c.sql;
      EXPECT_EQ(e.ServerMessage(), c.message) << c.sql;
    }
  }
};

TEST_F(PoisonTest, PublishRefusesValuesThatCouldNeverRun) {
  ExpectRefused({
      {"SELECT jobs.publish('t', i_timeout => 'NaN')",
       "jobs.publish: timeout must be a number of seconds from 0.01 to 99999.99, got NaN"},
      {"SELECT jobs.publish('t', i_timeout => 'Infinity')",
       "jobs.publish: timeout must be a number of seconds from 0.01 to 99999.99, got "
       "Infinity"},
      {"SELECT jobs.publish('t', i_timeout => '-Infinity')",
       "jobs.publish: timeout must be a number of seconds from 0.01 to 99999.99, got "
       "-Infinity"},
      {"SELECT jobs.publish('t', i_timeout => 0.001)",
       "jobs.publish: timeout must be a number of seconds from 0.01 to 99999.99, got 0.001"},
      {"SELECT jobs.publish('t', i_timeout => 100000)",
       "jobs.publish: timeout must be a number of seconds from 0.01 to 99999.99, got 100000"},
      {"SELECT jobs.publish('t', i_scheduled_at => 'infinity')",
       "jobs.publish: scheduled_at must be a finite time, got infinity"},
      {"SELECT jobs.publish('t', i_scheduled_at => '-infinity')",
       "jobs.publish: scheduled_at must be a finite time, got -infinity"},
      {"SELECT jobs.publish(' ')", "jobs.publish: task must be a non-blank string, got ' '"},
      {"SELECT jobs.publish(E'\\t\\n')",
       "jobs.publish: task must be a non-blank string, got '\t\n'"},
      {"SELECT jobs.publish(repeat('x', 201))",
       "jobs.publish: task must be at most 200 characters, got 201"},
      {"SELECT jobs.publish(repeat('x', 10000))",
       "jobs.publish: task must be at most 200 characters, got 10000"},
      {"SELECT jobs.publish('t', jsonb_build_object('blob', repeat('x', 1048576)))",
       "jobs.publish: arguments must be at most 1048576 bytes as jsonb, got 1048596"},
  });
  // The limits themselves are accepted.
  Publish(std::string(200, 'x'));
  Publish("t", "i_timeout => 0.01");
  Publish("t", "i_timeout => 99999.99");
  Publish("t", "i_arguments => jsonb_build_object('blob', repeat('x', 1048000))");
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job_queue"), 4);
}

TEST_F(PoisonTest, PublishBulkNamesTheElementAndQueuesNothing) {
  auto bulk = [](const std::string& bad) {
    return "SELECT count(*) FROM jobs.publish_bulk(ARRAY[('ok', NULL, NULL, NULL, NULL, NULL), " +
           bad + "]::jobs.bulk_job[])";
  };
  ExpectRefused({
      {bulk("('t', NULL, 'infinity', NULL, NULL, NULL)"),
       "jobs.publish_bulk: element 2: scheduled_at must be a finite time, got infinity"},
      {bulk("('t', NULL, '-infinity', NULL, NULL, NULL)"),
       "jobs.publish_bulk: element 2: scheduled_at must be a finite time, got -infinity"},
      {bulk("(' ', NULL, NULL, NULL, NULL, NULL)"),
       "jobs.publish_bulk: element 2: task must be a non-blank string, got ' '"},
      {bulk("(repeat('y', 300), NULL, NULL, NULL, NULL, NULL)"),
       "jobs.publish_bulk: element 2: task must be at most 200 characters, got 300"},
      {bulk("('t', NULL, NULL, 100000, NULL, NULL)"),
       "jobs.publish_bulk: element 2: timeout must be a number of seconds from 0.01 to "
       "99999.99, got 100000"},
      {bulk("('t', jsonb_build_object('b', repeat('x', 2000000)), NULL, NULL, NULL, NULL)"),
       "jobs.publish_bulk: element 2: arguments must be at most 1048576 bytes as jsonb, got "
       "2000017"},
  });
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job_queue"), 0);
}

// No path stores what publish refuses: an operator's UPDATE meets the table's constraints.
TEST_F(PoisonTest, TheQueueTableRefusesPoisonValuesOnEveryPath) {
  const std::string id = std::to_string(Publish("t"));
  for (const char* set : {"timeout = 'NaN'", "scheduled_at = 'infinity'",
                          "scheduled_at = '-infinity'", "task = ' '", "task = repeat('x', 201)"}) {
    db::DbError e =
        Refusal(std::string("UPDATE jobs.job_queue SET ") + set + " WHERE job_id = " + id);
    EXPECT_EQ(e.SqlState(), "23514") << set;
  }
}

TEST_F(PoisonTest, NackRefusesATracebackOverSixteenKibibytes) {
  Publish("t");
  Publish("t");
  db::Result taken = Conn().Query("consume", "SELECT job_id FROM jobs.consume(2)");
  const std::string a = std::string(taken.Text(0, 0));
  const std::string b = std::string(taken.Text(1, 0));
  db::DbError single = Refusal("SELECT jobs.nack(" + a + ", repeat('x', 16385))");
  EXPECT_EQ(single.SqlState(), "22023");
  EXPECT_EQ(single.ServerMessage(),
            "jobs.nack: the traceback of job " + a + " is 16385 bytes, more than 16384");
  db::DbError batch = Refusal("SELECT * FROM jobs.nack(ARRAY[" + a + ", " + b +
                              "], ARRAY['short', repeat('é', 9000)], NULL, NULL)");
  EXPECT_EQ(batch.ServerMessage(),
            "jobs.nack: the traceback of job " + b + " is 18000 bytes, more than 16384");
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.running"), 2) << "a refused call changes nothing";
  Conn().Query("nack at the limit", "SELECT jobs.nack($1::bigint, repeat('x', 16384))", {a});
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.running"), 1);
}

// Drivers such as node-postgres send every parameter untyped. Each documented call form must
// resolve, and mean what it means with typed parameters. db::Connection sends parameters
// untyped too (libpq with no parameter types).
TEST_F(PoisonTest, EveryDocumentedCallResolvesWithUntypedParameters) {
  const long long a = Publish("t", "i_max_retries => 0");
  const long long b = Publish("t", "i_max_retries => 0");
  const long long c = Publish("t", "i_max_retries => 0");
  const long long d = Publish("t", "i_max_retries => 0");
  const long long e = Publish("t", "i_max_retries => 0");
  EXPECT_EQ(Conn().Query("consume", "SELECT job_id FROM jobs.consume($1, $2)", {"5", "{t}"}).Rows(),
            5);
  auto s = [](long long v) { return std::to_string(v); };
  EXPECT_EQ(Value("SELECT jobs.ack($1, $2)", {s(a), "1"}), s(a));
  Conn().Query("ack one", "SELECT jobs.ack($1)", {s(b)});
  EXPECT_EQ(
      Value("SELECT count(*) FROM jobs.ack($1, $2)", {"{" + s(c) + "," + s(a) + "}", std::nullopt}),
      "1")
      << "the batch form leaves out the job that is no longer running";
  Conn().Query("nack", "SELECT jobs.nack($1, $2)", {s(d), "boom"});
  EXPECT_EQ(Value("SELECT jobs.nack($1, $2, $3, $4)", {s(e), "busy", std::nullopt, "1"}), s(e));
  EXPECT_EQ(Value("SELECT string_agg(status, ',' ORDER BY job_id) FROM jobs.job"),
            "success,success,success,failure,failure");
  // Refusals keep their meaning: a job that is not running is 55000, as with typed calls.
  EXPECT_EQ(Refusal("SELECT jobs.ack($1, $2)", {s(a), "1"}).SqlState(), "55000");
  EXPECT_EQ(Refusal("SELECT jobs.nack($1, $2, $3, $4)", {s(a), "x", std::nullopt, "1"}).SqlState(),
            "55000");
  EXPECT_EQ(Refusal("SELECT jobs.ack($1, $2)", {"forty-two", "1"}).SqlState(), "22P02");
  // Typed calls still reach the typed forms.
  const std::string f = s(Publish("t"));
  Conn().Query("consume", "SELECT * FROM jobs.consume(1)");
  EXPECT_EQ(Value("SELECT pg_typeof(jobs.ack(" + f + ", NULL))::text"), "void")
      << "a typed call returns what the single-job ack always returned";
}

// What each role may execute, function by function; PUBLIC may execute none.
TEST_F(PoisonTest, EveryFunctionIsExecutableOnlyByTheRolesItIsFor) {
  db::Result r = Conn().Query("acl", R"sql(
    SELECT p.oid::regprocedure::text,
           coalesce(string_agg(r.rolname, ',' ORDER BY r.rolname)
                    FILTER (WHERE has_function_privilege(r.rolname, p.oid, 'EXECUTE')), '')
    FROM pg_proc p
    CROSS JOIN (VALUES ('public'), ('jobs_publisher'), ('jobs_consumer'), ('jobs_monitor'),
                       ('jobs_operator')) AS r(rolname)
    WHERE p.pronamespace = 'jobs'::regnamespace
    GROUP BY p.oid ORDER BY 1)sql");
  std::map<std::string, std::string> granted;
  for (int i = 0; i < r.Rows(); ++i) granted[std::string(r.Text(i, 0))] = r.Text(i, 1);
  const std::string consumer = "jobs_consumer";
  const std::string operator_role = "jobs_operator";
  const std::string all = "jobs_consumer,jobs_monitor,jobs_operator,jobs_publisher";
  std::map<std::string, std::string> expected = {
      {"jobs.ack(bigint,integer)", consumer},
      {"jobs.ack(bigint[],integer[])", consumer},
      {"jobs.ack(text,text)", consumer},
      {"jobs.nack(bigint,text,timestamp with time zone,integer)", consumer},
      {"jobs.nack(bigint[],text[],timestamp with time zone,integer[])", consumer},
      {"jobs.nack(text,text,text,text)", consumer},
      {"jobs.consume(integer,character varying[],bigint)", consumer},
      {"jobs.expire()", consumer},
      {"jobs.complete(bigint[],integer[],bigint[],text[],integer[])", consumer},
      {"jobs.register_worker(text,text,integer,integer,interval)", consumer},
      {"jobs.heartbeat(bigint)", consumer},
      {"jobs.unregister_worker(bigint)", consumer},
      {"jobs.seconds_until_next_due(character varying[])", consumer},
      {"jobs.publish_bulk(jobs.bulk_job[])", "jobs_publisher"},
      {"jobs.finished_stats(bigint,double precision[],double precision[],double precision[])",
       "jobs_monitor"},
      {"jobs.cancel(bigint[])", operator_role},
      {"jobs.cancel_requested(bigint)", consumer},
      {"jobs.retry(bigint[])", operator_role},
      {"jobs.reschedule(bigint[],timestamp with time zone)", operator_role},
      {"jobs.pause(text)", operator_role},
      {"jobs.resume(text)", operator_role},
      {"jobs.prune(integer)", operator_role},
      {"jobs.create_job_partitions(timestamp with time zone,integer)", operator_role},
      {"jobs.prunable()", operator_role},
      {"jobs.publish(character varying,jsonb,timestamp with time zone,numeric,integer,integer,"
       "text,text)",
       "jobs_publisher"},
      {"jobs.publish_bulk(jobs.bulk_job[],text[],text)", "jobs_publisher"},
      {"jobs.schedule(text,text,character varying,jsonb,text,text)", "jobs_consumer,jobs_operator"},
      {"jobs.unschedule(text)", operator_role},
      {"jobs.enqueue_schedules(interval,integer)", "jobs_consumer,jobs_operator"},
      {"jobs.seconds_until_next_slot()", "jobs_consumer,jobs_operator"},
      {"jobs.cron_parse(text)", all},
      {"jobs.cron_next(text,text,timestamp with time zone)", all},
      {"jobs.zone_offset(timestamp with time zone,text)", all},
      {"jobs.local_instants(timestamp without time zone,text)", all},
      {"jobs.gap_end(timestamp without time zone,text)", all},
      {"jobs.set_retention(text,interval)", operator_role},
      {"jobs.maintain(interval,integer)", "jobs_consumer,jobs_operator"},
      {"jobs.compact_queue(bigint)", "jobs_consumer,jobs_operator"},
      {"jobs.queue_stats()", "jobs_monitor,jobs_operator"},
      {"jobs.stats_floor(integer)", "jobs_monitor,jobs_operator"},
      {"jobs.job_arguments(bigint)", operator_role},
      {"jobs.retry_delay(integer)", "jobs_consumer,jobs_monitor,jobs_publisher"},
      {"jobs.job_state(text,integer,timestamp with time zone,timestamp with time zone,timestamp "
       "with time zone)",
       all},
  };
  for (const auto& [function, roles] : granted) {
    auto it = expected.find(function);
    EXPECT_EQ(roles, it == expected.end() ? "" : it->second) << function;
    EXPECT_EQ(roles.find("public"), std::string::npos) << function;
  }
  for (const auto& [function, roles] : expected) {
    EXPECT_TRUE(granted.contains(function)) << function << " is missing";
  }
}

}  // namespace
}  // namespace pgjobs::testing
