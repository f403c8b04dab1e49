// SPDX-License-Identifier: Apache-2.0
// End to end with a real Prometheus: two databases, each with its jobs-exporter and a jobs-worker,
// and Prometheus scraping the four every second under job names of our choosing, with the alert
// rules. Every dashboard query must return data on a healthy system, and the expired-jobs,
// timeout and database-down alerts must become pending or firing with the labels of the
// database (or pool) in trouble, and never for the healthy one.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "pgjobs/db/connection.h"
#include "tests/harness/background_process.h"
#include "tests/harness/http_client.h"
#include "tests/harness/pg_cluster.h"
#include "tests/harness/tls_certificates.h"

namespace pgjobs::testing {
namespace {

using nlohmann::json;
const std::string kSource = PGJOBS_SOURCE_DIR;

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

std::string UrlEncode(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

// Debian's Prometheus with DIR/prometheus.yml, its data in DIR/data, on 127.0.0.1:PORT.
std::unique_ptr<BackgroundProcess> StartPrometheus(const std::string& dir, int port) {
  return std::make_unique<BackgroundProcess>(
      std::vector<std::string>{"/usr/bin/prometheus", "--config.file=" + dir + "/prometheus.yml",
                               "--storage.tsdb.path=" + dir + "/data",
                               "--web.listen-address=127.0.0.1:" + std::to_string(port)},
      std::vector<std::string>{});
}

// The first sample of an instant query, or -1 when it returns nothing.
double QueryValue(int port, const std::string& query) {
  const json r = json::parse(HttpGet(port, "/api/v1/query?query=" + UrlEncode(query)).body);
  const auto& result = r["data"]["result"];
  return result.empty() ? -1.0 : std::stod(result[0]["value"][1].get<std::string>());
}

std::string Fill(std::string expr) {
  expr = std::regex_replace(expr, std::regex(R"(\$__rate_interval|\$__range)"), "1m");
  return std::regex_replace(expr, std::regex(R"(\$\w+)"), ".*");
}

// The label sets of the alerts named `name`, pending or firing, from Prometheus' API.
std::vector<json> Alerts(int port, const std::string& name) {
  HttpResponse r = HttpGet(port, "/api/v1/alerts");
  std::vector<json> alerts;
  if (r.status != 200) return alerts;
  // Keep the document alive: a range-for over a member of a temporary would dangle.
  const json body = json::parse(r.body);
  for (const auto& alert : body["data"]["alerts"]) {
    if (alert["labels"]["alertname"] == name) alerts.push_back(alert["labels"]);
  }
  return alerts;
}

// Waits until an alert named `name` carries `label`=`value`; returns every alert of that name.
std::vector<json> WaitForAlert(int port, const std::string& name, const std::string& label,
                               const std::string& value, int seconds) {
  std::vector<json> alerts;
  for (int i = 0; i < seconds * 5; ++i) {
    alerts = Alerts(port, name);
    for (const json& labels : alerts) {
      if (labels.value(label, "") == value) return alerts;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return alerts;
}

// Whether any alert of `alerts` has `label`=`value`.
bool AnyWith(const std::vector<json>& alerts, const std::string& label, const std::string& value) {
  for (const json& labels : alerts) {
    if (labels.value(label, "") == value) return true;
  }
  return false;
}

// One database with its exporter and worker.
struct Site {
  std::string dsn;
  std::unique_ptr<BackgroundProcess> exporter, worker;
  std::string exporter_target, worker_target;
};

Site StartSite(const std::string& dir, const std::string& name, const std::string& tasks) {
  Site site;
  site.dsn = PgCluster::Shared().FreshDatabase();
  site.exporter = std::make_unique<BackgroundProcess>(
      std::vector<std::string>{PGJOBS_EXPORTER_BIN, "--web.listen-address=127.0.0.1:0"},
      std::vector<std::string>{"PGJOBS_DSN=" + site.dsn});
  EXPECT_TRUE(site.exporter->WaitForOutput("msg=listening")) << site.exporter->Output();
  const std::string config = dir + "/worker-" + name + ".yaml";
  std::ofstream(config) << "database: {dsn: \"" << site.dsn << "\"}\n"
                        << "worker: {concurrency: 4, poll_interval: 60s}\n"
                        << "tasks:\n"
                        << tasks;
  site.worker = std::make_unique<BackgroundProcess>(
      std::vector<std::string>{PGJOBS_WORKER_BIN, "--config.file=" + config,
                               "--web.listen-address=127.0.0.1:0"},
      std::vector<std::string>{});
  EXPECT_TRUE(site.worker->WaitForOutput("msg=registered")) << site.worker->Output();
  site.exporter_target = "127.0.0.1:" + std::to_string(site.exporter->LoggedInt("ports"));
  site.worker_target = "127.0.0.1:" + std::to_string(site.worker->LoggedInt("ports"));
  return site;
}

TEST(PrometheusEndToEnd, EveryDashboardQueryHasDataAndTheAlertsFireForTheRightDatabase) {
  char tmpl[] = "/tmp/pgjobs-prometheus-XXXXXX";
  const std::string dir = mkdtemp(tmpl);

  // "orders" is in trouble: failures, timeouts, expired jobs. "billing" is healthy.
  Site orders = StartSite(dir, "orders",
                          "  ok: {command: [/bin/sh, -c, 'sleep 0.05']}\n"
                          "  fail: {command: [/bin/sh, -c, 'exit 1']}\n"
                          "  slow: {command: [/bin/sh, -c, 'sleep 5']}\n");
  Site billing = StartSite(dir, "billing",
                           "  ok: {command: [/bin/sh, -c, 'sleep 0.05']}\n"
                           "  fail: {command: [/bin/sh, -c, 'exit 1']}\n"
                           "  slow: {command: [/bin/sh, -c, 'sleep 5']}\n");

  // Job names as annotation discovery makes them: both exporters under one job, told apart by
  // instance; the workers in two pools.
  const int prometheus_port = FreePort();
  std::ofstream(dir + "/prometheus.yml")
      << "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
      << "rule_files: [\"" << kSource << "/config/prometheus/alerts.yml\"]\n"
      << "scrape_configs:\n"
      << "  - job_name: kubernetes-pods\n    static_configs: [{targets: [\""
      << orders.exporter_target << "\", \"" << billing.exporter_target << "\"]}]\n"
      << "  - job_name: orders-workers\n    static_configs: [{targets: [\"" << orders.worker_target
      << "\"]}]\n"
      << "  - job_name: billing-workers\n    static_configs: [{targets: [\""
      << billing.worker_target << "\"]}]\n";
  auto prometheus = StartPrometheus(dir, prometheus_port);
  ASSERT_TRUE(prometheus->WaitForOutput("Server is ready to receive web requests", 30000))
      << prometheus->Output();

  // Prometheus hands targets to its scrapers in 5 s batches. The exporter's counters count from
  // its first scrape, so wait until every target has been scraped before running jobs.
  for (int i = 0; i < 100; ++i) {
    const json up = json::parse(HttpGet(prometheus_port, "/api/v1/query?query=up").body);
    if (up["data"]["result"].size() == 4) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }

  db::Connection conn(db::ConnectOptions{.dsn = orders.dsn});
  db::Connection healthy(db::ConnectOptions{.dsn = billing.dsn});
  // Jobs that succeed, fail after a retry, and time out; then one that finishes as expired.
  conn.Execute("jobs", R"sql(
    SELECT jobs.publish('ok') FROM generate_series(1, 10);
    SELECT jobs.publish('fail', i_max_retries => 1) FROM generate_series(1, 2);
    SELECT jobs.publish('slow', i_timeout => 0.3, i_max_retries => 0);
  )sql");
  healthy.Execute("jobs", "SELECT jobs.publish('ok') FROM generate_series(1, 10)");
  for (int i = 0; i < 200; ++i) {
    if (conn.Query("count", "SELECT count(*) FROM jobs.job").Int(0, 0) == 13 &&
        healthy.Query("count", "SELECT count(*) FROM jobs.job").Int(0, 0) == 10) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(conn.Query("count", "SELECT count(*) FROM jobs.job").Int(0, 0), 13);
  ASSERT_EQ(healthy.Query("count", "SELECT count(*) FROM jobs.job").Int(0, 0), 10);
  conn.Execute("an expired job", R"sql(
    SELECT jobs.publish('orphan_done', i_timeout => 0.1, i_max_retries => 0);
    SELECT count(*) FROM jobs.consume(1, ARRAY['orphan_done']);
    SELECT pg_sleep(0.2);
    SELECT jobs.expire();
  )sql");
  // A worker that died holding a job, which now runs past its timeout.
  conn.Execute("a dead worker's job", R"sql(
    SELECT jobs.register_worker('ghost', 'gone', 1, 1, interval '1 millisecond');
    SELECT jobs.publish('orphan', i_timeout => 0.2);
    SELECT count(*) FROM jobs.consume(1, ARRAY['orphan'],
                                      (SELECT max(worker_id) FROM jobs.worker));
    SELECT jobs.publish('waiting') FROM generate_series(1, 3);
  )sql");
  // A recurring job that has queued one: the dashboard's recurring-jobs row.
  conn.Execute("a recurring job", R"sql(
    SELECT jobs.schedule('reports', '0 3 * * *', 'waiting', NULL, 'Europe/Berlin');
    UPDATE jobs.schedules SET next_slot = clock_timestamp() - interval '1 s';
    SELECT jobs.enqueue_schedules();
  )sql");
  std::this_thread::sleep_for(std::chrono::seconds(6));  // scrapes, rate windows, rule runs

  std::vector<std::string> empty;
  int queries = 0;
  for (const char* file : {"pgjobs-queue.json", "pgjobs-workers.json"}) {
    std::ifstream in(kSource + "/grafana/dashboards/" + file);
    const json dashboard = json::parse(in);
    for (const auto& panel : dashboard["panels"]) {
      for (const auto& target : panel["targets"]) {
        const std::string expr = Fill(target["expr"]);
        HttpResponse r = HttpGet(prometheus_port, "/api/v1/query?query=" + UrlEncode(expr));
        ++queries;
        const json body = json::parse(r.body.empty() ? "{}" : r.body);
        if (r.status != 200 || body["status"] != "success" || body["data"]["result"].empty()) {
          empty.push_back(std::string(file) + ": " + panel["title"].get<std::string>() + ": " +
                          expr + " -> " + r.body.substr(0, 200));
        }
      }
    }
  }
  EXPECT_GE(queries, 60);
  EXPECT_TRUE(empty.empty()) << "queries without data:\n"
                             << [&] {
                                  std::string s;
                                  for (const auto& e : empty) s += e + "\n";
                                  return s;
                                }();

  // The alerts of "orders", with its labels; none for "billing".
  std::vector<json> expiring =
      WaitForAlert(prometheus_port, "PgjobsJobsExpiring", "instance", orders.exporter_target, 10);
  EXPECT_TRUE(AnyWith(expiring, "instance", orders.exporter_target))
      << HttpGet(prometheus_port, "/api/v1/alerts").body;
  EXPECT_TRUE(AnyWith(expiring, "job", "kubernetes-pods"));
  EXPECT_FALSE(AnyWith(expiring, "instance", billing.exporter_target));
  std::vector<json> timing_out =
      WaitForAlert(prometheus_port, "PgjobsJobsTimingOut", "job", "orders-workers", 10);
  EXPECT_TRUE(AnyWith(timing_out, "task", "slow"))
      << HttpGet(prometheus_port, "/api/v1/alerts").body;
  EXPECT_FALSE(AnyWith(timing_out, "job", "billing-workers"));
  std::vector<json> stale = WaitForAlert(prometheus_port, "PgjobsJobsOnStaleWorkers", "instance",
                                         orders.exporter_target, 10);
  EXPECT_TRUE(AnyWith(stale, "instance", orders.exporter_target));
  EXPECT_TRUE(Alerts(prometheus_port, "PgjobsDatabaseUnreachable").empty());
  EXPECT_TRUE(Alerts(prometheus_port, "PgjobsExporterAbsent").empty());

  // Only billing's database goes away: no new connections, and its sessions ended.
  const std::string billing_db(healthy.Query("db", "SELECT current_database()").Text(0, 0));
  {
    db::Connection admin(db::ConnectOptions{.dsn = orders.dsn});
    admin.Execute("close billing",
                  "ALTER DATABASE \"" + billing_db + "\" WITH ALLOW_CONNECTIONS false");
    admin.Query("end its sessions",
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                {billing_db});
  }
  std::vector<json> unreachable = WaitForAlert(prometheus_port, "PgjobsDatabaseUnreachable",
                                               "instance", billing.exporter_target, 20);
  std::vector<json> worker_down = WaitForAlert(prometheus_port, "PgjobsWorkerDatabaseDown",
                                               "instance", billing.worker_target, 20);
  EXPECT_TRUE(AnyWith(unreachable, "instance", billing.exporter_target))
      << HttpGet(prometheus_port, "/api/v1/alerts").body;
  EXPECT_FALSE(AnyWith(unreachable, "instance", orders.exporter_target));
  EXPECT_TRUE(AnyWith(worker_down, "job", "billing-workers"))
      << HttpGet(prometheus_port, "/api/v1/alerts").body;
  EXPECT_FALSE(AnyWith(worker_down, "job", "orders-workers"));
  {
    db::Connection admin(db::ConnectOptions{.dsn = orders.dsn});
    admin.Execute("reopen billing",
                  "ALTER DATABASE \"" + billing_db + "\" WITH ALLOW_CONNECTIONS true");
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

// Prometheus scrapes both binaries over HTTPS, checking their certificate against our CA and
// showing its own client certificate, which the binaries require.
TEST(PrometheusEndToEnd, ScrapesBothBinariesOverHttpsWithClientCertificates) {
  char tmpl[] = "/tmp/pgjobs-prometheus-tls-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const TestCertificates certs = MakeTestCertificates(dir);
  std::ofstream(dir + "/web.yml") << "tls_server_config:\n"
                                  << "  cert_file: " << certs.server_cert << "\n"
                                  << "  key_file: " << certs.server_key << "\n"
                                  << "  client_ca_file: " << certs.ca_cert << "\n"
                                  << "  client_auth_type: RequireAndVerifyClientCert\n";
  const std::string dsn = PgCluster::Shared().FreshDatabase();
  BackgroundProcess exporter({PGJOBS_EXPORTER_BIN, "--web.listen-address=127.0.0.1:0",
                              "--web.config.file=" + dir + "/web.yml"},
                             {"PGJOBS_DSN=" + dsn});
  ASSERT_TRUE(exporter.WaitForOutput("msg=listening")) << exporter.Output();
  std::ofstream(dir + "/worker.yaml") << "database: {dsn: \"" << dsn << "\"}\n"
                                      << "tasks:\n  ok: {command: [/bin/true]}\n";
  BackgroundProcess worker(
      {PGJOBS_WORKER_BIN, "--config.file=" + dir + "/worker.yaml",
       "--web.listen-address=127.0.0.1:0", "--web.config.file=" + dir + "/web.yml"},
      {});
  ASSERT_TRUE(worker.WaitForOutput("msg=registered")) << worker.Output();

  const int prometheus_port = FreePort();
  const std::string tls = "    scheme: https\n    tls_config: {ca_file: \"" + certs.ca_cert +
                          "\", cert_file: \"" + certs.client_cert + "\", key_file: \"" +
                          certs.client_key + "\"}\n";
  std::ofstream(dir + "/prometheus.yml")
      << "global: {scrape_interval: 1s}\n"
      << "scrape_configs:\n"
      << "  - job_name: pgjobs-exporter\n"
      << tls << "    static_configs: [{targets: [\"127.0.0.1:" << exporter.LoggedInt("ports")
      << "\"]}]\n"
      << "  - job_name: pgjobs-worker\n"
      << tls << "    static_configs: [{targets: [\"127.0.0.1:" << worker.LoggedInt("ports")
      << "\"]}]\n";
  auto prometheus = StartPrometheus(dir, prometheus_port);
  ASSERT_TRUE(prometheus->WaitForOutput("Server is ready to receive web requests", 30000))
      << prometheus->Output();
  auto value = [&](const std::string& query) { return QueryValue(prometheus_port, query); };
  double scraped = 0;
  for (int i = 0; i < 150 && scraped < 2; ++i) {
    scraped = value("sum(up)");
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ(scraped, 2) << HttpGet(prometheus_port, "/api/v1/targets").body;
  EXPECT_EQ(value("pgjobs_up"), 1);
  EXPECT_EQ(value("count(pgjobs_worker_build_info)"), 1);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

// config/prometheus/prometheus.multi-target.example.yml, as shipped (only the exporter's address
// changed): each database becomes a target of its own, with its name as the instance label.
TEST(PrometheusEndToEnd, TheMultiTargetExampleScrapesEachDatabaseUnderItsName) {
  char tmpl[] = "/tmp/pgjobs-prometheus-probe-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string orders = PgCluster::Shared().FreshDatabase();
  const std::string billing = PgCluster::Shared().FreshDatabase();
  db::Connection(db::ConnectOptions{.dsn = billing})
      .Execute("jobs", "SELECT jobs.publish('invoice') FROM generate_series(1, 2)");
  std::ofstream(dir + "/exporter.yaml") << "database: {dsn: \"" << orders << "\"}\n"
                                        << "targets:\n"
                                        << "  orders: {dsn: \"" << orders << "\"}\n"
                                        << "  billing: {dsn: \"" << billing << "\"}\n";
  BackgroundProcess exporter({PGJOBS_EXPORTER_BIN, "--web.listen-address=127.0.0.1:0",
                              "--config.file=" + dir + "/exporter.yaml"},
                             {});
  ASSERT_TRUE(exporter.WaitForOutput("msg=listening")) << exporter.Output();
  std::ifstream in(kSource + "/config/prometheus/prometheus.multi-target.example.yml");
  std::string example((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  example = std::regex_replace(example, std::regex("127\\.0\\.0\\.1:9467"),
                               "127.0.0.1:" + std::to_string(exporter.LoggedInt("ports")));
  const int prometheus_port = FreePort();
  std::ofstream(dir + "/prometheus.yml") << "global: {scrape_interval: 1s}\n" << example;
  auto prometheus = StartPrometheus(dir, prometheus_port);
  ASSERT_TRUE(prometheus->WaitForOutput("Server is ready to receive web requests", 30000))
      << prometheus->Output();
  auto value = [&](const std::string& query) { return QueryValue(prometheus_port, query); };
  const std::string both =
      R"(count(pgjobs_up{job="pgjobs-databases",instance=~"orders|billing"} == 1))";
  // The two scrape jobs start at their own offsets: wait for the first scrape of each.
  const std::string own = R"(count(pgjobs_exporter_build_info{job="pgjobs-exporter"}))";
  for (int i = 0; i < 150 && (value(both) < 2 || value(own) < 1); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ(value(both), 2) << HttpGet(prometheus_port, "/api/v1/targets").body;
  EXPECT_EQ(value(R"(sum(pgjobs_jobs{instance="billing",task="invoice",state="ready"}))"), 2);
  EXPECT_EQ(value(R"(count(pgjobs_jobs{instance="orders",task="invoice"}))"), -1)
      << "each database's jobs under its own name";
  EXPECT_EQ(value(own), 1) << "the exporter's own metrics under its own job";
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

}  // namespace
}  // namespace pgjobs::testing
