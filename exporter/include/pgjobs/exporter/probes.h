// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "pgjobs/exporter/config.h"
#include "pgjobs/exporter/exporter.h"
#include "pgjobs/http/server.h"
#include "pgjobs/log/logger.h"

namespace pgjobs::exporter {

/// /probe?target=NAME: the multi-target pattern of postgres_exporter and blackbox_exporter. NAME
/// must be one of the configuration's `targets:` (a DSN from the request is never used); each
/// target has its own Exporter, so its own connection, scrape deadline, counters and pgjobs_up.
/// Thread-safe.
class Probes {
 public:
  Probes(ExporterConfig config, std::string version, log::Logger& logger);

  /// Serves one probe: 400 naming the problem for a missing or unknown target.
  http::Response Handle(const http::Request& request);
  /// A reloaded configuration: targets gone are dropped, changed ones reconfigured.
  void Reconfigure(ExporterConfig config);

 private:
  std::shared_ptr<Exporter> Find(const std::string& name, ExporterConfig& config);

  const std::string version_;
  log::Logger& logger_;
  std::mutex mutex_;  // guards config_ and exporters_
  ExporterConfig config_;
  std::map<std::string, std::shared_ptr<Exporter>> exporters_;
};

}  // namespace pgjobs::exporter
