// The Grafana dashboards: structure Grafana imports, a query and a description on every panel,
// and every query valid PromQL (checked by promtool as recording rules).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

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
  expr = std::regex_replace(expr, std::regex(R"(\$__rate_interval)"), "1m");
  expr = std::regex_replace(expr, std::regex(R"(\$task|\$instance)"), ".*");
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
  EXPECT_TRUE(variables.contains("datasource"));
  EXPECT_TRUE(variables.contains("task"));
  ASSERT_EQ(d["links"].size(), 1u) << "a link to the other dashboard";
  EXPECT_TRUE(d["links"][0]["url"].get<std::string>().starts_with("/d/pgjobs-"));
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

}  // namespace
}  // namespace pgjobs::testing
