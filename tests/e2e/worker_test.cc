// SPDX-License-Identifier: Apache-2.0
// jobs-worker, the real binary, running real jobs against a real PostgreSQL.
#include "pgjobs/worker/worker.h"

#include <crypt.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "pgjobs/build_info.h"
#include "pgjobs/db/connection.h"
#include "pgjobs/log/logger.h"
#include "tests/e2e/worker_fixture.h"
#include "tests/harness/background_process.h"
#include "tests/harness/http_client.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/pg_cluster.h"
#include "tests/harness/process.h"

namespace pgjobs::testing {
namespace {

TEST_F(WorkerTest, CommandJobsSucceedFailTimeOutAndExhaustRetriesAndMetricsMatch) {
  Start(R"yaml(
worker: {concurrency: 4, poll_interval: 200ms}
tasks:
  ok:   {command: ["/bin/sh", "-c", "cat > \"$OUT/$PGJOBS_JOB_ID-$PGJOBS_ATTEMPT.json\""], pass_env: [OUT]}
  fail: {command: ["/bin/sh", "-c", "echo boom on attempt $PGJOBS_ATTEMPT >&2; exit 3"]}
  slow: {command: ["/bin/sh", "-c", "sleep 5"]}
)yaml");
  auto zero = Metrics();
  EXPECT_EQ(zero.count("pgjobs_worker_jobs_total{outcome=\"timeout\",task=\"ok\"}"), 1u)
      << "every configured task's series exist at 0 from the start";
  EXPECT_EQ(zero["pgjobs_worker_concurrency"], 4);

  Sql("SELECT jobs.publish('ok', jsonb_build_object('n', i)) FROM generate_series(1, 3) i;"
      "SELECT jobs.publish('fail', i_max_retries => 0);"
      "SELECT jobs.publish('fail', i_max_retries => 1);"
      "SELECT jobs.publish('slow', i_timeout => 0.3, i_max_retries => 0);");
  WaitFor("SELECT count(*) FROM jobs.job", 6, 30);
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job WHERE task = 'ok' AND status = 'success'"), 3);
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job WHERE task = 'fail' AND status = 'failure'"), 2);
  EXPECT_EQ(Text("SELECT tracebacks->-1->>'error' FROM jobs.job WHERE task = 'fail' AND "
                 "attempts = 2"),
            "/bin/sh exited with status 3: boom on attempt 2\n");
  EXPECT_EQ(Text("SELECT status || ': ' || (tracebacks->0->>'error') FROM jobs.job WHERE task = "
                 "'slow'"),
            "failure: timeout: /bin/sh ran past the job's timeout and was killed");
  // The arguments arrived on stdin, the id and attempt in the environment.
  const long long first_ok = Int("SELECT min(job_id) FROM jobs.job WHERE task = 'ok'");
  std::ifstream in(dir_ + "/" + std::to_string(first_ok) + "-1.json");
  std::stringstream args;
  args << in.rdbuf();
  EXPECT_EQ(args.str(), "{\"n\": 1}");

  auto m = Metrics();
  EXPECT_EQ(m["pgjobs_worker_jobs_total{outcome=\"success\",task=\"ok\"}"], 3);
  EXPECT_EQ(m["pgjobs_worker_jobs_total{outcome=\"failure\",task=\"fail\"}"], 3);
  EXPECT_EQ(m["pgjobs_worker_jobs_total{outcome=\"timeout\",task=\"slow\"}"], 1);
  EXPECT_EQ(m["pgjobs_worker_job_retries_total{task=\"fail\"}"], 1);
  EXPECT_EQ(m["pgjobs_worker_jobs_dead_total{task=\"fail\"}"], 2);
  EXPECT_EQ(m["pgjobs_worker_jobs_dead_total{task=\"slow\"}"], 1);
  EXPECT_EQ(m["pgjobs_worker_job_timeouts_total{task=\"slow\"}"], 1);
  EXPECT_EQ(m["pgjobs_worker_job_duration_seconds_count{outcome=\"success\",task=\"ok\"}"], 3);
  EXPECT_EQ(m["pgjobs_worker_job_wait_seconds_count{task=\"ok\"}"], 3);
  EXPECT_EQ(m["pgjobs_worker_job_wait_seconds_count{task=\"fail\"}"], 3);
  EXPECT_EQ(m["pgjobs_worker_job_end_to_end_seconds_count{task=\"ok\"}"], 3);
  EXPECT_EQ(m["pgjobs_worker_job_end_to_end_seconds_count{task=\"fail\"}"], 2);
  EXPECT_GT(m["pgjobs_worker_job_end_to_end_seconds_sum{task=\"fail\"}"], 2.0)
      << "includes the 2 s retry backoff";
  EXPECT_EQ(m["pgjobs_worker_jobs_in_flight{task=\"ok\"}"], 0);
  EXPECT_EQ(m["pgjobs_worker_database_up"], 1);
  EXPECT_GT(m["pgjobs_worker_db_call_duration_seconds_count{call=\"consume\"}"], 0);
  EXPECT_GT(m["pgjobs_worker_last_job_finished_timestamp_seconds"], 1.7e9);
  EXPECT_EQ(m["pgjobs_worker_build_info{revision=\"" + std::string(BuildRevision()) +
              "\",version=\"0.1.0\"}"],
            1);
  EXPECT_GT(m["pgjobs_worker_busy_seconds_total"], 0.3);

  const std::string scrape = dir_ + "/scrape.prom";
  std::ofstream(scrape) << HttpGet(port_, "/metrics").body;
  ProcessResult lint = RunProcess({"/bin/sh", "-c", "promtool check metrics < " + scrape});
  EXPECT_EQ(lint.exit_code, 0) << lint.out << lint.err;
  EXPECT_EQ(HttpGet(port_, "/-/ready").status, 200);
}

// The worker's /metrics has the same server as the exporter's: idle and slow connections do
// not starve its scrapes either.
TEST_F(WorkerTest, IdleAndSlowConnectionsDoNotStarveScrapes) {
  Start("tasks:\n  t: {command: [\"/bin/true\"]}\n");
  HostileClients hostile(port_, 500, 100);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (int i = 0; i < 8; ++i) {
    const auto start = Clock::now();
    EXPECT_EQ(HttpGet(port_, "/metrics", {}, 5000).status, 200) << i;
    EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 1.0) << i;
  }
}

TEST_F(WorkerTest, SqlHandlerCommitsTheWorkWithTheAckExactlyOnce) {
  Sql("CREATE TABLE results (job_id bigint, n int); GRANT ALL ON results TO PUBLIC");
  Start(R"yaml(
worker: {concurrency: 4}
tasks:
  record: {sql: "INSERT INTO results SELECT (SELECT max(job_id) FROM jobs.running), ($1::jsonb->>'n')::int"}
  broken: {sql: "INSERT INTO no_such_table VALUES ($1::jsonb)"}
)yaml");
  Sql("SELECT jobs.publish('record', jsonb_build_object('n', i)) FROM generate_series(1, 40) i;"
      "SELECT jobs.publish('broken', '{}', i_max_retries => 0)");
  WaitFor("SELECT count(*) FROM jobs.job", 41);
  EXPECT_EQ(Int("SELECT count(*) FROM results"), 40);
  EXPECT_EQ(Int("SELECT count(DISTINCT n) FROM results"), 40);
  EXPECT_EQ(Text("SELECT status || ': ' || (tracebacks->0->>'error') FROM jobs.job WHERE task = "
                 "'broken'"),
            "failure: relation \"no_such_table\" does not exist [SQLSTATE 42P01]");
  auto m = Metrics();
  EXPECT_EQ(m["pgjobs_worker_jobs_total{outcome=\"success\",task=\"record\"}"], 40);
  EXPECT_EQ(m["pgjobs_worker_jobs_total{outcome=\"failure\",task=\"broken\"}"], 1);
}

// A program that cannot start is a clear failure; one that starts gets no blocked signals from
// the worker (which blocks SIGTERM and SIGINT in its own threads).
TEST_F(WorkerTest, CommandsStartCleanOrFailClearly) {
  Start(R"yaml(
tasks:
  missing: {command: ["/no/such/program", "--flag"]}
  mask: {command: ["/bin/sh", "-c", "grep SigBlk /proc/self/status >&2; exit 3"]}
)yaml");
  Sql("SELECT jobs.publish('missing', i_max_retries => 0); "
      "SELECT jobs.publish('mask', i_max_retries => 0)");
  WaitFor("SELECT count(*) FROM jobs.job", 2);
  EXPECT_EQ(Text("SELECT tracebacks->0->>'error' FROM jobs.job WHERE task = 'missing'"),
            "cannot run /no/such/program: No such file or directory");
  EXPECT_EQ(Text("SELECT tracebacks->0->>'error' FROM jobs.job WHERE task = 'mask'"),
            "/bin/sh exited with status 3: SigBlk:\t0000000000000000\n");
}

// Batched sql jobs share transactions; a failing or timed-out job is rolled back to its own
// savepoint and nacked, and every other job's work commits exactly once with its ack.
TEST_F(WorkerTest, SqlBatchesShareACommitAndAFailureRollsBackOnlyItsJob) {
  Sql("CREATE TABLE results (n int, tx bigint); GRANT ALL ON results TO PUBLIC");
  Start(R"yaml(
worker: {concurrency: 2, prefetch: 100}
tasks:
  record:
    sql: "INSERT INTO results SELECT n, txid_current() FROM (SELECT ($1::jsonb->>'n')::int AS n) j WHERE 100 / (n % 7) > 0 AND (n <> 50 OR pg_sleep(3) IS NOT NULL)"
    batch: 16
)yaml");
  // Multiples of 7 divide by zero; job 50 outlives its 1 s timeout.
  Sql("SELECT jobs.publish('record', jsonb_build_object('n', i), i_max_retries => 0, "
      "i_timeout => CASE WHEN i = 50 THEN 1 ELSE 60 END) FROM generate_series(1, 200) i");
  WaitFor("SELECT count(*) FROM jobs.job", 200);
  const long long failures = 200 / 7;
  EXPECT_EQ(Int("SELECT count(*) FROM results"), 200 - failures - 1);
  EXPECT_EQ(Int("SELECT count(DISTINCT n) FROM results"), 200 - failures - 1);
  EXPECT_EQ(Int("SELECT count(*) FROM results WHERE n % 7 = 0 OR n = 50"), 0);
  EXPECT_LT(Int("SELECT count(DISTINCT tx) FROM results"), 200 / 4) << "jobs shared commits";
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job WHERE status = 'success'"), 200 - failures - 1);
  EXPECT_EQ(Text("SELECT tracebacks->0->>'error' FROM jobs.job WHERE arguments->>'n' = '14'"),
            "division by zero [SQLSTATE 22012]");
  EXPECT_EQ(Text("SELECT tracebacks->0->>'error' FROM jobs.job WHERE arguments->>'n' = '50'"),
            "timeout: canceling statement due to statement timeout");
  auto m = Metrics();
  EXPECT_EQ(m["pgjobs_worker_jobs_total{outcome=\"success\",task=\"record\"}"], 200 - failures - 1);
  EXPECT_EQ(m["pgjobs_worker_jobs_total{outcome=\"failure\",task=\"record\"}"], failures);
  EXPECT_EQ(m["pgjobs_worker_jobs_total{outcome=\"timeout\",task=\"record\"}"], 1);
}

// Thousands of quick jobs through one slot: every freed slot must reach the dispatcher, even with
// other threads (heartbeats, retries) waiting at the same time.
TEST_F(WorkerTest, QuickJobsThroughOneSlotNeverStall) {
  Start(R"yaml(
worker: {concurrency: 1, heartbeat_interval: 5ms, poll_interval: 60s}
tasks:
  quick: {sql: "SELECT $1::jsonb"}
)yaml");
  Sql("SELECT jobs.publish_bulk(ARRAY(SELECT ('quick', NULL, NULL, NULL, NULL, "
      "NULL)::jobs.bulk_job "
      "FROM generate_series(1, 1500)))");
  WaitFor("SELECT count(*) FROM jobs.job WHERE status = 'success'", 1500, 60);
}

// Quick jobs wake executors a few at a time (one for this whole batch), so a job much slower than
// its task's history must not hold up the jobs queued behind it: here the slow job is first in
// its batch and never returns until the end, and the quick ones behind it must still run. A
// worker through the C++ API, in this process, so that the test decides when the slow job ends.
TEST_F(WorkerTest, ASlowJobOfAQuickTaskDoesNotHoldUpTheJobsBehindIt) {
  worker::WorkerConfig config;
  config.dsn = dsn_;
  config.concurrency = 4;
  config.poll_interval = std::chrono::seconds(60);
  config.listen_addresses = {"127.0.0.1:0"};
  std::ostringstream log_output;
  log::Logger logger(log::Level::kWarn, log::Format::kLogfmt, log_output);
  worker::Worker w(config, logger);
  std::atomic<bool> release{false};
  w.Handle("step", [&release](const worker::Job& job) {
    const auto give_up = Clock::now() + std::chrono::seconds(60);
    while (job.arguments.find("slow") != std::string::npos && !release && Clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return worker::Outcome::Success();
  });
  std::thread runner([&w] { w.Run(); });
  // 200 quick jobs teach the worker that "step" jobs take microseconds.
  Sql("SELECT jobs.publish_bulk(ARRAY(SELECT ('step', NULL, NULL, NULL, NULL, "
      "NULL)::jobs.bulk_job FROM generate_series(1, 200)))");
  WaitFor("SELECT count(*) FROM jobs.job", 200);
  // One commit; consume returns rows in their physical order, so the slow job comes first.
  Sql("SELECT jobs.publish_bulk(ARRAY(SELECT ('step', CASE WHEN i = 1 THEN '{\"slow\": true}' "
      "END, NULL, NULL, NULL, NULL)::jobs.bulk_job FROM generate_series(1, 8) i))");
  WaitFor("SELECT count(*) FROM jobs.job", 207, 10);
  EXPECT_EQ(Text("SELECT arguments::text FROM jobs.job_queue"), "{\"slow\": true}");
  release = true;
  WaitFor("SELECT count(*) FROM jobs.job WHERE status = 'success'", 208);
  w.Stop();
  runner.join();
  EXPECT_EQ(log_output.str(), "");
}

// A worker killed in the middle of batched sql work: what committed stays done exactly once,
// the rest expires and is redone by the next worker.
TEST_F(WorkerTest, SqlBatchesAreExactlyOnceAcrossAKill) {
  Sql("CREATE TABLE results (n int); GRANT ALL ON results TO PUBLIC");
  const std::string config = R"yaml(
worker: {concurrency: 2, prefetch: 50, poll_interval: 100ms}
tasks:
  record:
    sql: "INSERT INTO results SELECT ($1::jsonb->>'n')::int FROM pg_sleep(0.002)"
    batch: 8
)yaml";
  Start(config);
  Sql("SELECT jobs.publish('record', jsonb_build_object('n', i), i_timeout => 1) "
      "FROM generate_series(1, 600) i");
  WaitFor("SELECT least(count(*), 100) FROM jobs.job", 100);
  worker_->Signal(SIGKILL);
  worker_->Wait();
  ASSERT_LT(Int("SELECT count(*) FROM jobs.job"), 600) << "killed too late to prove anything";
  Start(config);
  const auto deadline = Clock::now() + std::chrono::seconds(40);
  while (Int("SELECT count(*) FROM jobs.job") < 600 && Clock::now() < deadline) {
    // Attempts cut off by the kill expire after 1 s; skip their retry backoff.
    Sql("UPDATE jobs.job_queue SET scheduled_at = clock_timestamp() WHERE status = 'pending' "
        "AND attempts > 0");
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job WHERE status = 'success'"), 600);
  EXPECT_EQ(Int("SELECT count(*) FROM results"), 600);
  EXPECT_EQ(Int("SELECT count(DISTINCT n) FROM results"), 600);
}

// A hook endpoint: /ok answers 204 and records the body, /fail 503, /slow after 1.5 s.
constexpr const char* kHookServer = R"py(
import http.server, sys, time
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/slow":
            time.sleep(1.5)
        status = {"/ok": 204, "/fail": 503}.get(self.path, 200)
        if self.path == "/ok":
            open(sys.argv[1], "ab").write(body + b"\n" + self.headers["X-Token"].encode() + b"\n")
        self.send_response(status)
        payload = b"try later" if status == 503 else b""
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
print("port=%d" % server.server_address[1], flush=True)
server.serve_forever()
)py";

TEST_F(WorkerTest, HttpHandlerPostsTheJobAndReadsTheStatus) {
  std::ofstream(dir_ + "/hook.py") << kHookServer;
  BackgroundProcess hook({"/usr/bin/python3", dir_ + "/hook.py", dir_ + "/posted"}, {});
  ASSERT_TRUE(hook.WaitForOutput("port=")) << hook.Output();
  const std::string out = hook.Output();
  const std::string base = "http://127.0.0.1:" + std::to_string(std::atoi(out.c_str() + 5));
  Start("tasks:\n  hook_ok: {http: {url: \"" + base +
        "/ok\", headers: {X-Token: abc}}}\n  hook_fail: {http: {url: \"" + base +
        "/fail\"}}\n  hook_slow: {http: {url: \"" + base + "/slow\"}}\n");
  Sql("SELECT jobs.publish('hook_ok', '{\"to\": \"a@b\"}', i_max_retries => 0);"
      "SELECT jobs.publish('hook_fail', i_max_retries => 0);"
      "SELECT jobs.publish('hook_slow', i_max_retries => 0, i_timeout => 0.5);");
  WaitFor("SELECT count(*) FROM jobs.job", 3);
  EXPECT_EQ(Text("SELECT status FROM jobs.job WHERE task = 'hook_ok'"), "success");
  EXPECT_EQ(Text("SELECT tracebacks->0->>'error' FROM jobs.job WHERE task = 'hook_fail'"),
            "POST " + base + "/fail: HTTP 503: try later");
  EXPECT_EQ(Text("SELECT tracebacks->0->>'error' FROM jobs.job WHERE task = 'hook_slow'"),
            "timeout: POST " + base + "/slow did not answer before the job's timeout");
  const long long id = Int("SELECT job_id FROM jobs.job WHERE task = 'hook_ok'");
  std::ifstream in(dir_ + "/posted");
  std::stringstream posted;
  posted << in.rdbuf();
  EXPECT_EQ(posted.str(), "{\"job_id\":" + std::to_string(id) +
                              ",\"task\":\"hook_ok\",\"attempt\":1,\"arguments\":{\"to\": "
                              "\"a@b\"}}\nabc\n");
}

TEST_F(WorkerTest, SigtermLetsJobsInFlightFinishThenExitsZero) {
  Start(R"yaml(
worker: {concurrency: 2, shutdown_grace: 10s}
tasks:
  nap: {command: ["/bin/sh", "-c", "sleep 1"]}
)yaml");
  Sql("SELECT jobs.publish('nap') FROM generate_series(1, 2)");
  WaitFor("SELECT count(*) FROM jobs.running", 2);
  worker_->Signal(SIGTERM);
  EXPECT_EQ(worker_->Wait(8000), 0) << worker_->Output();
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job WHERE status = 'success'"), 2);
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.worker WHERE stopped_at IS NOT NULL"), 1);
}

std::string BcryptHash(const std::string& password) {
  char salt[64];
  crypt_gensalt_rn("$2b$", 4, nullptr, 0, salt, sizeof salt);
  crypt_data data{};
  return crypt_r(password.c_str(), salt, &data);
}

// The exporter-toolkit flags, as jobs-exporter has them: a web config with users and headers,
// re-read on SIGHUP while jobs run (none dropped), a telemetry path, and two listen addresses.
TEST_F(WorkerTest, WebFlagsAndSighupReloadTheWebConfigWithoutDroppingJobs) {
  const std::string web = dir_ + "/web.yml";
  std::ofstream(web) << "basic_auth_users:\n  prometheus: " << BcryptHash("s3cret") << "\n"
                     << "http_server_config:\n  headers:\n    X-Frame-Options: deny\n";
  const std::string body = R"yaml(
worker: {concurrency: 2, shutdown_grace: 10s}
tasks:
  nap: {command: ["/bin/sh", "-c", "sleep 1"]}
)yaml";
  Start(
      body, "", {},
      {"--web.config.file=" + web, "--web.telemetry-path=/m", "--web.listen-address=127.0.0.1:0"});
  const std::string ports = worker_->Output();
  ASSERT_NE(ports.find("ports="), std::string::npos);
  EXPECT_NE(ports.substr(ports.find("ports=")).find(','), std::string::npos)
      << "two listen addresses, two ports: " << ports;

  EXPECT_EQ(HttpGet(port_, "/m").status, 401);
  HttpResponse ok = HttpGet(port_, "/m", {BasicAuthHeader("prometheus", "s3cret")});
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.headers["x-frame-options"], "deny");
  EXPECT_NE(ok.body.find("pgjobs_worker_build_info"), std::string::npos);
  EXPECT_EQ(HttpGet(port_, "/metrics", {BasicAuthHeader("prometheus", "s3cret")}).status, 404);
  EXPECT_EQ(HttpGet(port_, "/-/healthy").status, 200);

  Sql("SELECT jobs.publish('nap') FROM generate_series(1, 4)");
  WaitFor("SELECT count(*) FROM jobs.running", 2);
  std::ofstream(web) << "basic_auth_users:\n  grafana: " << BcryptHash("other") << "\n";
  std::ofstream(dir_ + "/worker.yaml", std::ios::app) << "  extra: {command: [/bin/true]}\n";
  worker_->Signal(SIGHUP);
  ASSERT_TRUE(worker_->WaitForOutput("msg=\"web configuration reloaded\"")) << worker_->Output();
  ASSERT_TRUE(worker_->WaitForOutput("configuration file changed and is valid"))
      << worker_->Output();
  EXPECT_EQ(HttpGet(port_, "/m", {BasicAuthHeader("prometheus", "s3cret")}).status, 401);
  HttpResponse reloaded = HttpGet(port_, "/m", {BasicAuthHeader("grafana", "other")});
  EXPECT_EQ(reloaded.status, 200);
  EXPECT_EQ(reloaded.headers.count("x-frame-options"), 0u);

  // A broken web config is refused and the running one stays.
  std::ofstream(web) << "basic_auth_users:\n  grafana: plain\n";
  worker_->Signal(SIGHUP);
  ASSERT_TRUE(worker_->WaitForOutput("web configuration reload failed")) << worker_->Output();
  EXPECT_EQ(HttpGet(port_, "/m", {BasicAuthHeader("grafana", "other")}).status, 200);

  WaitFor("SELECT count(*) FROM jobs.job WHERE status = 'success'", 4);
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job_queue"), 0);
  worker_->Signal(SIGTERM);
  EXPECT_EQ(worker_->Wait(8000), 0) << worker_->Output();
}

TEST_F(WorkerTest, MetricsDisabledMeansNoMetricsPath) {
  Start(R"yaml(
metrics: {enabled: false}
tasks:
  nap: {command: ["/bin/true"]}
)yaml");
  EXPECT_EQ(HttpGet(port_, "/metrics").status, 404);
  EXPECT_EQ(HttpGet(port_, "/").body.find("/metrics"), std::string::npos);
  EXPECT_EQ(HttpGet(port_, "/-/healthy").status, 200);
  Sql("SELECT jobs.publish('nap')");
  WaitFor("SELECT count(*) FROM jobs.job WHERE status = 'success'", 1);
}

TEST_F(WorkerTest, SigtermNacksWhatOutlivesTheGracePeriod) {
  Start(R"yaml(
worker: {concurrency: 1, shutdown_grace: 300ms}
tasks:
  long: {command: ["/bin/sh", "-c", "sleep 30"]}
)yaml");
  Sql("SELECT jobs.publish('long')");
  WaitFor("SELECT count(*) FROM jobs.running", 1);
  const auto start = Clock::now();
  worker_->Signal(SIGTERM);
  EXPECT_EQ(worker_->Wait(8000), 0) << worker_->Output();
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 3.0);
  EXPECT_EQ(Text("SELECT state || ' ' || (tracebacks->0->>'error') FROM jobs.all"),
            "retry_wait worker shut down: the job did not finish within the shutdown grace "
            "period");
}

// jobs.cancel on running jobs: the worker sees the marks with its next heartbeat, kills the
// command's process group and cancels the sql statement, and the jobs end as cancelled without
// a retry; a job cancelled while it waits in the worker never starts.
TEST_F(WorkerTest, CancelStopsRunningCommandAndSqlJobs) {
  Sql("CREATE TABLE done (job_id bigint); GRANT ALL ON done TO PUBLIC");
  Start(R"yaml(
worker: {concurrency: 2, heartbeat_interval: 200ms}
tasks:
  long_command: {command: ["/bin/sh", "-c", "sleep 30; echo finished"]}
  long_sql: {sql: "INSERT INTO done SELECT 1 FROM pg_sleep(30)"}
)yaml");
  const long long command_job = Int("SELECT jobs.publish('long_command', i_timeout => 60)");
  const long long sql_job = Int("SELECT jobs.publish('long_sql', i_timeout => 60)");
  WaitFor("SELECT count(*) FROM jobs.running", 2);
  // Sleeping inside the command's shell: its process group must go with it.
  WaitFor("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'INSERT INTO done%'", 1);
  const auto start = Clock::now();
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.cancel(ARRAY[" + std::to_string(command_job) + ", " +
                std::to_string(sql_job) + "])"),
            2);
  WaitFor("SELECT count(*) FROM jobs.job WHERE status = 'cancelled'", 2, 10);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 3.0);
  EXPECT_EQ(Text("SELECT string_agg(task || ': ' || attempts || ' ' || (tracebacks->-1->>'error'), "
                 "' | ' ORDER BY task) FROM jobs.job"),
            "long_command: 1 cancelled while running: cancelled: /bin/sh was killed "
            "(jobs.cancel) | long_sql: 1 cancelled while running: cancelled: its statement was "
            "cancelled (jobs.cancel)");
  EXPECT_EQ(Int("SELECT count(*) FROM done"), 0);
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job_queue"), 0);
  // The pattern does not match pgrep's own command line.
  std::string ps =
      RunProcess({"/bin/sh", "-c", "pgrep -f 'sleep 3[0]; echo finished' || true"}).out;
  EXPECT_EQ(ps, "") << "the command's processes outlived the cancel";
  // The worker goes on working, and a second cancel works as the first.
  const long long again = Int("SELECT jobs.publish('long_command', i_timeout => 60)");
  WaitFor("SELECT count(*) FROM jobs.running", 1);
  Sql("SELECT jobs.cancel(ARRAY[" + std::to_string(again) + "])");
  WaitFor("SELECT count(*) FROM jobs.job WHERE status = 'cancelled'", 3, 10);
  // Counted as what they became, not as the failures their handlers returned.
  auto m = Metrics();
  for (int i = 0;
       i < 50 && m["pgjobs_worker_jobs_total{outcome=\"cancelled\",task=\"long_command\"}"] < 2;
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    m = Metrics();
  }
  EXPECT_EQ(m["pgjobs_worker_jobs_total{outcome=\"cancelled\",task=\"long_command\"}"], 2);
  EXPECT_EQ(m["pgjobs_worker_jobs_total{outcome=\"cancelled\",task=\"long_sql\"}"], 1);
  EXPECT_EQ(m["pgjobs_worker_jobs_total{outcome=\"failure\",task=\"long_command\"}"], 0);
  EXPECT_EQ(m["pgjobs_worker_jobs_total{outcome=\"failure\",task=\"long_sql\"}"], 0);
  EXPECT_EQ(m["pgjobs_worker_jobs_dead_total{task=\"long_command\"}"], 0);
}

// One worker at a time runs the maintenance (the holder of an advisory lock); when it dies,
// another takes over within its takeover period. A worker with maintenance off never does.
TEST_F(WorkerTest, MaintenanceRunsOnOneWorkerAndMovesOnWhenItDies) {
  Sql(R"sql(
    INSERT INTO jobs.job (job_id, task, status, priority, attempts, max_retries, timeout,
                          published_at, scheduled_at, started_at, finished_at)
    VALUES (1000000, 't', 'success', 0, 1, 3, 60, now() - interval '9 days',
            now() - interval '9 days', now() - interval '9 days', now() - interval '9 days');
    SELECT jobs.register_worker('gone', 'h', 1, 1);
    UPDATE jobs.worker SET heartbeat_at = now() - interval '2 hours' WHERE name = 'gone')sql");
  const std::string body = R"yaml(
worker: {concurrency: 1}
maintenance: {interval: 200ms, takeover: 200ms}
tasks:
  t: {command: ["/bin/true"]}
)yaml";
  Start(body);
  WaitFor("SELECT count(*) FROM jobs.job WHERE job_id = 1000000", 0);
  WaitFor("SELECT count(*) FROM jobs.worker WHERE name = 'gone'", 0);

  auto second = [&](const std::string& name, const std::string& yaml) {
    std::ofstream(dir_ + "/" + name + ".yaml") << "database: {dsn: \"${TEST_DSN}\"}\n" << yaml;
    return std::make_unique<BackgroundProcess>(
        std::vector<std::string>{kBin, "--config.file=" + dir_ + "/" + name + ".yaml",
                                 "--web.listen-address=127.0.0.1:0"},
        std::vector<std::string>{"TEST_DSN=" + dsn_});
  };
  auto standby = second("standby", body);
  auto off = second("off", R"yaml(
worker: {concurrency: 1}
maintenance: {enabled: false}
tasks:
  t: {command: ["/bin/true"]}
)yaml");
  ASSERT_TRUE(standby->WaitForOutput("msg=registered")) << standby->Output();
  ASSERT_TRUE(off->WaitForOutput("msg=registered")) << off->Output();
  auto leader_of = [](int port) {
    return ParseMetrics(HttpGet(port, "/metrics").body)["pgjobs_worker_maintenance_leader"];
  };
  const int standby_port = standby->LoggedInt("ports");
  const int off_port = off->LoggedInt("ports");
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  EXPECT_EQ(leader_of(port_), 1);
  EXPECT_EQ(leader_of(standby_port), 0);
  EXPECT_EQ(leader_of(off_port), 0);
  auto m = Metrics();
  EXPECT_GE(m["pgjobs_worker_maintenance_runs_total{result=\"ok\",step=\"prune\"}"], 2);
  EXPECT_EQ(m["pgjobs_worker_maintenance_runs_total{result=\"error\",step=\"prune\"}"], 0);

  worker_->Signal(SIGKILL);
  worker_->Wait();
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while (leader_of(standby_port) != 1 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(leader_of(standby_port), 1) << standby->Output();
  EXPECT_EQ(leader_of(off_port), 0);
  EXPECT_EQ(Int("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
                "((classid::bigint << 32) | objid::bigint) = 7061021001"),
            1);
}

TEST_F(WorkerTest, SigkillLosesNothing) {
  Start(R"yaml(
worker: {concurrency: 1, poll_interval: 100ms}
tasks:
  nap: {command: ["/bin/sh", "-c", "sleep 0.5"]}
)yaml");
  Sql("SELECT jobs.publish('nap', i_timeout => 1)");
  WaitFor("SELECT count(*) FROM jobs.running", 1);
  worker_->Signal(SIGKILL);
  worker_->Wait();
  Start(R"yaml(
worker: {concurrency: 1, poll_interval: 100ms}
tasks:
  nap: {command: ["/bin/sh", "-c", "sleep 0.5"]}
)yaml");
  // The killed attempt expires after 1 s, is reclaimed, and after the 2 s backoff runs again.
  Sql("UPDATE jobs.job_queue SET scheduled_at = clock_timestamp() WHERE status = 'pending'");
  WaitFor("SELECT count(*) FROM jobs.job WHERE status = 'success'", 1, 15);
  EXPECT_EQ(Int("SELECT attempts FROM jobs.job"), 2);
}

TEST_F(WorkerTest, ADatabaseRestartInTheMiddleOfWorkLosesNothing) {
  Start(R"yaml(
worker: {concurrency: 4, poll_interval: 100ms}
tasks:
  quick: {command: ["/bin/sh", "-c", "sleep 0.05"]}
)yaml");
  Sql("SELECT jobs.publish('quick', jsonb_build_object('i', i), i_timeout => 2) "
      "FROM generate_series(1, 120) i");
  WaitFor("SELECT least(count(*), 20) FROM jobs.job", 20);
  conn_.reset();
  PgCluster::Shared().Stop();
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  EXPECT_EQ(HttpGet(port_, "/-/ready").status, 503);
  EXPECT_EQ(Metrics()["pgjobs_worker_database_up"], 0);
  PgCluster::Shared().Start();
  conn_.emplace(db::ConnectOptions{.dsn = dsn_});
  // Attempts cut off by the restart expire and are retried; nudge their backoff.
  const auto deadline = Clock::now() + std::chrono::seconds(40);
  while (Int("SELECT count(*) FROM jobs.job") < 120 && Clock::now() < deadline) {
    Sql("UPDATE jobs.job_queue SET scheduled_at = clock_timestamp() WHERE status = 'pending' "
        "AND attempts > 0");
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job WHERE status = 'success'"), 120);
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job_queue"), 0);
  auto m = Metrics();
  EXPECT_EQ(m["pgjobs_worker_database_up"], 1);
  EXPECT_LE(m["pgjobs_worker_jobs_total{outcome=\"success\",task=\"quick\"}"], 120)
      << "never a success reported twice";
  EXPECT_GT(m["pgjobs_worker_db_errors_total{call=\"consume\"}"], 0);
}

TEST_F(WorkerTest, ConcurrencyIsHonouredAndNotifyWakesAnIdleWorker) {
  Start(R"yaml(
worker: {concurrency: 3, poll_interval: 60s}
tasks:
  nap: {command: ["/bin/sh", "-c", "sleep 0.3"]}
)yaml");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // idle, waiting on LISTEN
  const auto start = Clock::now();
  Sql("SELECT jobs.publish('nap') FROM generate_series(1, 9)");
  // Handlers at once, from the worker's own gauge. (jobs.running may briefly count more: a
  // finished job stays there until its batched ack commits.)
  double max_in_flight = 0;
  while (Int("SELECT count(*) FROM jobs.job") < 9 &&
         Clock::now() - start < std::chrono::seconds(20)) {
    max_in_flight =
        std::max(max_in_flight, Metrics()["pgjobs_worker_jobs_in_flight{task=\"nap\"}"]);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(max_in_flight, 3);
  // 9 jobs of 0.3 s, 3 at a time: three rounds, about 1 s (3 to 4 s under the sanitizers), far
  // below the 60 s poll.
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 10.0)
      << Text("SELECT string_agg(status || ' ' || attempts, ', ') FROM jobs.job_queue") << "\n"
      << worker_->Output();
  EXPECT_GE(Metrics()["pgjobs_worker_wakeups_total{source=\"notify\"}"], 1);
}

TEST_F(WorkerTest, RetriesAndScheduledJobsRunWhenDueWithoutWaitingForThePoll) {
  Start(R"yaml(
worker: {concurrency: 2, poll_interval: 60s}
tasks:
  flaky: {command: ["/bin/sh", "-c", "test $PGJOBS_ATTEMPT -ge 2"]}
  later: {command: ["/bin/sh", "-c", "true"]}
)yaml");
  const auto start = Clock::now();
  Sql("SELECT jobs.publish('flaky', i_max_retries => 1);"
      "SELECT jobs.publish('later', i_scheduled_at => clock_timestamp() + interval '1.5 s')");
  // The retry is due 2 s after the first failure and the scheduled job after 1.5 s; neither is
  // announced by a NOTIFY, and the poll is a minute away.
  WaitFor("SELECT count(*) FROM jobs.job WHERE status = 'success'", 2, 10);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 6.0);
  EXPECT_EQ(Int("SELECT attempts FROM jobs.job WHERE task = 'flaky'"), 2);
}

struct BadConfig {
  std::string file;
  std::string message;
};

TEST(WorkerConfigCheck, BadConfigsAreRefusedWordForWordBeforeTouchingTheQueue) {
  const std::vector<BadConfig> cases = {
      {"unknown_key.yaml", ":3:3: worker.concurency: unknown key (did you mean 'concurrency'?)"},
      {"command_map.yaml", ":3:14: tasks.email.command: expected a list of strings, got a map"},
      {"no_handler.yaml", ":3:5: tasks.email: missing handler: give one of command, sql or http"},
      {"http_no_url.yaml", ":3:11: tasks.hook.http.url: missing: the http handler needs a url"},
      {"bad_listen.yaml",
       ":2:11: metrics.listen: listen address '127.0.0.1': expected HOST:PORT, "
       "[IPv6]:PORT or :PORT"},
      {"listen_bad_octet.yaml",
       ":2:11: metrics.listen: listen address '999.1.1.1:19476': expected an IP address such as "
       "127.0.0.1 or [::1], or localhost, got '999.1.1.1'"},
      {"huge_duration.yaml",
       ":2:19: worker.shutdown_grace: expected a duration such as 500ms, 30s or 5m, up to 365d, "
       "got '99999999999999999999h'"},
      {"batch_not_sql.yaml",
       ":4:12: tasks.email.batch: only sql tasks run in batches; remove it or give sql"},
      {"bad_concurrency.yaml",
       ":2:16: worker.concurrency: expected an integer from 1 to 10000, got 0"},
  };
  for (const BadConfig& c : cases) {
    const std::string path = kTestdata + "/worker/" + c.file;
    ProcessResult r = RunProcess({kBin, "--config.file=" + path}, {"PGJOBS_DSN=postgresql:///x"});
    EXPECT_EQ(r.exit_code, 2) << c.file;
    EXPECT_EQ(r.err, "jobs-worker: " + path + c.message + "\n") << c.file;
  }
  ProcessResult example = RunProcess(
      {kBin, "--config.check",
       "--config.file=" + std::string(PGJOBS_SOURCE_DIR) + "/config/worker.example.yaml"},
      {"PGJOBS_DSN=postgresql:///x"});
  EXPECT_EQ(example.exit_code, 0) << example.err;
  // A directory reads as an empty file: it must not pass for a valid configuration.
  ProcessResult directory =
      RunProcess({kBin, "--config.check", "--config.file=" + kTestdata}, {"PGJOBS_DSN=x=1"});
  EXPECT_EQ(directory.exit_code, 2);
  EXPECT_EQ(directory.err, "jobs-worker: " + kTestdata + ": cannot read: not a regular file\n");
  // A DSN that cannot parse never heals: exit at once instead of retrying it for ever.
  ProcessResult bad_dsn = RunProcess(
      {kBin, "--config.file=" + std::string(PGJOBS_SOURCE_DIR) + "/config/worker.example.yaml"},
      {"PGJOBS_DSN=host=x port"});
  EXPECT_EQ(bad_dsn.exit_code, 2);
  EXPECT_EQ(bad_dsn.err,
            "jobs-worker: connecting to host=x port: invalid DSN: missing \"=\" after \"port\" in "
            "connection info string\n");
  ProcessResult none = RunProcess({kBin, "postgresql:///x"});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_EQ(none.err,
            "jobs-worker: no tasks configured: add a tasks: section to --config.file "
            "(see config/worker.example.yaml)\n");
}

}  // namespace
}  // namespace pgjobs::testing
