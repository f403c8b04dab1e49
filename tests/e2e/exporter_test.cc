// SPDX-License-Identifier: Apache-2.0
// jobs-exporter, the real binary, scraped over HTTP against a real PostgreSQL.
#include <crypt.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include "pgjobs/db/connection.h"
#include "tests/harness/background_process.h"
#include "tests/harness/http_client.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/pg_cluster.h"
#include "tests/harness/pgbouncer.h"
#include "tests/harness/process.h"
#include "tests/harness/tls_certificates.h"

namespace pgjobs::testing {
namespace {

const std::string kBin = PGJOBS_EXPORTER_BIN;
const std::string kTestdata = PGJOBS_TESTDATA_DIR;

using Clock = std::chrono::steady_clock;

std::string WriteFile(const std::string& dir, const std::string& name, const std::string& text) {
  const std::string path = dir + "/" + name;
  std::ofstream(path) << text;
  return path;
}

std::string TempDir() {
  char tmpl[] = "/tmp/pgjobs-exporter-test-XXXXXX";
  return mkdtemp(tmpl);
}

class ExporterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dsn_ = PgCluster::Shared().FreshDatabase();
    conn_.emplace(db::ConnectOptions{.dsn = dsn_});
    dir_ = TempDir();
  }
  void TearDown() override {
    exporter_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Starts jobs-exporter with `config` (YAML; the DSN is added) and extra flags.
  void Start(const std::string& config = "", const std::vector<std::string>& flags = {}) {
    config_path_ = WriteFile(dir_, "exporter.yaml", "database:\n  dsn: \"${TEST_DSN}\"\n" + config);
    std::vector<std::string> argv = {kBin, "--config.file=" + config_path_,
                                     "--web.listen-address=127.0.0.1:0"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    exporter_ =
        std::make_unique<BackgroundProcess>(argv, std::vector<std::string>{"TEST_DSN=" + dsn_});
    ASSERT_TRUE(exporter_->WaitForOutput("msg=listening")) << exporter_->Output();
    port_ = exporter_->LoggedInt("ports");
    ASSERT_GT(port_, 0);
  }
  HttpResponse Scrape(const std::vector<std::string>& headers = {}) {
    return HttpGet(port_, "/metrics", headers);
  }
  std::map<std::string, double> Metrics() {
    HttpResponse r = Scrape();
    EXPECT_EQ(r.status, 200) << r.body;
    return ParseMetrics(r.body);
  }
  void Sql(const std::string& sql) { conn_->Execute("test sql", sql); }
  std::string Text(const std::string& sql) {
    return std::string(conn_->Query("test text", sql).Text(0, 0));
  }
  long long Int(const std::string& sql) { return conn_->Query("test int", sql).Int(0, 0); }

  std::string dsn_;
  std::optional<db::Connection> conn_;
  std::string dir_;
  std::string config_path_;
  std::unique_ptr<BackgroundProcess> exporter_;
  int port_ = 0;
};

// A queue with a job in every state, finished jobs of every status, and live and dead workers.
void Seed(db::Connection& conn) {
  conn.Execute("seed", R"sql(
    SELECT jobs.register_worker('alive', 'h1', 1, 4, interval '1 hour');
    SELECT jobs.register_worker('dead', 'h2', 2, 4, interval '1 millisecond');
    -- e: one success, one failure; f: one expired.
    SELECT jobs.publish('e');
    SELECT jobs.publish('e', i_max_retries => 0);
    SELECT jobs.publish('f', i_timeout => 0.05, i_max_retries => 0);
    SELECT jobs.ack(job_id) FROM jobs.consume(1, ARRAY['e']);
    SELECT jobs.nack(job_id, 'boom') FROM jobs.consume(1, ARRAY['e']);
    SELECT count(*) FROM jobs.consume(1, ARRAY['f']);
    SELECT pg_sleep(0.1);
    SELECT jobs.expire();
    -- a: 3 ready, 1 scheduled; b: 1 in retry backoff; d: 1 running on the live worker.
    SELECT jobs.publish('a') FROM generate_series(1, 3);
    SELECT jobs.publish('a', i_scheduled_at => clock_timestamp() + interval '1 hour');
    SELECT jobs.publish('b');
    SELECT jobs.nack(job_id, 'later') FROM jobs.consume(1, ARRAY['b'], 1);
    SELECT jobs.publish('d');
    SELECT count(*) FROM jobs.consume(1, ARRAY['d'], 1);
    -- c: running on the dead worker past its timeout.
    SELECT jobs.publish('c', i_timeout => 0.05);
    SELECT count(*) FROM jobs.consume(1, ARRAY['c'], 2);
    SELECT pg_sleep(0.1);
  )sql");
}

TEST_F(ExporterTest, EveryMetricHasTheExactValueOfTheQueue) {
  Start();
  Metrics();  // the first scrape sets the watermark: finished counters count from here
  Seed(*conn_);
  auto m = Metrics();
  EXPECT_EQ(m["pgjobs_up"], 1);
  for (const char* c : {"queue", "finished", "workers", "tables", "database"}) {
    EXPECT_EQ(m[std::string("pgjobs_scrape_collector_success{collector=\"") + c + "\"}"], 1) << c;
  }
  auto jobs = [&](const std::string& task, const std::string& state) {
    const std::string key = "pgjobs_jobs{task=\"" + task + "\",state=\"" + state + "\"}";
    EXPECT_EQ(m.count(key), 1u) << key;
    return m[key];
  };
  EXPECT_EQ(jobs("a", "ready"), 3);
  EXPECT_EQ(jobs("a", "scheduled"), 1);
  EXPECT_EQ(jobs("a", "retry_wait"), 0);
  EXPECT_EQ(jobs("a", "running"), 0);
  EXPECT_EQ(jobs("a", "expired"), 0);
  EXPECT_EQ(jobs("b", "retry_wait"), 1);
  EXPECT_EQ(jobs("b", "ready"), 0);
  EXPECT_EQ(jobs("c", "expired"), 1);
  EXPECT_EQ(jobs("c", "running"), 0);
  EXPECT_EQ(jobs("d", "running"), 1);
  EXPECT_EQ(m.count("pgjobs_jobs{task=\"e\",state=\"ready\"}"), 0u) << "e left the queue";

  EXPECT_GT(m["pgjobs_oldest_ready_job_age_seconds{task=\"a\"}"], 0);
  EXPECT_LT(m["pgjobs_oldest_ready_job_age_seconds{task=\"a\"}"], 30);
  EXPECT_EQ(m["pgjobs_oldest_ready_job_age_seconds{task=\"b\"}"], 0) << "backoff never counts";
  EXPECT_GT(m["pgjobs_oldest_running_job_seconds{task=\"d\"}"], 0);
  EXPECT_GT(m["pgjobs_expired_job_max_overdue_seconds{task=\"c\"}"], 0);
  EXPECT_EQ(m["pgjobs_expired_job_max_overdue_seconds{task=\"d\"}"], 0);

  EXPECT_EQ(m["pgjobs_jobs_finished_total{task=\"e\",status=\"success\"}"], 1);
  EXPECT_EQ(m["pgjobs_jobs_finished_total{task=\"e\",status=\"failure\"}"], 1);
  EXPECT_EQ(m["pgjobs_jobs_finished_total{task=\"f\",status=\"expired\"}"], 1);
  EXPECT_EQ(m["pgjobs_job_attempts_bucket{task=\"e\",le=\"1\"}"], 2);
  EXPECT_EQ(m["pgjobs_job_attempts_count{task=\"f\"}"], 1);
  EXPECT_EQ(m["pgjobs_job_attempts_sum{task=\"e\"}"], 2);
  EXPECT_EQ(m["pgjobs_job_wait_seconds_count{task=\"e\"}"], 2);
  EXPECT_EQ(m["pgjobs_job_run_seconds_bucket{task=\"f\",le=\"0.05\"}"], 0) << "ran past 0.05 s";
  EXPECT_EQ(m["pgjobs_job_run_seconds_bucket{task=\"f\",le=\"+Inf\"}"], 1);
  EXPECT_EQ(m["pgjobs_jobs_published_total{task=\"a\"}"], 4);
  EXPECT_EQ(m["pgjobs_jobs_published_total{task=\"e\"}"], 2);
  // Known tasks start at 0, so that "nothing happened" is a 0 and not a missing series.
  EXPECT_EQ(m.count("pgjobs_jobs_finished_total{task=\"a\",status=\"expired\"}"), 1u);
  EXPECT_EQ(m["pgjobs_jobs_finished_total{task=\"a\",status=\"expired\"}"], 0);
  EXPECT_EQ(m.count("pgjobs_jobs_on_stale_workers{task=\"a\"}"), 1u);

  EXPECT_EQ(m["pgjobs_workers{state=\"alive\"}"], 1);
  EXPECT_EQ(m["pgjobs_workers{state=\"stale\"}"], 1);
  EXPECT_EQ(m["pgjobs_jobs_on_stale_workers{task=\"c\"}"], 1);
  EXPECT_EQ(m.count("pgjobs_jobs_on_stale_workers{task=\"d\"}"), 1u) << "known tasks start at 0";
  EXPECT_EQ(m["pgjobs_jobs_on_stale_workers{task=\"d\"}"], 0);

  EXPECT_GT(m["pgjobs_table_size_bytes{table=\"job_queue\"}"], 0);
  EXPECT_EQ(m.count("pgjobs_notification_queue_usage_ratio"), 1u);
  // The revision of build_info is the one --version prints: "jobs-exporter 0.1.0 (revision R)".
  ProcessResult version = RunProcess({kBin, "--version"});
  std::smatch revision;
  ASSERT_TRUE(std::regex_search(version.out, revision, std::regex(R"(\(revision ([^)]+)\))")))
      << version.out;
  EXPECT_NE(revision[1].str(), "");
  EXPECT_EQ(
      m["pgjobs_exporter_build_info{version=\"0.1.0\",revision=\"" + revision[1].str() + "\"}"], 1);
  EXPECT_GT(m["process_resident_memory_bytes"], 0);

  // Never double-counted: nothing finished since, so the counters stand still.
  auto again = Metrics();
  EXPECT_EQ(again["pgjobs_jobs_finished_total{task=\"e\",status=\"success\"}"], 1);
  EXPECT_EQ(again["pgjobs_job_attempts_count{task=\"e\"}"], 2);
  Sql("SELECT jobs.ack(job_id) FROM jobs.consume(1, ARRAY['a'])");
  auto after = Metrics();
  EXPECT_EQ(after["pgjobs_jobs_finished_total{task=\"a\",status=\"success\"}"], 1);
  EXPECT_EQ(after["pgjobs_jobs{task=\"a\",state=\"ready\"}"], 2);
}

// The stable part of a scrape: HELP and TYPE lines, and samples whose values do not depend on
// timing. Regenerate with PGJOBS_UPDATE_GOLDEN=1.
std::string StablePart(const std::string& text) {
  static const std::regex kVolatile(
      "^(process_|pgjobs_scrape_collector_duration_seconds|pgjobs_oldest_|pgjobs_expired_job_|"
      "pgjobs_table_|pgjobs_oldest_transaction|pgjobs_job_wait_seconds|pgjobs_job_run_seconds|"
      "pgjobs_notification_queue)");
  std::istringstream in(text);
  std::string out;
  for (std::string line; std::getline(in, line);) {
    const bool sample = !line.empty() && line[0] != '#';
    if (sample && std::regex_search(line, kVolatile)) continue;
    if (!sample && line.find("process_") != std::string::npos) continue;
    // The build's git revision changes with every commit.
    static const std::regex kRevision("revision=\"[^\"]*\"");
    out += std::regex_replace(line, kRevision, "revision=\"REVISION\"") + "\n";
  }
  return out;
}

TEST_F(ExporterTest, MetricsMatchTheGoldenFileAndPassPromtool) {
  Start();
  Metrics();
  Seed(*conn_);
  HttpResponse r = Scrape();
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
  const std::string golden_path = kTestdata + "/exporter_golden.prom";
  if (std::getenv("PGJOBS_UPDATE_GOLDEN") != nullptr)
    std::ofstream(golden_path) << StablePart(r.body);
  std::ifstream golden_file(golden_path);
  std::stringstream golden;
  golden << golden_file.rdbuf();
  EXPECT_EQ(StablePart(r.body), golden.str());

  const std::string scrape = WriteFile(dir_, "scrape.prom", r.body);
  ProcessResult lint = RunProcess({"/bin/sh", "-c", "promtool check metrics < " + scrape});
  EXPECT_EQ(lint.exit_code, 0) << lint.out << lint.err;
}

// Behind PgBouncer in transaction pooling, with two server connections for every client, the
// exposition is the golden one: no statement relies on a session (a session SET would land on
// a server connection the next statement may not get).
TEST_F(ExporterTest, ScrapesThroughPgBouncerInTransactionPoolingMatchTheGoldenFile) {
  PgBouncer bouncer(PgCluster::Shared().Port(), "transaction", 2);
  const std::string direct = dsn_;
  dsn_ = bouncer.Dsn(DsnValue(direct, "dbname"));
  Start("  pooling: transaction\n");
  // Other clients keep the pool's server connections busy and changing hands.
  std::vector<db::Connection> others;
  for (int i = 0; i < 4; ++i) others.emplace_back(db::ConnectOptions{.dsn = dsn_});
  EXPECT_EQ(Metrics()["pgjobs_up"], 1);
  Seed(*conn_);
  Sql("CREATE TABLE scratch (n int)");
  for (int scrape = 0; scrape < 5; ++scrape) {
    // A session setting of the exporter's (read-only, say) would reach these clients.
    for (auto& other : others) other.Execute("other", "INSERT INTO scratch VALUES (1)");
    HttpResponse r = Scrape();
    ASSERT_EQ(r.status, 200);
    std::ifstream golden_file(kTestdata + "/exporter_golden.prom");
    std::stringstream golden;
    golden << golden_file.rdbuf();
    EXPECT_EQ(StablePart(r.body), golden.str()) << "scrape " << scrape;
  }
  EXPECT_EQ(bouncer.Output().find("ERROR"), std::string::npos) << bouncer.Output();
}

TEST_F(ExporterTest, ADatabaseStoppedAndRestartedMidRunGivesUpZeroThenRecovers) {
  Start();
  EXPECT_EQ(Metrics()["pgjobs_up"], 1);
  conn_.reset();
  PgCluster::Shared().Stop();
  const auto start = Clock::now();
  HttpResponse down = Scrape({"X-Prometheus-Scrape-Timeout-Seconds: 3"});
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  PgCluster::Shared().Start();
  EXPECT_EQ(down.status, 200);
  EXPECT_LT(seconds, 3.0);
  auto m = ParseMetrics(down.body);
  EXPECT_EQ(m["pgjobs_up"], 0);
  EXPECT_EQ(m["pgjobs_scrape_collector_success{collector=\"queue\"}"], 0);
  EXPECT_EQ(m.count("pgjobs_jobs_published_total"), 0u);
  EXPECT_GT(m["process_open_fds"], 0) << "the exporter's own metrics still come";
  // Reconnects by itself.
  EXPECT_EQ(Metrics()["pgjobs_up"], 1);
  conn_.emplace(db::ConnectOptions{.dsn = dsn_});
  EXPECT_EQ(Int("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                "'jobs-exporter' AND datname = current_database()"),
            1);
}

TEST_F(ExporterTest, ALockedTableCostsItsCollectorAndTheScrapeAnswersInTime) {
  Start("scrape:\n  lock_timeout: 30s\n");
  Metrics();
  db::Connection locker(db::ConnectOptions{.dsn = dsn_});
  locker.Execute("lock", "BEGIN; LOCK TABLE jobs.pending_count IN ACCESS EXCLUSIVE MODE");
  const auto start = Clock::now();
  HttpResponse r = Scrape({"X-Prometheus-Scrape-Timeout-Seconds: 2"});
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_EQ(r.status, 200);
  EXPECT_GT(seconds, 1.2) << "the deadline is the header's 2 s minus the 0.5 s offset";
  EXPECT_LT(seconds, 2.0);
  auto m = ParseMetrics(r.body);
  EXPECT_EQ(m["pgjobs_up"], 1);
  EXPECT_EQ(m["pgjobs_scrape_collector_success{collector=\"queue\"}"], 0);
  // The query was cancelled, not left waiting, and the connection was reused.
  EXPECT_EQ(Int("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                "'jobs-exporter' AND state <> 'idle'"),
            0);
  EXPECT_EQ(Int("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                "'jobs-exporter' AND datname = current_database()"),
            1);
  locker.Execute("unlock", "COMMIT");
  auto ok = Metrics();
  EXPECT_EQ(ok["pgjobs_scrape_collector_success{collector=\"queue\"}"], 1);
}

TEST_F(ExporterTest, AFailedFinishedReadReBasesInsteadOfFailingForEver) {
  Start();
  Metrics();
  db::Connection locker(db::ConnectOptions{.dsn = dsn_});
  locker.Execute("lock", "BEGIN; LOCK TABLE jobs.job IN ACCESS EXCLUSIVE MODE");
  auto failed = Metrics();
  EXPECT_EQ(failed["pgjobs_scrape_collector_success{collector=\"finished\"}"], 0);
  EXPECT_EQ(failed["pgjobs_scrape_collector_success{collector=\"queue\"}"], 1);
  locker.Execute("unlock", "COMMIT");
  Metrics();  // re-bases at the present
  Sql("SELECT jobs.publish('t'); SELECT jobs.ack(job_id) FROM jobs.consume(1)");
  auto m = Metrics();
  EXPECT_EQ(m["pgjobs_scrape_collector_success{collector=\"finished\"}"], 1);
  EXPECT_EQ(m["pgjobs_finished_stats_resets_total"], 1);
  EXPECT_EQ(m["pgjobs_jobs_finished_total{task=\"t\",status=\"success\"}"], 1);
}

TEST_F(ExporterTest, ParallelScrapesShareOneCollection) {
  Start(
      "custom_metrics:\n"
      "  - name: test_slow\n"
      "    query: SELECT 1 AS v FROM pg_sleep(0.5)\n"
      "    value: v\n");
  Metrics();
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  std::vector<HttpResponse> responses(6);
  for (size_t i = 0; i < responses.size(); ++i) {
    threads.emplace_back([this, i, &responses] { responses[i] = Scrape(); });
  }
  for (auto& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  for (const auto& r : responses) {
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(ParseMetrics(r.body)["test_slow"], 1);
  }
  // Six collections one after another would take 3 s; shared ones take one or two.
  EXPECT_LT(seconds, 1.4);
}

TEST_F(ExporterTest, CustomMetricsCacheSuccessesOnlyAndFailAlone) {
  Sql("CREATE TABLE orders (state text, n int); INSERT INTO orders VALUES ('new', 2), ('paid', 5);"
      "GRANT SELECT ON orders TO PUBLIC");
  Start(
      "custom_metrics:\n"
      "  - name: app_orders\n"
      "    help: Orders by state.\n"
      "    query: SELECT state, n FROM orders\n"
      "    labels: [state]\n"
      "    value: n\n"
      "    min_interval: 1h\n"
      "  - name: app_broken\n"
      "    query: SELECT n FROM no_such_table\n"
      "    value: n\n");
  auto m = Metrics();
  EXPECT_EQ(m["app_orders{state=\"new\"}"], 2);
  EXPECT_EQ(m["app_orders{state=\"paid\"}"], 5);
  EXPECT_EQ(m["pgjobs_scrape_collector_success{collector=\"custom:app_orders\"}"], 1);
  EXPECT_EQ(m["pgjobs_scrape_collector_success{collector=\"custom:app_broken\"}"], 0);
  EXPECT_EQ(m["pgjobs_scrape_collector_success{collector=\"queue\"}"], 1);
  EXPECT_EQ(m["pgjobs_up"], 1);
  Sql("UPDATE orders SET n = 9");
  EXPECT_EQ(Metrics()["app_orders{state=\"new\"}"], 2) << "served from cache within min_interval";
}

TEST_F(ExporterTest, TheCardinalityGuardFoldsExtraTasksIntoOther) {
  Start("metrics:\n  max_tasks: 2\n");
  Sql("SELECT jobs.publish('t' || i) FROM generate_series(1, 4) i");
  auto m = Metrics();
  std::set<std::string> tasks;
  double ready = 0;
  for (const auto& [key, value] : m) {
    if (!key.starts_with("pgjobs_jobs{") || key.find("state=\"ready\"") == std::string::npos) {
      continue;
    }
    tasks.insert(key);
    ready += value;
  }
  EXPECT_EQ(tasks.size(), 3u);
  EXPECT_EQ(ready, 4);
  EXPECT_EQ(m["pgjobs_jobs{task=\"other\",state=\"ready\"}"], 2);
  EXPECT_EQ(m["pgjobs_tasks_folded_into_other"], 2);
}

TEST_F(ExporterTest, DeduplicatedPublishesAndRecurringJobsAreExported) {
  Start();
  Sql("SELECT jobs.publish('invoice', i_unique_key => 'invoice:42') FROM generate_series(1, 3);"
      "SELECT jobs.schedule('tick', '* * * * *', 'tick');"
      "SELECT jobs.schedule('nightly', '0 3 * * *', 'reports', NULL, 'Europe/Berlin');"
      "UPDATE jobs.schedules SET next_slot = date_trunc('minute', now()) WHERE name = 'tick';"
      "SELECT jobs.enqueue_schedules()");
  auto m = Metrics();
  EXPECT_EQ(m["pgjobs_scrape_collector_success{collector=\"schedules\"}"], 1);
  EXPECT_EQ(m["pgjobs_jobs_deduplicated_total{task=\"invoice\"}"], 2);
  EXPECT_EQ(m["pgjobs_jobs_deduplicated_total{task=\"tick\"}"], 0) << "every task in the queue";
  const double now = std::stod(Text("SELECT extract(epoch FROM now())"));
  EXPECT_NEAR(m["pgjobs_schedule_last_enqueued_timestamp_seconds{schedule=\"tick\"}"], now, 60);
  EXPECT_EQ(m.count("pgjobs_schedule_last_enqueued_timestamp_seconds{schedule=\"nightly\"}"), 0u)
      << "absent before its first job";
  EXPECT_EQ(m["pgjobs_schedule_next_run_timestamp_seconds{schedule=\"nightly\"}"],
            std::stod(Text("SELECT extract(epoch FROM jobs.cron_next('0 3 * * *', "
                           "'Europe/Berlin', now()))")));
  EXPECT_GT(m["pgjobs_schedule_next_run_timestamp_seconds{schedule=\"tick\"}"], now);
}

std::string BcryptHash(const std::string& password) {
  char salt[64];
  crypt_gensalt_rn("$2b$", 4, nullptr, 0, salt, sizeof salt);
  crypt_data data{};
  return crypt_r(password.c_str(), salt, &data);
}

TEST_F(ExporterTest, BasicAuthRefusesWrongCredentials) {
  const std::string web =
      WriteFile(dir_, "web.yml", "basic_auth_users:\n  prometheus: " + BcryptHash("s3cret") + "\n");
  Start("", {"--web.config.file=" + web});
  EXPECT_EQ(Scrape().status, 401);
  EXPECT_EQ(Scrape().headers["www-authenticate"], "Basic realm=\"pgjobs\"");
  EXPECT_EQ(Scrape({BasicAuthHeader("prometheus", "wrong")}).status, 401);
  EXPECT_EQ(Scrape({BasicAuthHeader("nobody", "s3cret")}).status, 401);
  EXPECT_EQ(Scrape({"Authorization: Basic !!!"}).status, 401);
  HttpResponse ok = Scrape({BasicAuthHeader("prometheus", "s3cret")});
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ParseMetrics(ok.body)["pgjobs_up"], 1);
  EXPECT_EQ(HttpGet(port_, "/-/healthy").status, 200) << "health checks need no credentials";
  EXPECT_EQ(HttpGet(port_, "/").status, 401);

  // SIGHUP re-reads the web config: new users, new headers, at once.
  WriteFile(dir_, "web.yml",
            "basic_auth_users:\n  grafana: " + BcryptHash("other") +
                "\nhttp_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n");
  exporter_->Signal(SIGHUP);
  ASSERT_TRUE(exporter_->WaitForOutput("web configuration reloaded")) << exporter_->Output();
  EXPECT_EQ(Scrape({BasicAuthHeader("prometheus", "s3cret")}).status, 401);
  HttpResponse reloaded = Scrape({BasicAuthHeader("grafana", "other")});
  EXPECT_EQ(reloaded.status, 200);
  EXPECT_EQ(reloaded.headers["x-content-type-options"], "nosniff");
}

// HTTPS with client certificates, checked with curl: the CA verifies the server, the server
// refuses a client without a certificate from its CA, and plain HTTP gets no answer.
TEST_F(ExporterTest, ServesHttpsAndVerifiesClientCertificates) {
  const TestCertificates certs = MakeTestCertificates(dir_);
  const std::string web = WriteFile(dir_, "web.yml",
                                    "tls_server_config:\n"
                                    "  cert_file: server.crt\n"  // relative to web.yml
                                    "  key_file: server.key\n"
                                    "  client_ca_file: " +
                                        certs.ca_cert +
                                        "\n"
                                        "  client_auth_type: RequireAndVerifyClientCert\n");
  Start("", {"--web.config.file=" + web});
  const std::string url = "https://127.0.0.1:" + std::to_string(port_) + "/metrics";
  ProcessResult with_cert =
      RunProcess({"/usr/bin/curl", "-sS", "--max-time", "10", "--cacert", certs.ca_cert, "--cert",
                  certs.client_cert, "--key", certs.client_key, url});
  EXPECT_EQ(with_cert.exit_code, 0) << with_cert.err;
  EXPECT_EQ(ParseMetrics(with_cert.out)["pgjobs_up"], 1) << with_cert.out;

  ProcessResult no_cert =
      RunProcess({"/usr/bin/curl", "-sS", "--max-time", "10", "--cacert", certs.ca_cert, url});
  EXPECT_NE(no_cert.exit_code, 0) << "a client without a certificate is refused";
  ProcessResult wrong_ca = RunProcess({"/usr/bin/curl", "-sS", "--max-time", "10", url});
  EXPECT_NE(wrong_ca.exit_code, 0) << "the server's certificate is not trusted by the system";
  EXPECT_EQ(HttpGet(port_, "/metrics", {}, 3000).status, 0) << "no plain-HTTP answer";
  // After all that, the server still serves.
  ProcessResult again =
      RunProcess({"/usr/bin/curl", "-sS", "--max-time", "10", "--cacert", certs.ca_cert, "--cert",
                  certs.client_cert, "--key", certs.client_key, url});
  EXPECT_EQ(again.exit_code, 0) << again.err;
}

// /probe?target=NAME: each database named in the configuration on its own connection, with its
// own pgjobs_up; nothing else can be probed, and /metrics keeps serving the default database.
TEST_F(ExporterTest, ProbeServesEachConfiguredDatabaseAndNothingElse) {
  const std::string orders = PgCluster::Shared().FreshDatabase();
  const std::string billing = PgCluster::Shared().FreshDatabase();
  {
    db::Connection o(db::ConnectOptions{.dsn = orders});
    o.Execute("jobs", "SELECT jobs.publish('ship') FROM generate_series(1, 3)");
    db::Connection b(db::ConnectOptions{.dsn = billing});
    b.Execute("jobs", "SELECT jobs.publish('invoice') FROM generate_series(1, 2)");
  }
  Start(
      "targets:\n"
      "  orders: {dsn: \"" +
      orders +
      "\"}\n"
      "  billing: {dsn: \"" +
      billing +
      "\"}\n"
      "  gone: {dsn: \"postgresql://postgres@127.0.0.1:1/none\", connect_timeout: 1s}\n");
  HttpResponse o = HttpGet(port_, "/probe?target=orders");
  ASSERT_EQ(o.status, 200) << o.body;
  auto om = ParseMetrics(o.body);
  EXPECT_EQ(om["pgjobs_up"], 1);
  EXPECT_EQ(om["pgjobs_jobs{task=\"ship\",state=\"ready\"}"], 3);
  EXPECT_EQ(om.count("pgjobs_jobs{task=\"invoice\",state=\"ready\"}"), 0u);
  EXPECT_EQ(o.body.find("process_"), std::string::npos) << "process metrics are /metrics' own";
  EXPECT_EQ(o.body.find("pgjobs_exporter_build_info"), std::string::npos);
  auto bm = ParseMetrics(HttpGet(port_, "/probe?target=billing").body);
  EXPECT_EQ(bm["pgjobs_jobs{task=\"invoice\",state=\"ready\"}"], 2);
  EXPECT_EQ(bm.count("pgjobs_jobs{task=\"ship\",state=\"ready\"}"), 0u);
  // A target whose database is down is 0 on its own; the others stay 1.
  auto gm = ParseMetrics(HttpGet(port_, "/probe?target=gone").body);
  EXPECT_EQ(gm["pgjobs_up"], 0);
  EXPECT_EQ(ParseMetrics(HttpGet(port_, "/probe?target=orders").body)["pgjobs_up"], 1);
  // /metrics: the default database (the test's), and the exporter's own metrics.
  auto m = Metrics();
  EXPECT_EQ(m["pgjobs_up"], 1);
  EXPECT_EQ(m.count("pgjobs_jobs{task=\"ship\",state=\"ready\"}"), 0u);
  EXPECT_GT(m["process_resident_memory_bytes"], 0);

  HttpResponse unknown = HttpGet(port_, "/probe?target=payroll");
  EXPECT_EQ(unknown.status, 400);
  EXPECT_EQ(unknown.body,
            "unknown target 'payroll': /probe serves only the databases named under targets: in "
            "the configuration (billing, gone, orders)\n");
  HttpResponse dsn = HttpGet(
      port_, "/probe?target=" + std::string("postgresql%3A%2F%2Fpostgres%40127.0.0.1%2Fpostgres"));
  EXPECT_EQ(dsn.status, 400) << "a DSN in the request is never used";
  HttpResponse missing = HttpGet(port_, "/probe");
  EXPECT_EQ(missing.status, 400);
  EXPECT_NE(missing.body.find("missing ?target=NAME"), std::string::npos);

  // A reload that drops a target stops serving it.
  WriteFile(dir_, "exporter.yaml",
            "database:\n  dsn: \"${TEST_DSN}\"\ntargets:\n  orders: {dsn: \"" + orders + "\"}\n");
  exporter_->Signal(SIGHUP);
  ASSERT_TRUE(exporter_->WaitForOutput("configuration reloaded")) << exporter_->Output();
  EXPECT_EQ(HttpGet(port_, "/probe?target=billing").status, 400);
  EXPECT_EQ(HttpGet(port_, "/probe?target=orders").status, 200);
}

TEST_F(ExporterTest, BadTlsSettingsAreRefusedWithTheFileAndTheReason) {
  auto check = [&](const std::string& web_yaml) {
    const std::string web = WriteFile(dir_, "web.yml", web_yaml);
    ProcessResult r =
        RunProcess({kBin, "--web.config.file=" + web, "--config.check"}, {"PGJOBS_DSN=" + dsn_});
    EXPECT_EQ(r.exit_code, 2) << r.out;
    return r.err;
  };
  EXPECT_EQ(check("tls_server_config:\n  cert_file: server.crt\n"),
            "jobs-exporter: " + dir_ + "/web.yml:2:3: tls_server_config: key_file is required\n");
  const std::string missing =
      check("tls_server_config:\n  cert_file: nowhere.crt\n  key_file: x\n");
  EXPECT_TRUE(missing.starts_with("jobs-exporter: " + dir_ +
                                  "/web.yml: tls_server_config.cert_file: cannot use " + dir_ +
                                  "/nowhere.crt: "))
      << missing;
  const TestCertificates certs = MakeTestCertificates(dir_);
  const std::string mismatch =
      check("tls_server_config:\n  cert_file: server.crt\n  key_file: client.key\n");
  EXPECT_TRUE(mismatch.starts_with("jobs-exporter: " + dir_ +
                                   "/web.yml: tls_server_config.key_file: cannot use " + dir_ +
                                   "/client.key: "))
      << mismatch;
  EXPECT_NE(mismatch.find("key values mismatch"), std::string::npos) << mismatch;
  EXPECT_EQ(check("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                  "  client_auth_type: RequireAndVerifyClientCert\n"),
            "jobs-exporter: " + dir_ +
                "/web.yml: tls_server_config.client_auth_type: RequireAndVerifyClientCert needs "
                "client_ca_file\n");
  EXPECT_NE(check("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                  "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n")
                .find("cipher_suites"),
            std::string::npos);
}

TEST_F(ExporterTest, SighupReloadsAndKeepsTheOldConfigOnError) {
  Start("custom_metrics:\n  - {name: test_first, query: SELECT 1 AS v, value: v}\n");
  EXPECT_EQ(Metrics()["test_first"], 1);
  WriteFile(dir_, "exporter.yaml",
            "database: {dsn: \"${TEST_DSN}\"}\n"
            "custom_metrics:\n  - {name: test_second, query: SELECT 2 AS v, value: v}\n");
  exporter_->Signal(SIGHUP);
  ASSERT_TRUE(exporter_->WaitForOutput("msg=\"configuration reloaded\"")) << exporter_->Output();
  auto m = Metrics();
  EXPECT_EQ(m.count("test_first"), 0u);
  EXPECT_EQ(m["test_second"], 2);
  WriteFile(dir_, "exporter.yaml", "database: {dsn: \"${TEST_DSN}\"}\nmetrics: {max_taks: 3}\n");
  exporter_->Signal(SIGHUP);
  ASSERT_TRUE(exporter_->WaitForOutput("configuration reload failed")) << exporter_->Output();
  EXPECT_NE(exporter_->Output().find("metrics.max_taks: unknown key (did you mean 'max_tasks'?)"),
            std::string::npos)
      << exporter_->Output();
  EXPECT_EQ(Metrics()["test_second"], 2);
}

// 500 idle connections and 100 slowloris clients: real scrapes still answer within a second.
TEST_F(ExporterTest, IdleAndSlowConnectionsDoNotStarveScrapes) {
  Start();
  HostileClients hostile(port_, 500, 100);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (int i = 0; i < 8; ++i) {
    const auto start = std::chrono::steady_clock::now();
    HttpResponse r = HttpGet(port_, "/metrics", {}, 5000);
    EXPECT_EQ(r.status, 200) << i;
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 1.0)
        << i;
    EXPECT_EQ(ParseMetrics(r.body)["pgjobs_up"], 1) << i;
  }
}

// A database backend that stops answering (SIGSTOP, a frozen host) cannot hold a scrape past
// its deadline; the next scrape reconnects.
TEST_F(ExporterTest, AScrapeAnswersByItsDeadlineWhenTheBackendStops) {
  Start();
  EXPECT_EQ(Metrics()["pgjobs_up"], 1);
  const long long backend =
      Int("SELECT pid FROM pg_stat_activity WHERE application_name = 'jobs-exporter'");
  ASSERT_EQ(kill(static_cast<pid_t>(backend), SIGSTOP), 0);
  const auto start = Clock::now();
  HttpResponse r = Scrape({"X-Prometheus-Scrape-Timeout-Seconds: 2"});
  const double took = std::chrono::duration<double>(Clock::now() - start).count();
  kill(static_cast<pid_t>(backend), SIGCONT);
  EXPECT_EQ(r.status, 200);
  EXPECT_LT(took, 2.0) << "the scrape's deadline is 2 s less the 0.5 s offset";
  EXPECT_EQ(ParseMetrics(r.body)["pgjobs_up"], 0) << "the database did not answer this scrape";
  EXPECT_EQ(Metrics()["pgjobs_up"], 1) << "a new connection answers";
  EXPECT_TRUE(exporter_->WaitForOutput("msg=\"cannot reach the database\"", 100))
      << exporter_->Output();
}

// Scrapes that share a collection report its truth: a second Prometheus with a shorter scrape
// timeout, arriving while a slow query runs for the first, must not see a made-up pgjobs_up 0.
TEST_F(ExporterTest, ParallelScrapesShareOneCollectionAndItsTruth) {
  Start(
      "custom_metrics:\n  - {name: test_slow, query: 'SELECT 1 AS v FROM pg_sleep(2)', value: v, "
      "timeout: 10s}\n");
  std::vector<std::thread> scrapers;
  std::vector<double> up(6, -1);
  for (int i = 0; i < 6; ++i) {
    scrapers.emplace_back([this, i, &up] {
      std::this_thread::sleep_for(std::chrono::milliseconds(i == 0 ? 0 : 200 + 30 * i));
      const std::string timeout = i == 0 ? "10" : "1.5";
      up[i] = ParseMetrics(
          Scrape({"X-Prometheus-Scrape-Timeout-Seconds: " + timeout}).body)["pgjobs_up"];
    });
  }
  for (auto& t : scrapers) t.join();
  for (int i = 0; i < 6; ++i) EXPECT_EQ(up[i], 1) << "scrape " << i;
  EXPECT_EQ(Metrics()["test_slow"], 1);
}

// A failing collector costs its metrics, and says why in the log, once per minute at most.
TEST_F(ExporterTest, AFailingCollectorIsLoggedWithItsError) {
  Start("custom_metrics:\n  - {name: test_broken, query: 'SELECT 1/0 AS v', value: v}\n");
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Metrics()["pgjobs_scrape_collector_success{collector=\"custom:test_broken\"}"], 0);
  }
  const std::string out = exporter_->Output();
  const std::string line =
      "level=warn msg=\"collector failed\" collector=custom:test_broken err=\"custom query: "
      "division by zero [SQLSTATE 22012]\"";
  EXPECT_NE(out.find(line), std::string::npos) << out;
  EXPECT_EQ(out.find(line, out.find(line) + 1), std::string::npos) << "logged once: " << out;
}

// A database that refuses the exporter is logged with the reason and the redacted DSN, once,
// not once per scrape.
TEST_F(ExporterTest, ARefusedConnectionIsLoggedWithItsReasonOnce) {
  const std::string path = WriteFile(
      dir_, "refused.yaml", "database:\n  dsn: \"" + dsn_ + " user=nobody password=hunter2\"\n");
  exporter_ = std::make_unique<BackgroundProcess>(
      std::vector<std::string>{kBin, "--config.file=" + path, "--web.listen-address=127.0.0.1:0"},
      std::vector<std::string>{});
  ASSERT_TRUE(exporter_->WaitForOutput("msg=listening")) << exporter_->Output();
  port_ = exporter_->LoggedInt("ports");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Metrics()["pgjobs_up"], 0);
  const std::string out = exporter_->Output();
  EXPECT_NE(out.find("level=warn msg=\"cannot reach the database\" collector=connect err=\""
                     "connecting to host=127.0.0.1"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("role \\\"nobody\\\" does not exist"), std::string::npos) << out;
  EXPECT_NE(out.find("password=***"), std::string::npos) << out;
  EXPECT_EQ(out.find("hunter2"), std::string::npos) << out;
  size_t lines = 0;
  for (size_t at = out.find("cannot reach the database"); at != std::string::npos;
       at = out.find("cannot reach the database", at + 1)) {
    ++lines;
  }
  EXPECT_EQ(lines, 1u) << out;
}

TEST_F(ExporterTest, MalformedRequestsAreRefusedWithoutHarm) {
  Start();
  EXPECT_NE(HttpRaw(port_, "THIS IS NOT HTTP\r\n\r\n").raw.find("HTTP/1.1 400 Bad Request\r\n"),
            std::string::npos);
  EXPECT_EQ(HttpRaw(port_, "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n").status,
            400);
  EXPECT_EQ(HttpRaw(port_, "GET / HTTP/1.1\r\nX: " + std::string(20000, 'a') + "\r\n\r\n").status,
            431);
  EXPECT_EQ(
      HttpRaw(port_, "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody").status,
      413);
  EXPECT_EQ(HttpRaw(port_, "GET /metrics HTTP/3\r\n\r\n").status, 505);
  EXPECT_EQ(HttpGet(port_, "/nowhere").status, 404);
  EXPECT_EQ(HttpRaw(port_,
                    "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                    "Connection: close\r\n\r\n")
                .status,
            405);
  EXPECT_EQ(Metrics()["pgjobs_up"], 1);
  EXPECT_EQ(HttpGet(port_, "/-/ready").status, 200);
  EXPECT_NE(HttpGet(port_, "/").body.find("<a href=\"/metrics\">"), std::string::npos);
  EXPECT_EQ(exporter_->Wait(100), -1000) << "still running";
}

TEST_F(ExporterTest, RunsWithNothingButTheDsnAndStopsOnSigterm) {
  BackgroundProcess p(
      {kBin, "--web.listen-address=127.0.0.1:0", "--web.telemetry-path=/m", "--log.format=json"},
      {"PGJOBS_DSN=" + dsn_});
  ASSERT_TRUE(p.WaitForOutput("\"msg\":\"listening\"")) << p.Output();
  const std::string out = p.Output();
  const int port = std::atoi(out.c_str() + out.find("\"ports\":\"") + 9);
  HttpResponse r = HttpGet(port, "/m");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(ParseMetrics(r.body)["pgjobs_up"], 1);
  p.Signal(SIGTERM);
  EXPECT_EQ(p.Wait(), 0);
}

struct BadConfig {
  std::string file;
  std::string message;  // after "jobs-exporter: <path>"
};

TEST(ExporterConfigCheck, BadConfigsAreRefusedWordForWord) {
  const std::vector<BadConfig> cases = {
      {"unknown_key.yaml", ":4:3: scrape.timout: unknown key (did you mean 'timeout'?)"},
      {"wrong_type.yaml", ":2:21: web.listen_addresses: expected a list of strings, got a map"},
      {"bad_duration.yaml",
       ":2:12: scrape.timeout: expected a duration such as 500ms, 30s or "
       "5m, up to 365d, got 'soon'"},
      {"bad_listen.yaml",
       ":2:21: web.listen_addresses: listen address '999.1.1.1:19476': expected an IP address "
       "such as 127.0.0.1 or [::1], or localhost, got '999.1.1.1'"},
      {"custom_own_name.yaml",
       ":2:12: custom_metrics[0].name: 'pgjobs_up' is a metric of the exporter's own; choose "
       "another name"},
      {"custom_labels_twice.yaml", ":2:58: custom_metrics[0].labels: label 'a' is listed twice"},
      {"bad_buckets.yaml",
       ":3:19: metrics.buckets.wait_seconds: expected ascending numbers, "
       "got 1 after 5"},
      {"custom_missing_value.yaml",
       ":2:5: custom_metrics[0].value: missing: name the column that holds the value"},
      {"unset_env.yaml", ":2:8: database.dsn: environment variable PGJOBS_TEST_UNSET is not set"},
      {"syntax.yaml", ":3:7: end of sequence flow not found"},
      {"target_without_dsn.yaml", ":2:11: targets.orders: dsn is required"},
      {"telemetry_probe.yaml",
       ":1:23: web.telemetry_path: /probe serves targets: choose another path"},
      {"target_bad_name.yaml",
       ":2:10: targets.a/b: a target name is used in URLs: no spaces, quotes, /, ?, &, # or %"},
      {"target_bad_dsn.yaml",
       ":2:17: targets.orders.dsn: connecting to host=h port: invalid DSN: missing \"=\" after "
       "\"port\" in connection info string"},
  };
  for (const BadConfig& c : cases) {
    const std::string path = kTestdata + "/exporter/" + c.file;
    ProcessResult r = RunProcess({kBin, "--config.check", "--config.file=" + path},
                                 {"PGJOBS_DSN=postgresql:///x"}, {"PGJOBS_TEST_UNSET"});
    EXPECT_EQ(r.exit_code, 2) << c.file;
    EXPECT_EQ(r.err, "jobs-exporter: " + path + c.message + "\n") << c.file;
  }
  ProcessResult good = RunProcess(
      {kBin, "--config.check",
       "--config.file=" + std::string(PGJOBS_SOURCE_DIR) + "/config/exporter.example.yaml"},
      {"PGJOBS_DSN=postgresql:///x"});
  EXPECT_EQ(good.exit_code, 0) << good.err;
  ProcessResult flag = RunProcess({kBin, "--config.check", "--web.listen-address=:http"},
                                  {"PGJOBS_DSN=postgresql:///x"});
  EXPECT_EQ(flag.err,
            "jobs-exporter: --web.listen-address: listen address ':http': expected a port from 0 "
            "to 65535, got 'http'\n");
  ProcessResult no_dsn = RunProcess({kBin, "--config.check"}, {}, {"PGJOBS_DSN"});
  EXPECT_EQ(no_dsn.err,
            "jobs-exporter: no database given: set database.dsn in --config.file or PGJOBS_DSN\n");
}

}  // namespace
}  // namespace pgjobs::testing
