// SPDX-License-Identifier: Apache-2.0
// No input may stop the worker: a handler's output, an argument's size, a command's leftovers,
// a refused result or a revoked privilege, against the real binary.
#include <signal.h>

#include "pgjobs/log/logger.h"
#include "pgjobs/worker/worker.h"
#include "tests/e2e/worker_fixture.h"

namespace pgjobs::testing {
namespace {

using PoisonWorkerTest = WorkerTest;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// stderr that is not valid UTF-8 (an 0xff byte, a NUL, Latin-1, a character cut by the tail)
// used to make the nack fail for good, so that no ack or nack of that worker reached the
// database again. It is stored as valid text, and the quick jobs beside it all complete.
TEST_F(PoisonWorkerTest, InvalidTextFromAHandlerIsStoredSafelyAndHoldsBackNothing) {
  Start(R"yaml(
worker: {concurrency: 4, poll_interval: 100ms}
tasks:
  ff:     {command: ["/bin/sh", "-c", "printf 'bad \\377 byte' >&2; exit 1"]}
  nul:    {command: ["/bin/sh", "-c", "printf 'a\\000b' >&2; exit 1"]}
  latin1: {command: ["/bin/sh", "-c", "printf 'caf\\351' >&2; exit 1"]}
  cut:    {command: ["/bin/sh", "-c", "printf '\\342\\202\\254%.0s' $(seq 1 1500) >&2; exit 1"]}
  quick:  {command: ["/bin/true"]}
)yaml");
  Sql("SELECT jobs.publish(t, i_max_retries => 0) FROM unnest(ARRAY['ff', 'nul', 'latin1', "
      "'cut']) t; SELECT jobs.publish('quick') FROM generate_series(1, 200)");
  WaitFor("SELECT count(*) FROM jobs.job", 204, 30);
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job WHERE task = 'quick' AND status = 'success'"), 200);
  EXPECT_EQ(Text("SELECT tracebacks->0->>'error' FROM jobs.job WHERE task = 'ff'"),
            "/bin/sh exited with status 1: bad \xEF\xBF\xBD byte");
  EXPECT_EQ(Text("SELECT tracebacks->0->>'error' FROM jobs.job WHERE task = 'nul'"),
            "/bin/sh exited with status 1: ab");
  EXPECT_EQ(Text("SELECT tracebacks->0->>'error' FROM jobs.job WHERE task = 'latin1'"),
            "/bin/sh exited with status 1: caf\xEF\xBF\xBD");
  const std::string cut = Text("SELECT tracebacks->0->>'error' FROM jobs.job WHERE task = 'cut'");
  EXPECT_TRUE(cut.starts_with("/bin/sh exited with status 1: ...\xE2\x82\xAC")) << cut;
  EXPECT_LE(Int("SELECT octet_length(tracebacks->0->>'error') FROM jobs.job WHERE task = 'cut'"),
            4096);
  worker_->Signal(SIGTERM);
  EXPECT_EQ(worker_->Wait(5000), 0) << worker_->Output();
}

// A result the database refuses for one of its values fails that job alone, with the reason;
// the batch it came in is split so that every other result completes.
TEST_F(PoisonWorkerTest, ARefusedResultFailsItsJobAloneAndTheRestComplete) {
  Sql(R"sql(
    CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.tracebacks::text LIKE '%poison%' THEN
        RAISE EXCEPTION 'this traceback is refused' USING ERRCODE = '22023';
      END IF;
      RETURN NEW;
    END $$;
    CREATE TRIGGER refuse_poison BEFORE UPDATE ON jobs.job_queue FOR EACH ROW
      EXECUTE FUNCTION refuse_poison();
  )sql");
  worker::WorkerConfig config;
  config.dsn = dsn_;
  config.concurrency = 4;
  config.prefetch = 200;
  config.poll_interval = std::chrono::milliseconds(100);
  config.listen_addresses = {"127.0.0.1:0"};
  std::ostringstream log_output;
  log::Logger logger(log::Level::kInfo, log::Format::kLogfmt, log_output);
  worker::Worker w(config, logger);
  w.Handle("t", [](const worker::Job& job) {
    return worker::Outcome::Failure(
        job.arguments.find("poison") != std::string::npos ? "poison in here" : "ordinary failure");
  });
  // Published before the worker starts, so that their results meet in few batches.
  Sql("SELECT jobs.publish('t', jsonb_build_object('n', i, 'p', CASE WHEN i = 77 THEN 'poison' "
      "END), i_max_retries => 1) FROM generate_series(1, 150) i");
  std::thread runner([&w] { w.Run(); });
  WaitFor("SELECT count(*) FROM jobs.job_queue WHERE attempts = 1 AND status = 'pending'", 150);
  w.Stop();
  runner.join();
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job_queue WHERE tracebacks->0->>'error' = "
                "'ordinary failure'"),
            149);
  EXPECT_EQ(Text("SELECT tracebacks->0->>'error' FROM jobs.job_queue WHERE arguments->>'p' = "
                 "'poison'"),
            "the worker could not store this attempt's result: this traceback is refused");
  EXPECT_NE(log_output.str().find("a job's result was refused; failing it with the reason"),
            std::string::npos)
      << log_output.str();
}

// An error that cannot heal (a revoked privilege) used to be retried every 200 ms for ever, and
// the worker never stopped. It gives up on those results (they expire and are retried) and
// stops within its grace.
TEST_F(PoisonWorkerTest, AnErrorThatCannotHealIsLoggedAndTheWorkerStillStops) {
  Sql("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'poison_worker') THEN "
      "CREATE ROLE poison_worker LOGIN IN ROLE jobs_consumer; END IF; END $$");
  Start(R"yaml(
worker: {concurrency: 2, shutdown_grace: 2s, poll_interval: 100ms}
tasks:
  t: {command: ["/bin/true"]}
)yaml",
        dsn_ + " user=poison_worker");
  Sql("SELECT jobs.publish('t') FROM generate_series(1, 5)");
  WaitFor("SELECT count(*) FROM jobs.job", 5);
  Sql("REVOKE EXECUTE ON FUNCTION jobs.complete(bigint[], integer[], bigint[], text[], "
      "integer[]) FROM jobs_consumer");
  Sql("SELECT jobs.publish('t') FROM generate_series(1, 5)");
  EXPECT_TRUE(worker_->WaitForOutput("retrying would not help", 10000)) << worker_->Output();
  EXPECT_NE(worker_->Output().find("[SQLSTATE 42501]"), std::string::npos) << worker_->Output();
  const auto start = Clock::now();
  worker_->Signal(SIGTERM);
  EXPECT_EQ(worker_->Wait(8000), 0) << worker_->Output();
  EXPECT_LT(SecondsSince(start), 4.0);
  Sql("GRANT EXECUTE ON FUNCTION jobs.complete(bigint[], integer[], bigint[], text[], "
      "integer[]) TO jobs_consumer");
}

// Arguments of any size reach a command whole (they were cut at 64 KiB, and the job succeeded);
// a command that reads none of them still decides its outcome by its exit.
TEST_F(PoisonWorkerTest, ACommandGetsItsWholeArgumentsOnStdin) {
  Start(R"yaml(
worker: {concurrency: 2}
tasks:
  count: {command: ["/bin/sh", "-c", "wc -c > \"$OUT/$PGJOBS_JOB_ID.len\""], pass_env: [OUT]}
  ignore: {command: ["/bin/true"]}
)yaml");
  Sql("SELECT jobs.publish('count', jsonb_build_object('blob', repeat('x', n))) FROM "
      "unnest(ARRAY[10, 100000, 1000000]) n; "
      "SELECT jobs.publish('ignore', jsonb_build_object('blob', repeat('y', 1000000)))");
  WaitFor("SELECT count(*) FROM jobs.job WHERE status = 'success'", 4);
  db::Result r = conn_->Query(
      "sizes", "SELECT job_id, octet_length(arguments::text) FROM jobs.job WHERE task = 'count'");
  ASSERT_EQ(r.Rows(), 3);
  for (int i = 0; i < r.Rows(); ++i) {
    std::ifstream in(dir_ + "/" + std::string(r.Text(i, 0)) + ".len");
    long long bytes = -1;
    in >> bytes;
    EXPECT_EQ(bytes, r.Int(i, 1)) << "job " << r.Text(i, 0);
  }
}

// The command's own exit decides: one that exits 0 while a child it started still holds stderr
// succeeds at once, and the child is killed.
TEST_F(PoisonWorkerTest, ACommandsExitDecidesEvenWithAChildHoldingItsStderr) {
  Start(R"yaml(
worker: {concurrency: 1}
tasks:
  leave: {command: ["/bin/sh", "-c", "(sleep 3; touch \"$OUT/child-survived\") & exit 0"], pass_env: [OUT]}
)yaml");
  const auto start = Clock::now();
  Sql("SELECT jobs.publish('leave', i_timeout => 1)");
  WaitFor("SELECT count(*) FROM jobs.job WHERE status = 'success'", 1, 10);
  EXPECT_LT(SecondsSince(start), 0.9) << "decided before the job's timeout";
  auto m = Metrics();
  EXPECT_EQ(m["pgjobs_worker_jobs_total{outcome=\"success\",task=\"leave\"}"], 1);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/child-survived"));
}

// A command's environment is a short allow-list and its job's variables: not the worker's DSN
// with its password. pass_env and env add to it.
TEST_F(PoisonWorkerTest, CommandsGetACleanEnvironment) {
  Start(R"yaml(
tasks:
  env: {command: ["/bin/sh", "-c", "env | sort >&2; exit 1"], pass_env: [EXTRA], env: {MODE: "test"}}
)yaml",
        "", {"PGJOBS_DSN=postgresql://u:hunter2@db/x", "EXTRA=yes", "SECRET=s3cret"});
  Sql("SELECT jobs.publish('env', i_max_retries => 0)");
  WaitFor("SELECT count(*) FROM jobs.job", 1);
  const std::string env = Text("SELECT tracebacks->0->>'error' FROM jobs.job");
  EXPECT_EQ(env.find("hunter2"), std::string::npos) << env;
  EXPECT_EQ(env.find("SECRET"), std::string::npos) << env;
  EXPECT_EQ(env.find("TEST_DSN"), std::string::npos) << env;
  for (const char* expected :
       {"EXTRA=yes\n", "\nMODE=test\n", "\nPGJOBS_TASK=env\n", "\nPGJOBS_ATTEMPT=1\n", "\nPATH="}) {
    EXPECT_NE(env.find(expected), std::string::npos) << expected << " in " << env;
  }
}

// The shutdown grace holds for sql jobs too: at its end the statement is cancelled and rolled
// back, and the job is nacked, where the worker used to wait for the statement.
TEST_F(PoisonWorkerTest, TheShutdownGraceCancelsRunningSqlStatements) {
  Sql("CREATE TABLE done (n int); GRANT ALL ON done TO PUBLIC");
  Start(R"yaml(
worker: {concurrency: 2, shutdown_grace: 1s}
tasks:
  nap: {sql: "INSERT INTO done SELECT 1 FROM pg_sleep(8)"}  # $1 unused, which must be fine
)yaml");
  Sql("SELECT jobs.publish('nap') FROM generate_series(1, 2)");
  WaitFor("SELECT count(*) FROM jobs.running", 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto start = Clock::now();
  worker_->Signal(SIGTERM);
  EXPECT_EQ(worker_->Wait(8000), 0) << worker_->Output();
  EXPECT_LT(SecondsSince(start), 3.0);
  EXPECT_EQ(Int("SELECT count(*) FROM done"), 0) << "the work rolled back";
  EXPECT_EQ(Text("SELECT string_agg(DISTINCT state || ' ' || (tracebacks->0->>'error'), '; ') "
                 "FROM jobs.all"),
            "retry_wait worker shut down: the job did not finish within the shutdown grace "
            "period");
}

}  // namespace
}  // namespace pgjobs::testing
