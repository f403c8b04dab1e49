// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "pgjobs/config/yaml_reader.h"
#include "pgjobs/db/connection.h"

namespace pgjobs::exporter {

/// The port jobs-exporter listens on by default (jobs-worker uses 9466).
inline constexpr int kDefaultPort = 9467;

/// A metric defined by the user as a SQL query.
struct CustomMetric {
  std::string name;
  std::string help;
  bool counter = false;  // gauge otherwise
  std::string query;
  /// Columns whose values become labels, and the column holding the value.
  std::vector<std::string> labels;
  std::string value;
  std::chrono::milliseconds timeout{5000};
  /// Results younger than this are served from cache (successes only); 0 runs every scrape.
  std::chrono::milliseconds min_interval{0};
};

/// Where the databases under targets: are served (?target=NAME).
inline constexpr const char* kProbePath = "/probe";

/// A database served at /probe?target=NAME (the multi-target pattern).
struct ProbeTarget {
  std::string dsn;
  std::chrono::milliseconds connect_timeout{5000};
  db::Pooling pooling = db::Pooling::kSession;
  bool operator==(const ProbeTarget&) const = default;
};

/// The validated configuration of jobs-exporter. Defaults live here and nowhere else.
struct ExporterConfig {
  std::string dsn;
  std::chrono::milliseconds connect_timeout{5000};
  /// kTransaction behind a pooler in transaction mode: no session settings; each statement
  /// carries its timeouts in a transaction of its own.
  db::Pooling pooling = db::Pooling::kSession;
  std::vector<std::string> listen_addresses{":" + std::to_string(kDefaultPort)};
  std::string telemetry_path = "/metrics";
  /// Upper bound of a scrape; Prometheus' X-Prometheus-Scrape-Timeout-Seconds header minus
  /// scrape_timeout_offset shortens it.
  std::chrono::milliseconds scrape_timeout{10000};
  std::chrono::milliseconds scrape_timeout_offset{500};
  /// lock_timeout of every statement: a stats query never waits long behind a lock.
  std::chrono::milliseconds lock_timeout{1000};
  /// At most this many distinct task label values; the rest are summed under task="other".
  int max_tasks = 100;
  /// Histogram bounds, ascending, in seconds (wait, run) and attempts.
  std::vector<double> wait_buckets{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,   2.5,
                                   5,     10,   30,    60,   120, 300,  600, 1800};
  std::vector<double> run_buckets{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,   2.5,
                                  5,     10,   30,    60,   120, 300,  600, 1800};
  std::vector<double> attempt_buckets{1, 2, 3, 4, 5, 10};
  std::vector<CustomMetric> custom_metrics;
  /// Databases served at /probe?target=NAME, by NAME, each with its own connection; the
  /// settings above (scrape, metrics, custom metrics) apply to each of them.
  std::map<std::string, ProbeTarget> targets;
};

/// `config` for the probe target `name`: its database, and no targets of its own. Pure.
ExporterConfig ForTarget(const ExporterConfig& config, const std::string& name);

/// How long one scrape may take: Prometheus' X-Prometheus-Scrape-Timeout-Seconds header (null
/// when absent) minus scrape_timeout_offset, never more than scrape_timeout, never less than
/// 50 ms; scrape_timeout when the header is absent or not a positive number. Pure.
std::chrono::milliseconds ScrapeBudget(const std::string* timeout_header,
                                       const ExporterConfig& config);

/// The names of every metric family jobs-exporter serves itself; a custom metric may take none
/// of them (nor a histogram's _bucket, _sum or _count series).
const std::vector<std::string>& OwnFamilyNames();

/// Parses and validates the YAML in `text` (the contents of `file`), expanding ${VAR} with
/// `env`. Throws config::ConfigError: "file:line:column: key.path: problem".
ExporterConfig ParseExporterConfig(const std::string& text, const std::string& file,
                                   const config::EnvLookup& env);

}  // namespace pgjobs::exporter
