// SPDX-License-Identifier: Apache-2.0
// The Grafana dashboards: structure Grafana imports, a query and a description on every panel,
// and every query valid PromQL (checked by promtool as recording rules).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "tests/harness/process.h"

namespace pgjobs::testing {
namespace {

using nlohmann::json;
const std::string kDashboards = std::string(PGJOBS_SOURCE_DIR) + "/grafana/dashboards/";

json Load(const std::string& name) {
  std::ifstream in(kDashboards + name);
  return json::parse(in);  // throws on invalid JSON
}

/// A dashboard query with its template variables filled in as Prometheus would see them.
std::string Fill(std::string expr) {
  expr = std::regex_replace(expr, std::regex(R"(\$__rate_interval|\$__range)"), "1m");
  expr = std::regex_replace(expr, std::regex(R"(\$\w+)"), ".*");
  return expr;
}

std::vector<std::string> Queries(const json& dashboard) {
  std::vector<std::string> out;
  for (const auto& panel : dashboard["panels"]) {
    for (const auto& target : panel["targets"]) out.push_back(target["expr"]);
  }
  return out;
}

class DashboardTest : public ::testing::TestWithParam<std::string> {};

TEST_P(DashboardTest, HasTheStructureGrafanaImports) {
  const json d = Load(GetParam());
  EXPECT_TRUE(d["uid"].is_string());
  EXPECT_TRUE(d["title"].get<std::string>().starts_with("pgjobs: "));
  ASSERT_EQ(d["__inputs"].size(), 1u);
  EXPECT_EQ(d["__inputs"][0]["name"], "DS_PROMETHEUS");
  EXPECT_EQ(d["__inputs"][0]["pluginId"], "prometheus");
  std::set<std::string> variables;
  for (const auto& v : d["templating"]["list"]) variables.insert(v["name"].get<std::string>());
  for (const char* name : {"datasource", "job", "instance", "task"}) {
    EXPECT_TRUE(variables.contains(name)) << "no variable " << name;
  }
  ASSERT_EQ(d["links"].size(), 1u) << "a link to the other dashboard";
  EXPECT_TRUE(d["links"][0]["url"].get<std::string>().starts_with("/d/pgjobs-"));
}

// One database (or pool, or worker) at a time: a query that ignored a variable would sum every
// database into one line.
TEST_P(DashboardTest, EveryQueryFiltersByJobAndInstance) {
  const json d = Load(GetParam());
  for (const auto& p : d["panels"]) {
    for (const auto& t : p["targets"]) {
      const std::string expr = t["expr"];
      EXPECT_NE(expr.find(R"(job=~"$job")"), std::string::npos) << p["title"] << ": " << expr;
      EXPECT_NE(expr.find(R"(instance=~"$instance")"), std::string::npos)
          << p["title"] << ": " << expr;
    }
  }
}

TEST_P(DashboardTest, OpensWithARowOfStatsAndHasATableOfTheWorstTasksOrWorkers) {
  const json d = Load(GetParam());
  int stats_on_top = 0;
  for (const auto& p : d["panels"]) {
    if (p["gridPos"]["y"] == 0) {
      EXPECT_EQ(p["type"], "stat") << p["title"];
      ++stats_on_top;
    }
  }
  EXPECT_GE(stats_on_top, 4);
  if (GetParam() == "pgjobs-queue.json") {
    bool worst_tasks = false;
    for (const auto& p : d["panels"]) {
      worst_tasks |= p["type"] == "table" && p["targets"][0]["expr"].get<std::string>().find(
                                                 "topk(10") != std::string::npos;
    }
    EXPECT_TRUE(worst_tasks) << "a table of the tasks with most failures";
  }
}

TEST_P(DashboardTest, EveryPanelHasAQueryADescriptionAUnitAndThresholds) {
  const json d = Load(GetParam());
  ASSERT_GE(d["panels"].size(), 10u);
  std::set<int> ids;
  for (const auto& p : d["panels"]) {
    const std::string title = p["title"];
    EXPECT_TRUE(ids.insert(p["id"].get<int>()).second) << "duplicate id in " << title;
    EXPECT_FALSE(p["description"].get<std::string>().empty()) << title;
    EXPECT_TRUE(p["fieldConfig"]["defaults"]["unit"].is_string()) << title;
    EXPECT_TRUE(p["fieldConfig"]["defaults"]["thresholds"]["steps"].is_array()) << title;
    EXPECT_EQ(p["datasource"]["uid"], "${datasource}") << title;
    ASSERT_FALSE(p["targets"].empty()) << title;
    for (const auto& t : p["targets"]) {
      EXPECT_FALSE(t["expr"].get<std::string>().empty()) << title;
      EXPECT_EQ(t["datasource"]["uid"], "${datasource}") << title;
    }
  }
}

TEST_P(DashboardTest, EveryQueryParsesAsPromQL) {
  const json d = Load(GetParam());
  char dir[] = "/tmp/pgjobs-dashboard-XXXXXX";
  const std::string rules = std::string(mkdtemp(dir)) + "/rules.yml";
  {
    std::ofstream out(rules);
    out << "groups:\n  - name: dashboard\n    rules:\n";
    int n = 0;
    for (const std::string& expr : Queries(d)) {
      out << "      - record: dashboard_query_" << ++n << "\n        expr: " << json(Fill(expr))
          << "\n";
    }
  }
  ProcessResult r = RunProcess({"/usr/bin/promtool", "check", "rules", rules});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("SUCCESS: " + std::to_string(Queries(d).size()) + " rules found"),
            std::string::npos)
      << r.out;
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

// The committed rules and dashboards are what mixin/ generates (mixin/generate --check).
TEST(Mixin, GeneratesTheCommittedRulesAndDashboards) {
  ProcessResult r = RunProcess({std::string(PGJOBS_SOURCE_DIR) + "/mixin/generate", "--check"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
}

INSTANTIATE_TEST_SUITE_P(Dashboards, DashboardTest,
                         ::testing::Values("pgjobs-queue.json", "pgjobs-workers.json"));

TEST(AlertRules, PassPromtoolCheckAndTheirUnitTests) {
  const std::string root = PGJOBS_SOURCE_DIR;
  ProcessResult check =
      RunProcess({"/usr/bin/promtool", "check", "rules", root + "/config/prometheus/alerts.yml"});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  ProcessResult test = RunProcess(
      {"/usr/bin/promtool", "test", "rules", root + "/tests/prometheus/alerts_test.yml"});
  EXPECT_EQ(test.exit_code, 0) << test.out << test.err;
  EXPECT_NE(test.out.find("SUCCESS"), std::string::npos) << test.out;
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Every alert has its promtool test, a runbook in the README, and the annotations that
// Alertmanager templates and on-call engineers rely on.
TEST(AlertRules, EachHasATestARunbookAndItsAnnotations) {
  const std::string root = PGJOBS_SOURCE_DIR;
  const std::string rules = ReadText(root + "/config/prometheus/alerts.yml");
  const std::string tests = ReadText(root + "/tests/prometheus/alerts_test.yml");
  const std::string readme = ReadText(root + "/README.md");
  static const std::regex kAlert(R"re(- alert: "?(\w+)"?)re");
  int alerts = 0;
  for (auto it = std::sregex_iterator(rules.begin(), rules.end(), kAlert);
       it != std::sregex_iterator(); ++it) {
    const std::string name = (*it)[1];
    ++alerts;
    EXPECT_NE(tests.find("alertname: " + name + "\n"), std::string::npos)
        << name << " has no promtool test";
    EXPECT_NE(readme.find("#### " + name + "\n"), std::string::npos)
        << name << " has no runbook (a \"#### " << name << "\" heading) in README.md";
    std::string lower = name;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    EXPECT_NE(rules.find("README.md#" + lower + "\""), std::string::npos) << name;
  }
  EXPECT_GE(alerts, 18);
  static const std::regex kSummary(R"re(summary: "((?:[^"\\]|\\.)*)")re");
  for (auto it = std::sregex_iterator(rules.begin(), rules.end(), kSummary);
       it != std::sregex_iterator(); ++it) {
    const std::string summary = (*it)[1];
    EXPECT_TRUE(summary.ends_with(".")) << summary;
    EXPECT_EQ(summary.find("{{"), std::string::npos) << "a static summary: " << summary;
  }
  auto count = [&](const std::string& needle) {
    int n = 0;
    for (size_t at = rules.find(needle); at != std::string::npos; at = rules.find(needle, at + 1))
      ++n;
    return n;
  };
  EXPECT_EQ(count("summary: "), alerts);
  EXPECT_EQ(count("description: "), alerts);
  EXPECT_EQ(count("runbook_url: "), alerts);
  EXPECT_EQ(count("dashboard_url: "), alerts);
}

}  // namespace
}  // namespace pgjobs::testing
