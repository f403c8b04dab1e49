// SPDX-License-Identifier: Apache-2.0
#include "pgjobs/exporter/probes.h"

namespace pgjobs::exporter {
namespace {

std::string Names(const ExporterConfig& config) {
  std::string names;
  for (const auto& [name, unused] : config.targets) names += (names.empty() ? "" : ", ") + name;
  return names.empty() ? "none configured" : names;
}

http::Response BadRequest(const std::string& text) {
  return http::Response(400, "text/plain; charset=utf-8", text + "\n");
}

}  // namespace

Probes::Probes(ExporterConfig config, std::string version, log::Logger& logger)
    : version_(std::move(version)), logger_(logger), config_(std::move(config)) {}

std::shared_ptr<Exporter> Probes::Find(const std::string& name, ExporterConfig& config) {
  std::lock_guard<std::mutex> lock(mutex_);
  config = config_;
  if (!config_.targets.contains(name)) return nullptr;
  auto& exporter = exporters_[name];
  if (!exporter) {
    exporter = std::make_shared<Exporter>(ForTarget(config_, name), version_, logger_, name);
  }
  return exporter;
}

http::Response Probes::Handle(const http::Request& request) {
  auto target = request.query.find("target");
  ExporterConfig config;
  if (target == request.query.end() || target->second.empty()) {
    std::lock_guard<std::mutex> lock(mutex_);
    return BadRequest(
        "missing ?target=NAME: /probe serves the databases under targets: in the "
        "configuration (" +
        Names(config_) + ")");
  }
  std::shared_ptr<Exporter> exporter = Find(target->second, config);
  if (!exporter) {
    return BadRequest("unknown target '" + target->second +
                      "': /probe serves only the databases named under targets: in the "
                      "configuration (" +
                      Names(config) + ")");
  }
  const auto header = request.headers.find("x-prometheus-scrape-timeout-seconds");
  const auto deadline =
      std::chrono::steady_clock::now() +
      ScrapeBudget(header == request.headers.end() ? nullptr : &header->second, config);
  return http::Response(200, http::kExpositionContentType,
                        http::Serialize(exporter->Scrape(deadline)));
}

void Probes::Reconfigure(ExporterConfig config) {
  std::lock_guard<std::mutex> lock(mutex_);
  config_ = std::move(config);
  for (auto it = exporters_.begin(); it != exporters_.end();) {
    if (!config_.targets.contains(it->first)) {
      it = exporters_.erase(it);  // a scrape in flight keeps its own reference
      continue;
    }
    it->second->Reconfigure(ForTarget(config_, it->first));
    ++it;
  }
}

}  // namespace pgjobs::exporter
