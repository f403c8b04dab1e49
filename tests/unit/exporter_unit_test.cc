// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "pgjobs/exporter/config.h"
#include "pgjobs/exporter/exporter.h"

namespace pgjobs::exporter {
namespace {

TEST(TaskLabels, KeepsTheFirstNamesAndFoldsTheRest) {
  TaskLabels labels(2);
  EXPECT_EQ(labels.Label("a"), "a");
  EXPECT_EQ(labels.Label("b"), "b");
  EXPECT_EQ(labels.Label("c"), "other");
  EXPECT_EQ(labels.Label("a"), "a");
  EXPECT_EQ(labels.Label("d"), "other");
  EXPECT_EQ(labels.Label("c"), "other");
  EXPECT_EQ(labels.Folded(), 2u);
}

TEST(ParseExporterConfig, DefaultsPutTheDefaultTimeoutOnABucketEdge) {
  ExporterConfig c = ParseExporterConfig("", "e.yaml", nullptr);
  EXPECT_EQ(c.listen_addresses, std::vector<std::string>{":9467"});
  EXPECT_EQ(c.telemetry_path, "/metrics");
  EXPECT_NE(std::find(c.run_buckets.begin(), c.run_buckets.end(), 60.0), c.run_buckets.end());
  EXPECT_EQ(c.run_buckets.front(), 0.005);
  EXPECT_EQ(c.run_buckets.back(), 1800);
}

TEST(ParseExporterConfig, ReadsEverySection) {
  ExporterConfig c = ParseExporterConfig(
      "database: {dsn: \"host=${H}\", connect_timeout: 2s}\n"
      "web: {listen_addresses: [\":1\", \"127.0.0.1:2\"], telemetry_path: /m}\n"
      "scrape: {timeout: 3s, timeout_offset: 100ms, lock_timeout: 250ms}\n"
      "metrics: {max_tasks: 7, buckets: {wait_seconds: [1, 2], run_seconds: [3], attempts: [1]}}\n"
      "custom_metrics:\n"
      "  - {name: a_b, help: H, type: counter, query: SELECT 1 AS v, labels: [x], value: v,\n"
      "     timeout: 1s, min_interval: 1m}\n",
      "e.yaml", [](const std::string&) { return std::optional<std::string>("db"); });
  EXPECT_EQ(c.dsn, "host=db");
  EXPECT_EQ(c.connect_timeout, std::chrono::seconds(2));
  EXPECT_EQ(c.listen_addresses.size(), 2u);
  EXPECT_EQ(c.telemetry_path, "/m");
  EXPECT_EQ(c.scrape_timeout, std::chrono::seconds(3));
  EXPECT_EQ(c.scrape_timeout_offset, std::chrono::milliseconds(100));
  EXPECT_EQ(c.lock_timeout, std::chrono::milliseconds(250));
  EXPECT_EQ(c.max_tasks, 7);
  EXPECT_EQ(c.wait_buckets, (std::vector<double>{1, 2}));
  ASSERT_EQ(c.custom_metrics.size(), 1u);
  EXPECT_TRUE(c.custom_metrics[0].counter);
  EXPECT_EQ(c.custom_metrics[0].min_interval, std::chrono::minutes(1));
}

TEST(ParseExporterConfig, RefusesBadCustomMetrics) {
  auto message = [](const std::string& yaml) {
    try {
      ParseExporterConfig(yaml, "e.yaml", nullptr);
    } catch (const config::ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_EQ(message("custom_metrics:\n  - {name: 1bad, query: q, value: v}\n"),
            "e.yaml:2:12: custom_metrics[0].name: expected a Prometheus metric name "
            "([a-zA-Z_:][a-zA-Z0-9_:]*), got '1bad'");
  EXPECT_EQ(message("custom_metrics:\n  - {name: a, query: q, value: v, type: summary}\n"),
            "e.yaml:2:41: custom_metrics[0].type: expected gauge or counter, got 'summary'");
  EXPECT_EQ(message("custom_metrics:\n  - {name: a, query: q, value: v}\n"
                    "  - {name: a, query: q, value: v}\n"),
            "e.yaml:3:12: custom_metrics[1].name: duplicate custom metric 'a'");
  EXPECT_EQ(message("metrics: {max_tasks: 0}\n"),
            "e.yaml:1:22: metrics.max_tasks: expected an integer from 1 to 100000, got 0");
}

// The list that custom metrics may not collide with is the list of what the exporter serves:
// every family of the golden scrape, plus the process_* ones it leaves out as volatile.
TEST(OwnFamilyNames, AreTheFamiliesTheExporterServes) {
  std::ifstream golden(PGJOBS_SOURCE_DIR "/tests/testdata/exporter_golden.prom");
  std::set<std::string> served;
  for (std::string line; std::getline(golden, line);) {
    if (line.starts_with("# TYPE ")) served.insert(line.substr(7, line.find(' ', 7) - 7));
  }
  ASSERT_FALSE(served.empty());
  std::set<std::string> own;
  for (const std::string& name : OwnFamilyNames()) {
    if (!name.starts_with("process_")) own.insert(name);
  }
  EXPECT_EQ(own, served);
}

TEST(ScrapeBudget, TakesPrometheusTimeoutLessTheOffsetWithinTheConfiguredBounds) {
  ExporterConfig c;  // timeout 10 s, offset 500 ms
  using std::chrono::milliseconds;
  auto budget = [&c](const char* header) {
    const std::string value = header == nullptr ? "" : header;
    return ScrapeBudget(header == nullptr ? nullptr : &value, c);
  };
  EXPECT_EQ(budget(nullptr), milliseconds(10000));
  EXPECT_EQ(budget("2"), milliseconds(1500));
  EXPECT_EQ(budget("0.5"), milliseconds(50)) << "never less than 50 ms";
  EXPECT_EQ(budget("60"), milliseconds(10000)) << "never more than scrape.timeout";
  EXPECT_EQ(budget("1e300"), milliseconds(10000)) << "no overflow";
  for (const char* bad : {"", "abc", "-3", "0", "nan", "inf", "2s"}) {
    EXPECT_EQ(budget(bad), milliseconds(10000)) << bad;
  }
}

}  // namespace
}  // namespace pgjobs::exporter
