// SPDX-License-Identifier: Apache-2.0
// Recurring jobs on real workers and the real clock: a schedule of every minute, set from two
// workers' YAML, is published once a minute whatever the number of workers, and once after the
// workers were down across two of its slots (missed: run_once). About five minutes.
#include <fstream>

#include "tests/e2e/worker_fixture.h"

namespace pgjobs::testing {
namespace {

using ScheduleWorkerTest = WorkerTest;

const char* const kScheduleYaml = R"yaml(
worker: {concurrency: 2}
maintenance: {interval: 30s, takeover: 500ms}
schedules:
  tick: {cron: "* * * * *", task: tick, arguments: {"n": 1, "name": "tick"}, missed: run_once}
tasks:
  tick: {command: ["/bin/sh", "-c", "cat > /dev/null"]}
)yaml";

TEST_F(ScheduleWorkerTest, EachMinuteOnceWithTwoWorkersAndOnceAfterMissingTwoSlots) {
  Start(kScheduleYaml);
  std::ofstream(dir_ + "/second.yaml") << "database: {dsn: \"${TEST_DSN}\"}\n" << kScheduleYaml;
  auto second = std::make_unique<BackgroundProcess>(
      std::vector<std::string>{kBin, "--config.file=" + dir_ + "/second.yaml",
                               "--web.listen-address=127.0.0.1:0"},
      std::vector<std::string>{"TEST_DSN=" + dsn_});
  ASSERT_TRUE(second->WaitForOutput("msg=registered")) << second->Output();
  EXPECT_EQ(Text("SELECT cron || ' ' || task || ' ' || missed || ' ' || arguments::text "
                 "FROM jobs.schedules WHERE name = 'tick'"),
            "* * * * * tick run_once {\"n\": 1, \"name\": \"tick\"}");

  // Three slots, each published once, within seconds of its minute, and run.
  WaitFor("SELECT count(*) FROM jobs.job WHERE task = 'tick' AND status = 'success'", 3, 200);
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job_overview WHERE task = 'tick'"), 3)
      << "one job per slot, none twice";
  EXPECT_EQ(Text("SELECT string_agg(DISTINCT (extract(epoch FROM published_at) "
                 "- extract(epoch FROM date_trunc('minute', published_at)) < 5)::text, ',') "
                 "FROM jobs.job WHERE task = 'tick'"),
            "true")
      << "published within 5 s of each minute";
  EXPECT_EQ(Int("SELECT count(DISTINCT date_trunc('minute', published_at)) FROM jobs.job "
                "WHERE task = 'tick'"),
            3);

  // Down across two slots: both workers stop; one comes back after two minutes have turned.
  worker_->Signal(SIGKILL);
  second->Signal(SIGKILL);
  worker_->Wait();
  second->Wait();
  const long long before = Int("SELECT count(*) FROM jobs.job_overview WHERE task = 'tick'");
  const std::string down_at = Text("SELECT clock_timestamp()::text");
  // Wait for the second minute boundary after down_at, plus a little.
  const double wait =
      std::stod(Text("SELECT extract(epoch FROM date_trunc('minute', '" + down_at +
                     "'::timestamptz) + interval '2 minutes 2 seconds' - clock_timestamp())"));
  std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int>(wait * 1000)));
  Start(kScheduleYaml);
  // One job for both missed slots, for the latest, then none until the next minute.
  WaitFor("SELECT count(*) FROM jobs.job_overview WHERE task = 'tick'", before + 1, 20);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job_overview WHERE task = 'tick'"), before + 1);
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job_overview WHERE task = 'tick' AND published_at > "
                "'" +
                down_at + "'::timestamptz"),
            1);
  auto m = Metrics();
  EXPECT_GE(m["pgjobs_worker_maintenance_runs_total{result=\"ok\",step=\"schedules\"}"], 1);
}

TEST_F(ScheduleWorkerTest, AScheduleTheDatabaseRefusesStopsTheWorkerNamingItsPlace) {
  std::ofstream(dir_ + "/bad.yaml") << "database: {dsn: \"${TEST_DSN}\"}\n"
                                    << R"yaml(schedules:
  nightly: {cron: "0 25 * * *", task: reports}
tasks:
  reports: {command: ["/bin/true"]}
)yaml";
  BackgroundProcess bad(
      {kBin, "--config.file=" + dir_ + "/bad.yaml", "--web.listen-address=127.0.0.1:0"},
      {"TEST_DSN=" + dsn_});
  EXPECT_EQ(bad.Wait(), 1) << bad.Output();
  EXPECT_NE(bad.Output().find("bad.yaml:3:12: schedules.nightly: jobs.schedule: hour field: 25 is "
                              "out of range 0-23"),
            std::string::npos)
      << bad.Output();
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.schedules"), 0);
}

}  // namespace
}  // namespace pgjobs::testing
