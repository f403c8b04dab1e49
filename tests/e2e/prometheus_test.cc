// End to end with a real Prometheus: PostgreSQL, jobs-exporter, jobs-worker and Prometheus
// scraping both every second with the alert rules; every dashboard query must return data, and
// the expired-jobs and database-down alerts must become pending or firing.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "pgjobs/db/connection.h"
#include "tests/harness/background_process.h"
#include "tests/harness/http_client.h"
#include "tests/harness/pg_cluster.h"

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

std::string Fill(std::string expr) {
  expr = std::regex_replace(expr, std::regex(R"(\$__rate_interval)"), "1m");
  return std::regex_replace(expr, std::regex(R"(\$task|\$instance)"), ".*");
}

// The states of the alerts named `name` (pending, firing), from Prometheus' API.
std::vector<std::string> AlertStates(int port, const std::string& name) {
  HttpResponse r = HttpGet(port, "/api/v1/alerts");
  std::vector<std::string> states;
  if (r.status != 200) return states;
  // Keep the document alive: a range-for over a member of a temporary would dangle.
  const json body = json::parse(r.body);
  for (const auto& alert : body["data"]["alerts"]) {
    if (alert["labels"]["alertname"] == name) states.push_back(alert["state"]);
  }
  return states;
}

bool WaitForAlert(int port, const std::string& name, int seconds) {
  for (int i = 0; i < seconds * 5; ++i) {
    if (!AlertStates(port, name).empty()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return false;
}

TEST(PrometheusEndToEnd, EveryDashboardQueryHasDataAndTheAlertsFire) {
  const std::string dsn = PgCluster::Shared().FreshDatabase();
  db::Connection conn(db::ConnectOptions{.dsn = dsn});
  char tmpl[] = "/tmp/pgjobs-prometheus-XXXXXX";
  const std::string dir = mkdtemp(tmpl);

  BackgroundProcess exporter({PGJOBS_EXPORTER_BIN, "--web.listen-address=127.0.0.1:0"},
                             {"PGJOBS_DSN=" + dsn});
  ASSERT_TRUE(exporter.WaitForOutput("msg=listening")) << exporter.Output();
  std::ofstream(dir + "/worker.yaml") << "database: {dsn: \"" << dsn << "\"}\n"
                                      << "worker: {concurrency: 4, poll_interval: 60s}\n"
                                      << "tasks:\n"
                                      << "  ok: {command: [/bin/sh, -c, 'sleep 0.05']}\n"
                                      << "  fail: {command: [/bin/sh, -c, 'exit 1']}\n"
                                      << "  slow: {command: [/bin/sh, -c, 'sleep 5']}\n";
  BackgroundProcess worker({PGJOBS_WORKER_BIN, "--config.file=" + dir + "/worker.yaml",
                            "--web.listen-address=127.0.0.1:0"},
                           {});
  ASSERT_TRUE(worker.WaitForOutput("msg=registered")) << worker.Output();

  const int prometheus_port = FreePort();
  std::ofstream(dir + "/prometheus.yml")
      << "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
      << "rule_files: [\"" << kSource << "/config/prometheus/alerts.yml\"]\n"
      << "scrape_configs:\n"
      << "  - job_name: pgjobs-exporter\n    static_configs: [{targets: [\"127.0.0.1:"
      << exporter.LoggedInt("ports") << "\"]}]\n"
      << "  - job_name: pgjobs-worker\n    static_configs: [{targets: [\"127.0.0.1:"
      << worker.LoggedInt("ports") << "\"]}]\n";
  BackgroundProcess prometheus(
      {"/usr/bin/prometheus", "--config.file=" + dir + "/prometheus.yml",
       "--storage.tsdb.path=" + dir + "/data",
       "--web.listen-address=127.0.0.1:" + std::to_string(prometheus_port)},
      {});
  ASSERT_TRUE(prometheus.WaitForOutput("Server is ready to receive web requests", 30000))
      << prometheus.Output();

  // Prometheus hands targets to its scrapers in 5 s batches. The exporter's counters count from
  // its first scrape, so wait until both targets have been scraped before running jobs.
  for (int i = 0; i < 100; ++i) {
    const json up = json::parse(HttpGet(prometheus_port, "/api/v1/query?query=up").body);
    if (up["data"]["result"].size() == 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }

  // Jobs that succeed, fail after a retry, and time out; then one that finishes as expired.
  conn.Execute("jobs", R"sql(
    SELECT jobs.publish('ok') FROM generate_series(1, 10);
    SELECT jobs.publish('fail', i_max_retries => 1) FROM generate_series(1, 2);
    SELECT jobs.publish('slow', i_timeout => 0.3, i_max_retries => 0);
  )sql");
  for (int i = 0; i < 200; ++i) {
    if (conn.Query("count", "SELECT count(*) FROM jobs.job").Int(0, 0) == 13) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(conn.Query("count", "SELECT count(*) FROM jobs.job").Int(0, 0), 13);
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
  EXPECT_GE(queries, 30);
  EXPECT_TRUE(empty.empty()) << "queries without data:\n"
                             << [&] {
                                  std::string s;
                                  for (const auto& e : empty) s += e + "\n";
                                  return s;
                                }();

  EXPECT_TRUE(WaitForAlert(prometheus_port, "PgjobsJobsExpiring", 10))
      << HttpGet(prometheus_port, "/api/v1/alerts").body;
  EXPECT_TRUE(WaitForAlert(prometheus_port, "PgjobsJobsOnStaleWorkers", 10));
  EXPECT_TRUE(AlertStates(prometheus_port, "PgjobsDatabaseUnreachable").empty());

  PgCluster::Shared().Stop();
  const bool database_down = WaitForAlert(prometheus_port, "PgjobsDatabaseUnreachable", 15);
  const bool worker_database_down = WaitForAlert(prometheus_port, "PgjobsWorkerDatabaseDown", 15);
  PgCluster::Shared().Start();
  EXPECT_TRUE(database_down) << HttpGet(prometheus_port, "/api/v1/alerts").body;
  EXPECT_TRUE(worker_database_down);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

}  // namespace
}  // namespace pgjobs::testing
