// SPDX-License-Identifier: Apache-2.0
// Unique jobs and recurring jobs in SQL: keys under concurrent publishers, the cron parser and
// its next slot across daylight saving in two zones, schedules and their missed slots.
#include <thread>
#include <vector>

#include "tests/pg/fixture.h"

namespace pgjobs::testing {
namespace {

using UniqueJobsTest = PgTest;

std::string Id(long long id) { return std::to_string(id); }

class RecurringTest : public PgTest {
 protected:
  // The next slots of `cron` in `zone` after `after`, as UTC text, `n` of them.
  std::string Slots(const std::string& cron, const std::string& zone, const std::string& after,
                    int n) {
    return Value(R"sql(
    WITH RECURSIVE s(at, i) AS (
        SELECT jobs.cron_next($1, $2, $3::timestamptz), 1
        UNION ALL SELECT jobs.cron_next($1, $2, s.at), s.i + 1 FROM s WHERE s.i < $4::int)
    SELECT string_agg(to_char(at AT TIME ZONE 'UTC', 'MM-DD HH24:MI'), ' ' ORDER BY i) FROM s)sql",
                 {cron, zone, after, std::to_string(n)});
  }

  // Sets schedule `name` on `cron` with `missed`, as if its slots had been due since
  // `since_minutes` minutes ago, nothing enqueued meanwhile.
  void DueSince(const std::string& name, const std::string& cron, const std::string& missed,
                int since_minutes) {
    Value("SELECT jobs.schedule($1, $2, 'tick', NULL, 'UTC', $3)", {name, cron, missed});
    Conn().Query("back in time",
                 "UPDATE jobs.schedules SET last_slot = date_trunc('minute', now()) - "
                 "make_interval(mins => $2::int) - interval '1 s', "
                 "next_slot = date_trunc('minute', now()) - make_interval(mins => $2::int) "
                 "WHERE name = $1",
                 {name, std::to_string(since_minutes)});
  }
};

using CronTest = RecurringTest;
using ScheduleTest = RecurringTest;

TEST_F(UniqueJobsTest, APendingJobHoldsItsKeyAndASecondPublishReturnsIt) {
  const long long first = Publish("invoice", "i_unique_key => 'invoice:42'");
  EXPECT_EQ(Publish("invoice", "i_unique_key => 'invoice:42'"), first);
  EXPECT_NE(Publish("invoice", "i_unique_key => 'invoice:43'"), first);
  EXPECT_NE(Publish("other", "i_unique_key => 'invoice:42'"), first) << "keys are per task";
  EXPECT_NE(Publish("invoice"), first) << "no key, no deduplication";
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job_queue WHERE task = 'invoice'"), 3);
  EXPECT_EQ(Value("SELECT string_agg(task || '=' || deduplicated_total, ',') "
                  "FROM jobs.stats_deduplicated"),
            "invoice=1");
  // Scheduled for later, or waiting for a retry, it is pending and still holds its key.
  const long long later =
      Publish("later", "i_unique_key => 'k', i_scheduled_at => now() + interval '1 hour'");
  EXPECT_EQ(Publish("later", "i_unique_key => 'k'"), later);
  // Running, it holds it only with pending_or_running.
  Conn().Execute("take", "SELECT count(*) FROM jobs.consume(10, ARRAY['invoice'])");
  const long long again = Publish("invoice", "i_unique_key => 'invoice:42'");
  EXPECT_NE(again, first);
  const long long held = Publish("report",
                                 "i_unique_key => 'r', "
                                 "i_unique_while => 'pending_or_running'");
  Conn().Execute("take", "SELECT count(*) FROM jobs.consume(10, ARRAY['report'])");
  EXPECT_EQ(Publish("report", "i_unique_key => 'r'"), held);
  // Finished, it holds nothing; the stale claim goes with the maintenance.
  Conn().Execute("ack", "SELECT jobs.ack(" + Id(held) + "::bigint, 1)");
  EXPECT_NE(Publish("report", "i_unique_key => 'r'"), held);
  EXPECT_GE(Int("SELECT jobs.forget_stale_claims()"), 1);
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.unique_claim c "
                "WHERE NOT jobs.holds_key(c.job_id, c.task, c.unique_key)"),
            0);
  // Bad keys and modes are refused, naming the argument.
  db::DbError empty = Refusal("SELECT jobs.publish('t', i_unique_key => '')");
  EXPECT_EQ(empty.SqlState(), "22023");
  EXPECT_NE(std::string(empty.what()).find("unique_key"), std::string::npos) << empty.what();
  EXPECT_EQ(Refusal("SELECT jobs.publish('t', i_unique_key => 'x', i_unique_while => 'always')")
                .SqlState(),
            "22023");
}

TEST_F(UniqueJobsTest, EightConcurrentPublishersOfOneKeyQueueOneJob) {
  for (int round = 0; round < 20; ++round) {
    const std::string key = "k" + std::to_string(round);
    std::vector<long long> ids(8, 0);
    std::vector<std::thread> publishers;
    for (int i = 0; i < 8; ++i) {
      publishers.emplace_back([this, &ids, i, &key] {
        db::Connection conn = Connect();
        ids[static_cast<size_t>(i)] =
            conn.Query("publish", "SELECT jobs.publish('race', i_unique_key => $1)", {key})
                .Int(0, 0);
      });
    }
    for (auto& t : publishers) t.join();
    for (long long id : ids) EXPECT_EQ(id, ids[0]) << "round " << round;
    EXPECT_EQ(Int("SELECT count(*) FROM jobs.job_queue WHERE unique_key = $1", {key}), 1);
  }
  EXPECT_EQ(Int("SELECT deduplicated_total FROM jobs.stats_deduplicated WHERE task = 'race'"),
            20 * 7);
}

TEST_F(UniqueJobsTest, PublishBulkTakesAKeyPerJobAndKeepsItsOldForm) {
  const long long held = Publish("t", "i_unique_key => 'a'");
  db::Result r = Conn().Query("bulk", R"sql(
    SELECT job_id FROM jobs.publish_bulk(
        ARRAY[('t', NULL, NULL, NULL, NULL, NULL)::jobs.bulk_job,
              ('t', NULL, NULL, NULL, NULL, NULL)::jobs.bulk_job,
              ('t', NULL, NULL, NULL, NULL, NULL)::jobs.bulk_job],
        ARRAY['a', 'b', NULL]))sql");
  ASSERT_EQ(r.Rows(), 3);
  EXPECT_EQ(r.Int(0, 0), held);
  EXPECT_NE(r.Int(1, 0), held);
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job_queue"), 3);
  // Callers of the form without keys are unchanged.
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.publish_bulk(ARRAY[('t', NULL, NULL, NULL, NULL, "
                "NULL)::jobs.bulk_job])"),
            1);
  db::DbError mismatch = Refusal(
      "SELECT jobs.publish_bulk(ARRAY[('t',NULL,NULL,NULL,NULL,NULL)::jobs.bulk_job], "
      "ARRAY['a','b'])");
  EXPECT_EQ(mismatch.SqlState(), "22023");
  EXPECT_NE(std::string(mismatch.what()).find("i_unique_keys"), std::string::npos);
  db::DbError bad = Refusal(
      "SELECT jobs.publish_bulk(ARRAY[('t',NULL,NULL,NULL,NULL,NULL)::jobs.bulk_job, "
      "(' ',NULL,NULL,NULL,NULL,NULL)::jobs.bulk_job], ARRAY['c','d'])");
  EXPECT_NE(std::string(bad.what()).find("element 2"), std::string::npos) << bad.what();
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job_queue"), 4) << "a refused call queues nothing";
}

TEST_F(CronTest, FieldsListsRangesStepsNamesAndTheDayRule) {
  EXPECT_EQ(Slots("*/20 9-10 * * *", "UTC", "2026-01-05 08:00Z", 7),
            "01-05 09:00 01-05 09:20 01-05 09:40 01-05 10:00 01-05 10:20 01-05 10:40 "
            "01-06 09:00");
  EXPECT_EQ(Slots("0 12 * jan-feb mon,FRI", "UTC", "2026-01-28 00:00Z", 4),
            "01-30 12:00 02-02 12:00 02-06 12:00 02-09 12:00");
  // Both day fields restricted: either matches (the 1st, or a Sunday).
  EXPECT_EQ(Slots("0 0 1 3 7", "UTC", "2026-02-27 00:00Z", 3),
            "03-01 00:00 03-08 00:00 03-15 00:00");
  // One is *: the other decides alone.
  EXPECT_EQ(Slots("0 0 */10 3 *", "UTC", "2026-02-27 00:00Z", 4),
            "03-01 00:00 03-11 00:00 03-21 00:00 03-31 00:00");
  EXPECT_EQ(Slots("@monthly", "UTC", "2026-02-27 00:00Z", 2), "03-01 00:00 04-01 00:00");
  EXPECT_EQ(Value("SELECT jobs.cron_next('0 0 29 2 *', 'UTC', '2026-03-01Z') AT TIME ZONE 'UTC'"),
            "2028-02-29 00:00:00");
  EXPECT_EQ(Value("SELECT jobs.cron_next('0 0 31 2 *', 'UTC', now()) IS NULL"), "t");
}

TEST_F(CronTest, BadExpressionsAndZonesAreRefusedSayingWhatIsWrong) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"* * * *", "must have 5 fields"},
      {"61 * * * *", "minute field: 61 is out of range 0-59"},
      {"* 24 * * *", "hour field: 24 is out of range 0-23"},
      {"* * 0 * *", "day-of-month field: 0 is out of range 1-31"},
      {"* * * JANX *", "month field: unknown name"},
      {"* * * * 8", "day-of-week field: 8 is out of range 0-7"},
      {"5-1 * * * *", "minute field: range '5-1' runs backwards"},
      {"*/0 * * * *", "minute field: step must be at least 1"},
      {"1,,2 * * * *", "minute field: '' is not a value"},
      {"@sometimes", "must have 5 fields"},
  };
  for (const auto& [cron, message] : cases) {
    db::DbError e = Refusal("SELECT jobs.cron_parse($1)", {cron});
    EXPECT_EQ(e.SqlState(), "22023") << cron;
    EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << cron << ": " << e.what();
  }
  db::DbError zone = Refusal("SELECT jobs.cron_next('* * * * *', 'Mars/Olympus', now())");
  EXPECT_NE(std::string(zone.what()).find("time zone 'Mars/Olympus' is not known"),
            std::string::npos)
      << zone.what();
}

// Daylight saving as cron does it: a fixed-hour slot in a skipped hour runs once when the clock
// jumps, one in a repeated hour once, the first time; an hourly-wildcard schedule follows the
// real clock. Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST (01:00 UTC); 2026-10-25 03:00
// CEST -> 02:00 CET (01:00 UTC). America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT (07:00
// UTC); 2026-11-01 02:00 EDT -> 01:00 EST (06:00 UTC).
TEST_F(CronTest, DaylightSavingInTwoZones) {
  // Berlin, skipped hour: 02:30 does not exist on 03-29; it runs at 03:00 CEST, then as usual.
  EXPECT_EQ(Slots("30 2 * * *", "Europe/Berlin", "2026-03-28 12:00Z", 2),
            "03-29 01:00 03-30 00:30");
  // Berlin, repeated hour: 02:30 happens twice on 10-25; it runs the first time only.
  EXPECT_EQ(Slots("30 2 * * *", "Europe/Berlin", "2026-10-24 12:00Z", 2),
            "10-25 00:30 10-26 01:30");
  // Berlin, every half hour: none in the skipped hour, both occurrences of the repeated one.
  EXPECT_EQ(Slots("*/30 * * * *", "Europe/Berlin", "2026-03-28 23:40Z", 4),
            "03-29 00:00 03-29 00:30 03-29 01:00 03-29 01:30");
  EXPECT_EQ(Slots("*/30 * * * *", "Europe/Berlin", "2026-10-24 23:40Z", 5),
            "10-25 00:00 10-25 00:30 10-25 01:00 10-25 01:30 10-25 02:00");
  // New York, the same rules on other dates and hours.
  EXPECT_EQ(Slots("30 2 * * *", "America/New_York", "2026-03-07 00:00Z", 3),
            "03-07 07:30 03-08 07:00 03-09 06:30")
      << "02:30 EST; on the day, at the jump (03:00 EDT); then 02:30 EDT";
  EXPECT_EQ(Slots("30 2 * * *", "America/New_York", "2026-03-08 05:00Z", 2),
            "03-08 07:00 03-09 06:30");
  EXPECT_EQ(Slots("30 1 * * *", "America/New_York", "2026-10-31 12:00Z", 2),
            "11-01 05:30 11-02 06:30");
  EXPECT_EQ(Slots("0 * * * *", "America/New_York", "2026-11-01 04:30Z", 3),
            "11-01 05:00 11-01 06:00 11-01 07:00")
      << "01:00 EDT, 01:00 EST, 02:00 EST";
}

TEST_F(ScheduleTest, ScheduleValidatesStoresAndKeepsItsPlaceWhenSetAgain) {
  const std::string next = Value(
      "SELECT jobs.schedule('nightly', '0 3 * * *', 'reports.refresh', '{\"kind\": \"nightly\"}', "
      "'Europe/Berlin', 'run_once')");
  EXPECT_EQ(
      Value("SELECT jobs.cron_next('0 3 * * *', 'Europe/Berlin', now()) = $1::timestamptz", {next}),
      "t");
  Conn().Execute("age", "UPDATE jobs.schedules SET last_slot = last_slot - interval '1 hour'");
  const std::string last = Value("SELECT last_slot FROM jobs.schedules");
  Value(
      "SELECT jobs.schedule('nightly', '0 3 * * *', 'reports.refresh', '{\"kind\": "
      "\"nightly\"}', 'Europe/Berlin', 'run_once')");
  EXPECT_EQ(Value("SELECT last_slot FROM jobs.schedules"), last) << "set again as it was";
  Value("SELECT jobs.schedule('nightly', '0 4 * * *', 'reports.refresh')");
  EXPECT_NE(Value("SELECT last_slot FROM jobs.schedules"), last) << "a new cron starts now";
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"SELECT jobs.schedule('', '* * * * *', 't')", "i_name"},
      {"SELECT jobs.schedule('n', '* * *', 't')", "must have 5 fields"},
      {"SELECT jobs.schedule('n', '0 0 31 2 *', 't')", "never matches"},
      {"SELECT jobs.schedule('n', '* * * * *', ' ')", "task must be a non-blank string"},
      {"SELECT jobs.schedule('n', '* * * * *', 't', NULL, 'Nowhere/City')", "time zone"},
      {"SELECT jobs.schedule('n', '* * * * *', 't', NULL, 'UTC', 'twice')", "i_missed"},
  };
  for (const auto& [sql, message] : bad) {
    db::DbError e = Refusal(sql);
    EXPECT_EQ(e.SqlState(), "22023") << sql;
    EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << sql << ": " << e.what();
  }
  EXPECT_EQ(Value("SELECT jobs.unschedule('nightly')"), "t");
  EXPECT_EQ(Value("SELECT jobs.unschedule('nightly')"), "f");
}

TEST_F(ScheduleTest, EachDueSlotIsPublishedOnceAndMissedSlotsFollowThePolicy) {
  DueSince("on_time", "* * * * *", "skip", 0);
  DueSince("once", "* * * * *", "run_once", 10);  // 11 slots due: one job
  DueSince("all", "* * * * *", "run_all", 10);    // 11 slots due: one job each
  DueSince("skipped", "0 0 1 1 *", "skip", 10);   // one slot, 10 minutes late: none
  // Two callers at once (two maintenance rounds, pg_cron): each slot once.
  std::vector<long long> published(2, 0);
  std::vector<std::thread> callers;
  for (int i = 0; i < 2; ++i) {
    callers.emplace_back([this, &published, i] {
      db::Connection conn = Connect();
      published[static_cast<size_t>(i)] =
          conn.Query("enqueue", "SELECT jobs.enqueue_schedules()").Int(0, 0);
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(published[0] + published[1], 1 + 1 + 11);
  EXPECT_EQ(Value("SELECT string_agg(s || '=' || n, ',' ORDER BY s) FROM (SELECT "
                  "split_part(unique_key, '@', 1) AS s, count(*) AS n FROM jobs.job_queue "
                  "GROUP BY 1) x"),
            "all=11,on_time=1,once=1");
  // run_once publishes the latest missed slot; each job's key names its slot.
  EXPECT_EQ(Value("SELECT unique_key = 'once@' || to_char(date_trunc('minute', now()) AT TIME "
                  "ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM jobs.job_queue "
                  "WHERE unique_key LIKE 'once@%'"),
            "t");
  EXPECT_EQ(Int("SELECT jobs.enqueue_schedules()"), 0) << "nothing is due twice";
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.schedules WHERE next_slot <= now()"), 0);
  EXPECT_EQ(Value("SELECT last_enqueued_seconds IS NULL AND next_run_seconds > "
                  "date_part('epoch', now() + interval '1 day') FROM jobs.stats_schedules "
                  "WHERE name = 'skipped'"),
            "t")
      << "the skipped slot queued nothing, and its next is next year";
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.maintain() WHERE step = 'schedules'"), 1);
}

}  // namespace
}  // namespace pgjobs::testing
