// SPDX-License-Identifier: Apache-2.0
// deploy/kubernetes as kubectl renders it (`kubectl kustomize`): the objects, their probes and
// ports, and that the PrometheusRule and the dashboards ConfigMap hold exactly what the mixin
// generates (config/prometheus/alerts.yml, grafana/dashboards/*.json).
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/harness/process.h"

namespace pgjobs::testing {
namespace {

using nlohmann::json;
const std::string kSource = PGJOBS_SOURCE_DIR;

// YAML as JSON, for comparing documents whatever their formatting. Scalars stay strings: both
// sides come from the same generator, and kubectl keeps scalars as they were written.
json ToJson(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      json out = json::object();
      for (const auto& entry : node) out[entry.first.as<std::string>()] = ToJson(entry.second);
      return out;
    }
    case YAML::NodeType::Sequence: {
      json out = json::array();
      for (const auto& item : node) out.push_back(ToJson(item));
      return out;
    }
    case YAML::NodeType::Scalar:
      return node.as<std::string>();
    default:
      return nullptr;
  }
}

class KubernetesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ProcessResult r =
        RunProcess({"/bin/sh", "-c", "kubectl kustomize '" + kSource + "/deploy/kubernetes'"});
    ASSERT_EQ(r.exit_code, 0) << "kubectl kustomize failed: " << r.err;
    for (const YAML::Node& doc : YAML::LoadAll(r.out)) {
      const json object = ToJson(doc);
      objects_[object["kind"].get<std::string>() + "/" +
               object["metadata"]["name"].get<std::string>()] = object;
    }
  }
  static const json& Object(const std::string& key) {
    auto it = objects_.find(key);
    if (it == objects_.end()) {
      static const json kNone;
      ADD_FAILURE() << key << " is not rendered";
      return kNone;
    }
    return it->second;
  }
  static const json& Container(const std::string& deployment) {
    return Object("Deployment/" + deployment)["spec"]["template"]["spec"]["containers"][0];
  }
  static std::map<std::string, json> objects_;
};
std::map<std::string, json> KubernetesTest::objects_;

TEST_F(KubernetesTest, RendersTheWorkerTheExporterTheirServicesAndMonitors) {
  std::vector<std::string> kinds;
  for (const auto& [key, unused] : objects_) kinds.push_back(key.substr(0, key.find('/')));
  std::sort(kinds.begin(), kinds.end());
  EXPECT_EQ(kinds, (std::vector<std::string>{"ConfigMap", "ConfigMap", "ConfigMap", "Deployment",
                                             "Deployment", "PodMonitor", "PodMonitor",
                                             "PrometheusRule", "Service", "Service"}));
  for (const auto& [name, port, binary] :
       {std::tuple{"pgjobs-worker", "9466", "jobs-worker"},
        std::tuple{"pgjobs-exporter", "9467", "jobs-exporter"}}) {
    const json& c = Container(name);
    SCOPED_TRACE(name);
    EXPECT_EQ(c["command"][0], binary);
    EXPECT_EQ(c["ports"][0]["containerPort"], port);
    EXPECT_EQ(c["ports"][0]["name"], "metrics");
    EXPECT_NE(c["args"].dump().find("--web.listen-address=:" + std::string(port)),
              std::string::npos);
    EXPECT_EQ(c["livenessProbe"]["httpGet"]["path"], "/-/healthy");
    EXPECT_EQ(c["readinessProbe"]["httpGet"]["path"], "/-/ready");
    EXPECT_EQ(c["env"][0]["name"], "PGJOBS_DSN");
    EXPECT_EQ(c["env"][0]["valueFrom"]["secretKeyRef"]["name"], "pgjobs-database");
    EXPECT_EQ(c["securityContext"]["allowPrivilegeEscalation"], "false");
    EXPECT_EQ(c["securityContext"]["readOnlyRootFilesystem"], "true");
    const json& service = Object("Service/" + std::string(name));
    EXPECT_EQ(service["spec"]["ports"][0]["port"], port);
    const json& monitor = Object("PodMonitor/" + std::string(name));
    EXPECT_EQ(monitor["metadata"]["labels"]["release"], "prometheus");
    EXPECT_EQ(monitor["spec"]["podMetricsEndpoints"][0]["port"], "metrics");
    const json& pod_labels =
        Object("Deployment/" + std::string(name))["spec"]["template"]["metadata"]["labels"];
    for (const auto& [label, value] : monitor["spec"]["selector"]["matchLabels"].items()) {
      EXPECT_EQ(pod_labels[label], value) << "the PodMonitor selects the pods by " << label;
    }
  }
  EXPECT_EQ(Object("Deployment/pgjobs-exporter")["spec"]["replicas"], "1");
}

// The pod must outlive the worker's graceful shutdown, or Kubernetes kills jobs mid-run.
TEST_F(KubernetesTest, TheWorkerPodOutlivesItsShutdownGrace) {
  const json& pod = Object("Deployment/pgjobs-worker")["spec"]["template"]["spec"];
  const int termination = std::stoi(pod["terminationGracePeriodSeconds"].get<std::string>());
  std::string config_map;
  for (const auto& [key, object] : objects_) {
    if (key.rfind("ConfigMap/pgjobs-worker-config-", 0) == 0) config_map = key;
  }
  ASSERT_FALSE(config_map.empty()) << "the worker's configuration is generated with a hash";
  EXPECT_EQ(pod["volumes"][0]["configMap"]["name"], config_map.substr(config_map.find('/') + 1));
  const YAML::Node config =
      YAML::Load(Object(config_map)["data"]["worker.yaml"].get<std::string>());
  const std::string grace = config["worker"]["shutdown_grace"].as<std::string>();
  ASSERT_EQ(grace.back(), 's');
  EXPECT_GT(termination, std::stoi(grace) + 5) << "grace " << grace;
}

TEST_F(KubernetesTest, RulesAndDashboardsAreTheGeneratedOnes) {
  const json rules = ToJson(YAML::LoadFile(kSource + "/config/prometheus/alerts.yml"));
  EXPECT_EQ(Object("PrometheusRule/pgjobs")["spec"], rules);
  EXPECT_EQ(Object("PrometheusRule/pgjobs")["metadata"]["labels"]["release"], "prometheus");
  const json& dashboards = Object("ConfigMap/pgjobs-dashboards");
  EXPECT_EQ(dashboards["metadata"]["labels"]["grafana_dashboard"], "1");
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kSource + "/grafana/dashboards")) {
    const std::string name = entry.path().filename();
    SCOPED_TRACE(name);
    std::ifstream in(entry.path());
    ASSERT_TRUE(dashboards["data"].contains(name));
    EXPECT_EQ(json::parse(dashboards["data"][name].get<std::string>()), json::parse(in));
    ++files;
  }
  EXPECT_EQ(dashboards["data"].size(), static_cast<size_t>(files));
}

}  // namespace
}  // namespace pgjobs::testing
