// SPDX-License-Identifier: Apache-2.0
// The jobs-ctl binary, run as an operator would: every command, its output for people and
// scripts, each role's reach, and every bad argument.
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>

#include "pgjobs/db/connection.h"
#include "tests/harness/pg_cluster.h"
#include "tests/harness/process.h"

namespace pgjobs::testing {
namespace {

const std::string kBin = PGJOBS_CTL_BIN;

class CtlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dsn_ = PgCluster::Shared().FreshDatabase();
    conn_.emplace(db::ConnectOptions{.dsn = dsn_});
    conn_->Execute("users", R"sql(
      DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ctl_operator') THEN
          CREATE ROLE ctl_operator LOGIN IN ROLE jobs_operator;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ctl_monitor') THEN
          CREATE ROLE ctl_monitor LOGIN IN ROLE jobs_monitor;
        END IF;
      END $$)sql");
  }
  // Runs jobs-ctl as the operator (PGJOBS_DSN), or as `user`.
  ProcessResult Ctl(const std::vector<std::string>& args,
                    const std::string& user = "ctl_operator") {
    std::vector<std::string> argv = {kBin};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProcess(argv, {"PGJOBS_DSN=" + dsn_ + " user=" + user});
  }
  long long Int(const std::string& sql) { return conn_->Query("int", sql).Int(0, 0); }
  std::string Text(const std::string& sql) {
    return std::string(conn_->Query("text", sql).Text(0, 0));
  }
  // A job of `task` that failed for good, with `error` as its traceback. Its priority, above
  // any other job's, has it consumed first.
  long long FailedJob(const std::string& task, const std::string& error) {
    const long long id = Int("SELECT jobs.publish('" + task +
                             "', '{\"to\": \"a@example.org\"}', i_max_retries => 0, "
                             "i_priority => " +
                             std::to_string(++top_priority_) + ")");
    conn_->Query("consume", "SELECT * FROM jobs.consume(1, ARRAY['" + task + "'])");
    conn_->Query("nack", "SELECT jobs.nack($1::bigint, $2::text)", {std::to_string(id), error});
    return id;
  }

  std::string dsn_;
  std::optional<db::Connection> conn_;
  int top_priority_ = 1000;
};

TEST_F(CtlTest, StatsListAndShowForPeopleAndScripts) {
  const long long failed = FailedJob("email", "smtp: connection refused\nretry later");
  conn_->Execute("jobs",
                 "SELECT jobs.publish('email'); SELECT jobs.publish('email'); "
                 "SELECT jobs.pause('reports')");
  ProcessResult stats = Ctl({"stats"});
  ASSERT_EQ(stats.exit_code, 0) << stats.err;
  EXPECT_EQ(stats.out,
            "task     ready  scheduled  retry_wait  running  expired  paused\n"
            "email    2      0          0           0        0        no\n"
            "reports  0      0          0           0        0        yes\n");
  ProcessResult json = Ctl({"--output", "json", "stats"});
  EXPECT_EQ(json.out,
            "[\n  {\"task\": \"email\", \"ready\": 2, \"scheduled\": 0, \"retry_wait\": 0, "
            "\"running\": 0, \"expired\": 0, \"paused\": false},\n  {\"task\": \"reports\", "
            "\"ready\": 0, \"scheduled\": 0, \"retry_wait\": 0, \"running\": 0, \"expired\": 0, "
            "\"paused\": true}\n]\n");

  ProcessResult list = Ctl({"list", "--status", "failure"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_NE(list.out.find(std::to_string(failed) + "       email  failure  finished"),
            std::string::npos)
      << list.out;
  EXPECT_NE(list.out.find("smtp: connection refused retry later"), std::string::npos) << list.out;
  const std::string ready =
      Ctl({"list", "--task", "email", "--state", "ready", "--limit", "1"}).out;
  EXPECT_EQ(std::count(ready.begin(), ready.end(), '\n'), 2) << ready;  // the header and one job
  EXPECT_NE(ready.find("ready"), std::string::npos) << ready;

  ProcessResult show = Ctl({"show", std::to_string(failed)});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_NE(show.out.find("status: failure\n"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("arguments: {\"to\": \"a@example.org\"}\n"), std::string::npos)
      << show.out;
  EXPECT_NE(show.out.find("  attempt 1 at "), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("    smtp: connection refused\n    retry later\n"), std::string::npos)
      << show.out;
  // The monitor sees the job, not its arguments, and may not act.
  ProcessResult seen = Ctl({"show", std::to_string(failed)}, "ctl_monitor");
  EXPECT_EQ(seen.exit_code, 0) << seen.err;
  EXPECT_NE(seen.out.find("arguments: (hidden from this role)\n"), std::string::npos) << seen.out;
  ProcessResult refused = Ctl({"retry", std::to_string(failed)}, "ctl_monitor");
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("permission denied for function retry"), std::string::npos)
      << refused.err;
  EXPECT_EQ(Ctl({"show", "999999"}).exit_code, 1);
}

TEST_F(CtlTest, RetryCancelRescheduleByIdOrByTaskWithYes) {
  const long long a = FailedJob("email", "boom");
  const long long b = FailedJob("email", "boom");
  FailedJob("sms", "boom");
  ProcessResult one = Ctl({"retry", std::to_string(a), "424242"});
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_EQ(one.out, "retried 1 of 2 jobs: " + std::to_string(a) + "\n");
  EXPECT_EQ(Text("SELECT state FROM jobs.all WHERE job_id = " + std::to_string(a)), "ready");

  FailedJob("email", "boom");
  ProcessResult unsure = Ctl({"retry", "--task", "email"});
  EXPECT_EQ(unsure.exit_code, 2);
  EXPECT_NE(unsure.err.find("2 jobs match; add --yes"), std::string::npos) << unsure.err;
  ProcessResult sure = Ctl({"--output=json", "retry", "--task", "email", "--since", "1h", "--yes"});
  ASSERT_EQ(sure.exit_code, 0) << sure.err;
  EXPECT_NE(sure.out.find("\"asked\": 2}"), std::string::npos) << sure.out;
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job WHERE task = 'email'"), 0);
  (void)b;

  ProcessResult moved = Ctl({"reschedule", std::to_string(a), "--at", "2099-01-01 00:00+00"});
  ASSERT_EQ(moved.exit_code, 0) << moved.err;
  EXPECT_EQ(Text("SELECT state FROM jobs.all WHERE job_id = " + std::to_string(a)), "retry_wait");
  ProcessResult cancelled = Ctl({"cancel", "--task", "email", "--yes"});
  ASSERT_EQ(cancelled.exit_code, 0) << cancelled.err;
  EXPECT_EQ(cancelled.out.substr(0, 17), "cancelled 3 of 3 ");
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job WHERE task = 'email' AND status = 'cancelled'"), 3);
}

TEST_F(CtlTest, PauseResumePruneAndWorkers) {
  ProcessResult paused = Ctl({"pause", "email"});
  EXPECT_EQ(paused.out, "paused email\n");
  EXPECT_EQ(Ctl({"pause", "email"}).out, "email was paused already\n");
  EXPECT_EQ(Ctl({"resume", "email"}).out, "resumed email\n");
  EXPECT_EQ(Ctl({"--output", "json", "resume", "email"}).out,
            "{\"task\": \"email\", \"resumed\": false}\n");

  conn_->Execute("history", R"sql(
    INSERT INTO jobs.job (job_id, task, status, priority, attempts, max_retries, timeout,
                          published_at, scheduled_at, started_at, finished_at)
    SELECT g, 't', 'success', 0, 1, 3, 60, now() - interval '9 days', now() - interval '9 days',
           now() - interval '9 days', now() - interval '9 days'
    FROM generate_series(1000, 1002) AS g)sql");
  ProcessResult dry = Ctl({"prune", "--dry-run"});
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_NE(dry.out.find("success    7 days   3\n"), std::string::npos) << dry.out;
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job"), 3);
  EXPECT_EQ(Ctl({"prune"}).out, "pruned 3 finished jobs\n");
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job"), 0);

  conn_->Execute("worker", "SELECT jobs.register_worker('w1', 'host-a', 42, 8)");
  ProcessResult workers = Ctl({"workers"});
  ASSERT_EQ(workers.exit_code, 0) << workers.err;
  EXPECT_NE(workers.out.find("w1    host-a  42   8            alive  0"), std::string::npos)
      << workers.out;

  conn_->Execute("schedule",
                 "SELECT jobs.schedule('nightly', '0 3 * * *', 'reports', NULL, "
                 "'Europe/Berlin', 'skip')");
  ProcessResult schedules = Ctl({"--output", "json", "schedules"});
  ASSERT_EQ(schedules.exit_code, 0) << schedules.err;
  EXPECT_NE(schedules.out.find("\"name\": \"nightly\", \"cron\": \"0 3 * * *\", "
                               "\"timezone\": \"Europe/Berlin\", \"task\": \"reports\", "
                               "\"missed\": \"skip\", \"last_run\": null, \"next_run\": \""),
            std::string::npos)
      << schedules.out;
}

TEST_F(CtlTest, EveryBadArgumentIsRefusedWithItsReasonAndStatusTwo) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{}, "no command given"},
      {{"frobnicate"}, "unknown command 'frobnicate'"},
      {{"list", "--bogus"}, "unknown option '--bogus'"},
      {{"stats", "--task", "x"}, "stats: --task does not apply to this command"},
      {{"list", "--state", "sleeping"}, "--state: expected one of ready, scheduled"},
      {{"list", "--status", "done"}, "--status: expected one of pending, running"},
      {{"list", "--limit", "0"}, "--limit: expected an integer from 1 to 100000, got 0"},
      {{"list", "--limit", "ten"}, "--limit: expected a positive integer, got 'ten'"},
      {{"list", "--limit"}, "--limit needs a value"},
      {{"show"}, "show: expected one job id"},
      {{"show", "-1x"}, "show: job id: expected a positive integer, got '-1x'"},
      {{"show", "abc"}, "show: job id: expected a positive integer, got 'abc'"},
      {{"retry"}, "retry: give job ids or --task"},
      {{"retry", "1", "--task", "t"}, "retry: give job ids or --task, not both"},
      {{"retry", "--task", "t", "--status", "success"}, "--status: expected one of failure"},
      {{"retry", "--task", "t", "--since", "yesterday"}, "--since: expected a duration"},
      {{"retry", "1", "--since", "1h"}, "--status and --since select with --task"},
      {{"cancel", "x1"}, "cancel: job id: expected a positive integer, got 'x1'"},
      {{"reschedule", "1"}, "reschedule: give --at TIME"},
      {{"reschedule", "--at", "2030-01-01"}, "reschedule: give job ids"},
      {{"reschedule", "1", "--at", "someday"}, "reschedule: --at: expected a time"},
      {{"pause"}, "pause: expected one task name"},
      {{"pause", " "}, "jobs.pause: i_task must be a task name"},
      {{"prune", "--dry-run=yes"}, "--dry-run takes no value"},
      {{"--output", "xml", "stats"}, "--output: expected table or json, got 'xml'"},
      {{"workers", "extra"}, "workers: unexpected argument 'extra'"},
  };
  for (const auto& [args, reason] : cases) {
    ProcessResult r = Ctl(args);
    std::string line;
    for (const auto& a : args) line += a + " ";
    EXPECT_EQ(r.exit_code, 2) << line << "\n" << r.err;
    EXPECT_NE(r.err.find(reason), std::string::npos) << line << "\n" << r.err;
    EXPECT_EQ(r.out, "") << line;
  }
  ProcessResult no_dsn = RunProcess({kBin, "stats"}, {}, {"PGJOBS_DSN"});
  EXPECT_EQ(no_dsn.exit_code, 2);
  EXPECT_NE(no_dsn.err.find("no database given"), std::string::npos) << no_dsn.err;
  ProcessResult bad_dsn = RunProcess({kBin, "--dsn", "host=127.0.0.1 port=1 user=x", "stats"});
  EXPECT_EQ(bad_dsn.exit_code, 1);
  EXPECT_NE(bad_dsn.err.find("jobs-ctl stats: "), std::string::npos) << bad_dsn.err;
}

}  // namespace
}  // namespace pgjobs::testing
