// SPDX-License-Identifier: Apache-2.0
// The worker's pure logic, without a database or threads: time is passed in.
#include <gtest/gtest.h>

#include "pgjobs/worker/config.h"
#include "worker/src/backoff.h"
#include "worker/src/outcome.h"
#include "worker/src/run_policy.h"
#include "worker/src/safe_text.h"
#include "worker/src/shutdown.h"

namespace pgjobs::worker {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;
const Clock::time_point t0{};

// ---- SafeTail -------------------------------------------------------------------------------

TEST(SafeTail, KeepsValidTextAsItIs) {
  EXPECT_EQ(SafeTail("plain", 100), "plain");
  EXPECT_EQ(SafeTail("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", 100),
            "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80");
}

TEST(SafeTail, ReplacesInvalidBytesAndDropsNuls) {
  EXPECT_EQ(SafeTail("bad \xFF byte", 100), "bad \xEF\xBF\xBD byte");
  EXPECT_EQ(SafeTail(std::string("a\0b", 3), 100), "ab");
  EXPECT_EQ(SafeTail("caf\xE9", 100), "caf\xEF\xBF\xBD") << "Latin-1";
  EXPECT_EQ(SafeTail("\xE2\x82", 100), "\xEF\xBF\xBD\xEF\xBF\xBD") << "a cut character";
  EXPECT_EQ(SafeTail("\xC0\xAF", 100), "\xEF\xBF\xBD\xEF\xBF\xBD") << "an overlong form";
  EXPECT_EQ(SafeTail("\xED\xA0\x80", 100), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD") << "a surrogate";
  EXPECT_EQ(SafeTail("\xF4\x90\x80\x80", 100), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD")
      << "above U+10FFFF";
}

TEST(SafeTail, KeepsTheEndOnACharacterBoundary) {
  EXPECT_EQ(SafeTail("0123456789", 7), "...6789");
  std::string euros;
  for (int i = 0; i < 10; ++i) euros += "\xE2\x82\xAC";
  const std::string tail = SafeTail(euros, 3 + 7);  // "..." + 7 bytes: two whole euros fit
  EXPECT_EQ(tail, "...\xE2\x82\xAC\xE2\x82\xAC");
  EXPECT_LE(SafeTail(std::string(10000, 'x'), 4096).size(), 4096u);
  EXPECT_EQ(SafeTail("abcdef", 2), "..");
}

// ---- FinalOutcome ---------------------------------------------------------------------------

const Clock::time_point kNever = Clock::time_point::max();

TEST(FinalOutcome, ASuccessInTimeIsASuccess) {
  const Outcome o =
      FinalOutcome(Outcome::Success(), false, t0 + milliseconds(5), t0 + milliseconds(10), kNever);
  EXPECT_EQ(o.kind, Outcome::Kind::kSuccess);
}

TEST(FinalOutcome, ASuccessAfterTheDeadlineIsATimeoutUnlessItCommitted) {
  Outcome late =
      FinalOutcome(Outcome::Success(), false, t0 + milliseconds(11), t0 + milliseconds(10), kNever);
  EXPECT_EQ(late.kind, Outcome::Kind::kTimeout);
  EXPECT_EQ(late.error, "timeout: the handler returned after the job's timeout");
  Outcome committed = FinalOutcome(Outcome::Failure("x"), true, t0 + milliseconds(11),
                                   t0 + milliseconds(10), kNever);
  EXPECT_EQ(committed.kind, Outcome::Kind::kSuccess);
}

TEST(FinalOutcome, ATimeoutTheShutdownCausedIsAFailureThatSaysSo) {
  const Outcome cut = FinalOutcome(Outcome::Timeout("killed"), false, t0 + milliseconds(5),
                                   t0 + milliseconds(60000), t0 + milliseconds(5));
  EXPECT_EQ(cut.kind, Outcome::Kind::kFailure);
  EXPECT_EQ(cut.error, "worker shut down: the job did not finish within the shutdown grace period");
  // The job's own deadline came first: a real timeout, shutdown or not.
  const Outcome own = FinalOutcome(Outcome::Timeout("killed"), false, t0 + milliseconds(5),
                                   t0 + milliseconds(4), t0 + milliseconds(5));
  EXPECT_EQ(own.kind, Outcome::Kind::kTimeout);
  // A failure before the grace ended stays what it was.
  const Outcome failed = FinalOutcome(Outcome::Failure("boom"), false, t0 + milliseconds(5),
                                      t0 + milliseconds(60000), t0 + milliseconds(9));
  EXPECT_EQ(failed.error, "boom");
}

TEST(FinalOutcome, MakesEveryErrorSafeBoundedText) {
  const Outcome o = FinalOutcome(Outcome::Failure("x\xFF" + std::string(10000, 'y')), false, t0,
                                 t0 + milliseconds(1), kNever);
  EXPECT_EQ(o.error.size(), kMaxTracebackBytes);
  EXPECT_TRUE(o.error.starts_with("...y"));
  EXPECT_EQ(FinalOutcome(Outcome::Timeout("t\xFF"), false, t0, t0 + milliseconds(1), kNever).error,
            "t\xEF\xBF\xBD");
}

// ---- Shutdown -------------------------------------------------------------------------------

TEST(Shutdown, HasNoDeadlineUntilItBeginsThenCapsEveryJob) {
  Shutdown s;
  EXPECT_FALSE(s.Stopping());
  EXPECT_EQ(s.Deadline(), Clock::time_point::max());
  EXPECT_EQ(s.For(t0 + milliseconds(7)), t0 + milliseconds(7));
  EXPECT_TRUE(s.Begin(milliseconds(100), t0));
  EXPECT_FALSE(s.Begin(milliseconds(5), t0)) << "the first Begin counts";
  EXPECT_TRUE(s.Stopping());
  EXPECT_EQ(s.Deadline(), t0 + milliseconds(100));
  EXPECT_EQ(s.For(t0 + milliseconds(7)), t0 + milliseconds(7));
  EXPECT_EQ(s.For(t0 + milliseconds(700)), t0 + milliseconds(100));
  EXPECT_FALSE(s.Pause(milliseconds(1000))) << "returns at once once stopping";
}

// ---- Backoff --------------------------------------------------------------------------------

TEST(Backoff, DoublesUpToItsCapAndStartsOverAfterASuccess) {
  Backoff b(milliseconds(100), milliseconds(500));
  EXPECT_EQ(b.Next(), milliseconds(100));
  EXPECT_EQ(b.Next(), milliseconds(200));
  EXPECT_EQ(b.Next(), milliseconds(400));
  EXPECT_EQ(b.Next(), milliseconds(500));
  EXPECT_EQ(b.Next(), milliseconds(500));
  b.Reset();
  EXPECT_EQ(b.Next(), milliseconds(100));
}

// ---- RunPolicy ------------------------------------------------------------------------------

TEST(RunPolicy, ConsumesIntoFreeSlotsAndWithPrefetchInLargeBatches) {
  RunPolicy plain(4, 0, 0, {"t"});
  EXPECT_TRUE(plain.MayConsume());
  EXPECT_EQ(plain.Want(), 4);
  plain.Queued(3, 3.0, 3, t0);
  EXPECT_EQ(plain.Want(), 1);
  EXPECT_TRUE(plain.MayConsume()) << "one free slot is enough without prefetch";
  plain.Queued(1, 1.0, 4, t0);
  EXPECT_FALSE(plain.MayConsume());

  RunPolicy ahead(4, 96, 0, {"t"});
  EXPECT_EQ(ahead.Want(), 100);
  ahead.Queued(100, 100.0, 100, t0);
  ahead.Finished("t", 49, 0.001);
  EXPECT_FALSE(ahead.MayConsume()) << "waits for half the capacity";
  ahead.Finished("t", 1, 0.001);
  EXPECT_TRUE(ahead.MayConsume());
  EXPECT_EQ(ahead.Want(), 50);

  RunPolicy capped(8, 0, 3, {"t"});
  EXPECT_EQ(capped.Want(), 3) << "batch_size caps one consume";
}

TEST(RunPolicy, WakesAllExecutorsForATaskNotSeenYetAndFewForQuickOnes) {
  RunPolicy p(8, 1000, 0, {"t"});
  for (int i = 0; i < 8; ++i) p.ExecutorWaits();
  EXPECT_EQ(p.ExpectedSeconds("t"), RunPolicy::kUnknownSeconds);
  EXPECT_EQ(p.Queued(100, 100 * p.ExpectedSeconds("t"), 100, t0), 8) << "unknown: slow";
  p.Took(100 * RunPolicy::kUnknownSeconds, 0, t0);
  p.Finished("t", 100, 0.00001);  // 10 µs a job
  EXPECT_NEAR(p.ExpectedSeconds("t"), 0.00001 + RunPolicy::kPerJobSeconds, 1e-12);
  // 100 jobs of 12 µs: 1.2 ms of work, two slices of 1 ms.
  EXPECT_EQ(p.Queued(100, 100 * p.ExpectedSeconds("t"), 100, t0), 2);
  p.Took(100 * p.ExpectedSeconds("t"), 0, t0);
  EXPECT_EQ(p.Queued(1, p.ExpectedSeconds("t"), 1, t0), 1) << "never fewer than one";
}

TEST(RunPolicy, LearnsHandlerTimesAsAMovingAverage) {
  RunPolicy p(1, 0, 0, {"t"});
  p.Queued(1, 1, 1, t0);
  p.Finished("t", 1, 1.0);
  EXPECT_NEAR(p.ExpectedSeconds("t"), 1.0 + RunPolicy::kPerJobSeconds, 1e-9);
  p.Queued(1, 1, 1, t0);
  p.Finished("t", 1, 0.0);
  EXPECT_NEAR(p.ExpectedSeconds("t"), 0.8 + RunPolicy::kPerJobSeconds, 1e-9);
}

TEST(RunPolicy, TheWatchdogWakesOneMoreWhenQueuedJobsSeeNoTakerForTheStallTime) {
  RunPolicy p(4, 100, 0, {"t"});
  EXPECT_FALSE(p.Watching(5)) << "no idle executor: nothing to watch";
  p.ExecutorWaits();
  EXPECT_FALSE(p.Watching(0)) << "nothing queued";
  p.Queued(5, 0.005, 5, t0);
  EXPECT_TRUE(p.Watching(5));
  EXPECT_FALSE(p.Stalled(5, t0 + milliseconds(1)));
  EXPECT_EQ(p.NextLook(), t0 + RunPolicy::kStall);
  EXPECT_TRUE(p.Stalled(5, t0 + milliseconds(2)));
  EXPECT_FALSE(p.Stalled(5, t0 + milliseconds(3))) << "counted again from the wake";
  p.Took(0.001, 4, t0 + milliseconds(4));
  EXPECT_FALSE(p.Stalled(4, t0 + milliseconds(5))) << "a take is progress";
  EXPECT_TRUE(p.Stalled(4, t0 + milliseconds(6)));
}

TEST(RunPolicy, LearnsPrefetchFromHandlerAndConsumeTimes) {
  RunPolicy p(8, RunPolicy::kAdaptive, 0, {"t"});
  EXPECT_EQ(p.Prefetch(), 0) << "nothing learned: a single job takes the path it always took";
  EXPECT_EQ(p.Want(), 8);
  p.Consumed(0.001, 60.0);
  p.Queued(8, 8.0, 8, t0);
  p.Finished("t", 8, 0.00001);  // quick jobs: 10 µs
  // 8 executors keep 2 consume calls of work (2 ms, at least kMinBufferSeconds) queued:
  // 8 x 0.002 / 0.00001 = 1,600, capped.
  EXPECT_EQ(p.Prefetch(), RunPolicy::kMaxPrefetch);
  EXPECT_EQ(p.Want(), 8 + RunPolicy::kMaxPrefetch);

  // Many executors of quick jobs: the cap grows with them (100 each), or 1,000 jobs would last
  // 32 executors less than a consume call.
  RunPolicy wide(32, RunPolicy::kAdaptive, 0, {"t"});
  wide.Consumed(0.001, 60.0);
  wide.Queued(32, 32.0, 32, t0);
  wide.Finished("t", 32, 0.00001);
  EXPECT_EQ(wide.Prefetch(), 3200);

  RunPolicy slow(8, RunPolicy::kAdaptive, 0, {"t"});
  slow.Consumed(0.001, 60.0);
  slow.Queued(1, 1.0, 1, t0);
  slow.Finished("t", 1, 0.5);  // half a second a job: nothing to gain from taking ahead
  EXPECT_EQ(slow.Prefetch(), 0);
}

TEST(RunPolicy, NeverPrefetchesLongerThanAShareOfTheShortestTimeout) {
  RunPolicy p(4, RunPolicy::kAdaptive, 0, {"t"});
  p.Consumed(0.5, 2.0);  // a slow consume: the buffer would be 1 s, but a job may wait 0.2 s
  p.Queued(1, 1.0, 1, t0);
  p.Finished("t", 1, 0.01);
  EXPECT_EQ(p.Prefetch(), 80) << "4 executors x 0.2 s / 10 ms";
  RunPolicy pinned(4, 25, 0, {"t"});
  pinned.Consumed(0.5, 2.0);
  EXPECT_EQ(pinned.Prefetch(), 25) << "a pinned prefetch stays";
}

TEST(RunPolicy, BatchesSqlJobsByTheirExpectedTime) {
  RunPolicy p(8, 0, 0, {"cmd", "sql", "pinned"}, {{"sql", RunPolicy::kAdaptive}, {"pinned", 32}});
  EXPECT_EQ(p.Batch("cmd"), 1) << "only sql tasks run in batches";
  EXPECT_EQ(p.Batch("pinned"), 32);
  EXPECT_EQ(p.Batch("sql"), 1) << "nothing learned yet";
  p.Queued(1, 1.0, 1, t0);
  p.Finished("sql", 1, 0.002);  // 2 ms a statement: 10 fit in 20 ms
  EXPECT_EQ(p.Batch("sql"), 10);
  for (int i = 0; i < 50; ++i) {
    p.Queued(1, 1.0, 1, t0);
    p.Finished("sql", 1, 0.0001);
  }
  EXPECT_EQ(p.Batch("sql"), RunPolicy::kMaxBatch);
  for (int i = 0; i < 50; ++i) {
    p.Queued(1, 1.0, 1, t0);
    p.Finished("sql", 1, 0.5);
  }
  EXPECT_EQ(p.Batch("sql"), 1) << "slow statements do not wait for each other";
}

// ---- The worker's configuration ---------------------------------------------------------------

std::string ConfigError(const std::string& yaml) {
  try {
    ParseWorkerConfig(yaml, "w.yaml", nullptr);
  } catch (const config::ConfigError& e) {
    return e.what();
  }
  return "accepted";
}

TEST(ParseWorkerConfig, DefaultsLiveInOnePlace) {
  const WorkerConfig c = ParseWorkerConfig("tasks: {t: {sql: 'SELECT 1'}}", "w.yaml", nullptr);
  const WorkerConfig defaults;
  EXPECT_EQ(c.concurrency, defaults.concurrency);
  EXPECT_EQ(c.shutdown_grace, defaults.shutdown_grace);
  EXPECT_EQ(c.call_timeout, std::chrono::seconds(30));
  EXPECT_EQ(c.prefetch, -1) << "auto";
  EXPECT_EQ(c.tasks.at("t").sql_batch, 0) << "auto";
  const WorkerConfig pinned = ParseWorkerConfig(
      "worker: {prefetch: 0}\ntasks: {t: {sql: 'SELECT 1', batch: 1}}", "w.yaml", nullptr);
  EXPECT_EQ(pinned.prefetch, 0);
  EXPECT_EQ(pinned.tasks.at("t").sql_batch, 1);
  EXPECT_TRUE(c.maintenance.enabled);
  EXPECT_EQ(c.maintenance.interval, std::chrono::seconds(60));
  EXPECT_EQ(c.maintenance.worker_retention, std::chrono::hours(1));
  const WorkerConfig off = ParseWorkerConfig(
      "maintenance: {enabled: false, interval: 5m, takeover: 2s, worker_retention: 1d, "
      "prune_batch: 500}\ntasks: {t: {sql: 'SELECT 1'}}",
      "w.yaml", nullptr);
  EXPECT_FALSE(off.maintenance.enabled);
  EXPECT_EQ(off.maintenance.interval, std::chrono::minutes(5));
  EXPECT_EQ(off.maintenance.takeover, std::chrono::seconds(2));
  EXPECT_EQ(off.maintenance.worker_retention, std::chrono::hours(24));
  EXPECT_EQ(off.maintenance.prune_batch, 500);
  EXPECT_DOUBLE_EQ(c.maintenance.prune_share, 0.2);
}

TEST(ParseWorkerConfig, RefusesBadValuesWithWhereAndWhat) {
  EXPECT_EQ(ConfigError("worker: {concurrency: 0}"),
            "w.yaml:1:23: worker.concurrency: expected an integer from 1 to 10000, got 0");
  EXPECT_EQ(ConfigError("worker: {shutdown_grace: 99999999999999999999h}"),
            "w.yaml:1:26: worker.shutdown_grace: expected a duration such as 500ms, 30s or 5m, "
            "up to 365d, got '99999999999999999999h'");
  EXPECT_EQ(
      ConfigError("worker: {prefetch: lots}"),
      "w.yaml:1:20: worker.prefetch: expected auto or an integer from 0 to 100000, got 'lots'");
  EXPECT_EQ(ConfigError("database: {call_timeout: 0s}"),
            "w.yaml:1:26: database.call_timeout: expected a positive duration");
  EXPECT_EQ(ConfigError("tasks: {t: {sql: 'SELECT 1', env: {A: b}}}"),
            "w.yaml:1:35: tasks.t.env: only command tasks have an environment");
  EXPECT_EQ(ConfigError("tasks: {t: {command: [x], pass_env: ['A=B']}}"),
            "w.yaml:1:37: tasks.t.pass_env: expected variable names, got 'A=B'");
  EXPECT_EQ(ConfigError("tasks: {t: {command: [x], sql: 'SELECT 1'}}"),
            "w.yaml:1:12: tasks.t: give only one of command, sql or http");
  EXPECT_EQ(ConfigError("maintenance: {interval: 0s}"),
            "w.yaml:1:25: maintenance.interval: expected a positive duration");
  EXPECT_EQ(ConfigError("maintenance: {prune_batch: 0}"),
            "w.yaml:1:28: maintenance.prune_batch: expected an integer from 1 to 1000000, got 0");
  EXPECT_EQ(ConfigError("maintenance: {prune_share: 0}"),
            "w.yaml:1:28: maintenance.prune_share: expected a number above 0 and at most 1");
  EXPECT_EQ(ConfigError("maintenance: {every: 1m}"), "w.yaml:1:15: maintenance.every: unknown key");
  EXPECT_EQ(ConfigError("metrics: {listen: '999.1.1.1:1'}"),
            "w.yaml:1:19: metrics.listen: listen address '999.1.1.1:1': expected an IP address "
            "such as 127.0.0.1 or [::1], or localhost, got '999.1.1.1'");
}

TEST(ParseWorkerConfig, ReadsSchedulesWithTheirArgumentsAsJsonAndTheirPlace) {
  config::EnvLookup env = [](const std::string& name) -> std::optional<std::string> {
    if (name == "KIND") return "night\"ly";
    return std::nullopt;
  };
  const WorkerConfig c = ParseWorkerConfig(
      "tasks: {t: {sql: 'SELECT 1'}}\n"
      "schedules:\n"
      "  nightly:\n"
      "    cron: '0 3 * * *'\n"
      "    timezone: Europe/Berlin\n"
      "    task: t\n"
      "    arguments: {kind: '${KIND}', n: 2, ratio: 0.5, on: true, none: null, code: '007',\n"
      "                list: [1, two]}\n"
      "    missed: run_all\n"
      "  plain: {cron: '@hourly', task: t}\n",
      "w.yaml", env);
  ASSERT_EQ(c.schedules.size(), 2u);
  const WorkerConfig::Schedule& n = c.schedules[0];
  EXPECT_EQ(n.name, "nightly");
  EXPECT_EQ(n.cron, "0 3 * * *");
  EXPECT_EQ(n.timezone, "Europe/Berlin");
  EXPECT_EQ(n.task, "t");
  EXPECT_EQ(n.missed, "run_all");
  EXPECT_EQ(n.arguments_json,
            "{\"kind\": \"night\\\"ly\", \"n\": 2, \"ratio\": 0.5, \"on\": true, "
            "\"none\": null, \"code\": \"007\", \"list\": [1, \"two\"]}");
  EXPECT_EQ(n.where, "w.yaml:4:5: schedules.nightly");
  const WorkerConfig::Schedule& p = c.schedules[1];
  EXPECT_EQ(p.timezone, "UTC");
  EXPECT_EQ(p.missed, "run_once");
  EXPECT_EQ(p.arguments_json, "");
  EXPECT_EQ(ConfigError("tasks: {t: {sql: 'SELECT 1'}}\nschedules: {s: {task: t}}"),
            "w.yaml:2:16: schedules.s: missing cron: give a cron expression such as \"0 3 * * *\"");
  EXPECT_EQ(ConfigError("tasks: {t: {sql: 'SELECT 1'}}\nschedules: {s: {cron: '@daily'}}"),
            "w.yaml:2:16: schedules.s: missing task: the task of the jobs it publishes");
  EXPECT_EQ(ConfigError("tasks: {t: {sql: 'SELECT 1'}}\n"
                        "schedules: {s: {cron: '@daily', task: t, missed: twice}}"),
            "w.yaml:2:50: schedules.s.missed: expected skip, run_once or run_all, got 'twice'");
  EXPECT_EQ(ConfigError("tasks: {t: {sql: 'SELECT 1'}}\n"
                        "schedules: {s: {cron: '@daily', task: t, when: now}}"),
            "w.yaml:2:42: schedules.s.when: unknown key");
}

TEST(ParseWorkerConfig, GivesCommandsTheAllowListPassEnvAndEnv) {
  config::EnvLookup env = [](const std::string& name) -> std::optional<std::string> {
    if (name == "PATH") return "/bin";
    if (name == "PGJOBS_DSN") return "postgresql://u:secret@db/x";
    if (name == "REGION") return "eu";
    return std::nullopt;
  };
  const WorkerConfig c = ParseWorkerConfig(
      "tasks: {t: {command: [x], pass_env: [REGION, UNSET], env: {MODE: on, PATH: /opt}}}",
      "w.yaml", env);
  EXPECT_EQ(c.tasks.at("t").environment,
            (std::vector<std::string>{"MODE=on", "PATH=/opt", "REGION=eu"}));
}

}  // namespace
}  // namespace pgjobs::worker
