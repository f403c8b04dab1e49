// SPDX-License-Identifier: Apache-2.0
#include "pgjobs/exporter/config.h"

#include <cmath>
#include <cstdlib>
#include <regex>
#include <set>

#include "pgjobs/db/connection.h"
#include "pgjobs/http/server.h"

namespace pgjobs::exporter {
namespace {

bool ValidMetricName(const std::string& name) {
  static const std::regex kName("^[a-zA-Z_:][a-zA-Z0-9_:]*$");
  return std::regex_match(name, kName);
}

bool ValidLabelName(const std::string& name) {
  static const std::regex kLabel("^[a-zA-Z_][a-zA-Z0-9_]*$");
  return std::regex_match(name, kLabel) && !name.starts_with("__");
}

CustomMetric ParseCustom(config::MapReader& m) {
  CustomMetric c;
  auto name = m.String("name");
  if (!name) m.Fail("name", "missing: every custom metric needs a name");
  if (!ValidMetricName(*name)) {
    m.Fail("name",
           "expected a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), got '" + *name + "'");
  }
  // A custom family named like one of the exporter's would make the whole output invalid.
  for (const std::string& own : OwnFamilyNames()) {
    for (const char* suffix : {"", "_bucket", "_sum", "_count"}) {
      if (*name == own + suffix) {
        m.Fail("name", "'" + *name + "' is a metric of the exporter's own; choose another name");
      }
    }
  }
  c.name = *name;
  c.help = m.String("help").value_or("Custom metric " + c.name + ".");
  const std::string type = m.String("type").value_or("gauge");
  if (type != "gauge" && type != "counter") {
    m.Fail("type", "expected gauge or counter, got '" + type + "'");
  }
  c.counter = type == "counter";
  auto query = m.String("query");
  if (!query || query->empty()) m.Fail("query", "missing: every custom metric needs a query");
  c.query = *query;
  c.labels = m.StringList("labels").value_or(std::vector<std::string>{});
  std::set<std::string> seen;
  for (const std::string& label : c.labels) {
    if (!ValidLabelName(label)) m.Fail("labels", "expected label names, got '" + label + "'");
    if (!seen.insert(label).second) m.Fail("labels", "label '" + label + "' is listed twice");
  }
  auto value = m.String("value");
  if (!value) m.Fail("value", "missing: name the column that holds the value");
  if (seen.contains(*value)) {
    m.Fail("value", "column '" + *value +
                        "' is listed in labels too; a column is a label or the "
                        "value");
  }
  c.value = *value;
  c.timeout = m.Duration("timeout").value_or(c.timeout);
  if (c.timeout.count() <= 0) m.Fail("timeout", "expected a positive duration");
  c.min_interval = m.Duration("min_interval").value_or(c.min_interval);
  m.Finish();
  return c;
}

}  // namespace

std::chrono::milliseconds ScrapeBudget(const std::string* timeout_header,
                                       const ExporterConfig& config) {
  auto budget = config.scrape_timeout;
  if (timeout_header == nullptr) return budget;
  char* end = nullptr;
  const double seconds = std::strtod(timeout_header->c_str(), &end);
  if (timeout_header->empty() || *end != '\0' || !std::isfinite(seconds) || seconds <= 0) {
    return budget;
  }
  // Clamped before the conversion: a header of 1e300 must not overflow.
  const auto from_header =
      std::chrono::milliseconds(static_cast<long long>(std::min(seconds, 1e9) * 1000)) -
      config.scrape_timeout_offset;
  return std::max(std::chrono::milliseconds(50), std::min(budget, from_header));
}

const std::vector<std::string>& OwnFamilyNames() {
  static const std::vector<std::string> kNames = {
      "pgjobs_jobs",
      "pgjobs_oldest_ready_job_age_seconds",
      "pgjobs_oldest_running_job_seconds",
      "pgjobs_expired_job_max_overdue_seconds",
      "pgjobs_jobs_finished_total",
      "pgjobs_job_wait_seconds",
      "pgjobs_job_run_seconds",
      "pgjobs_job_attempts",
      "pgjobs_jobs_published_total",
      "pgjobs_finished_stats_resets_total",
      "pgjobs_workers",
      "pgjobs_jobs_on_stale_workers",
      "pgjobs_table_live_tuples",
      "pgjobs_table_dead_tuples",
      "pgjobs_table_size_bytes",
      "pgjobs_table_last_vacuum_age_seconds",
      "pgjobs_jobs_pruned_total",
      "pgjobs_oldest_finished_job_age_seconds",
      "pgjobs_retention_seconds",
      "pgjobs_task_paused",
      "pgjobs_jobs_deduplicated_total",
      "pgjobs_schedule_last_enqueued_timestamp_seconds",
      "pgjobs_schedule_next_run_timestamp_seconds",
      "pgjobs_oldest_transaction_xid_age",
      "pgjobs_oldest_transaction_age_seconds",
      "pgjobs_notification_queue_usage_ratio",
      "pgjobs_up",
      "pgjobs_scrape_collector_success",
      "pgjobs_scrape_collector_duration_seconds",
      "pgjobs_tasks_folded_into_other",
      "pgjobs_exporter_build_info",
      "process_cpu_seconds_total",
      "process_virtual_memory_bytes",
      "process_resident_memory_bytes",
      "process_start_time_seconds",
      "process_open_fds",
      "process_max_fds",
  };
  return kNames;
}

namespace {

db::Pooling ParsePooling(config::MapReader& database) {
  return database.Choice("pooling", {"session", "transaction"}).value_or("session") == "transaction"
             ? db::Pooling::kTransaction
             : db::Pooling::kSession;
}

}  // namespace

ExporterConfig ParseExporterConfig(const std::string& text, const std::string& file,
                                   const config::EnvLookup& env) {
  config::MapReader root = config::MapReader::Parse(text, file, env);
  ExporterConfig c;
  if (auto db = root.Map("database")) {
    c.dsn = db->String("dsn").value_or("");
    c.connect_timeout = db->Duration("connect_timeout").value_or(c.connect_timeout);
    c.pooling = ParsePooling(*db);
    db->Finish();
  }
  if (auto web = root.Map("web")) {
    if (auto addresses = web->StringList("listen_addresses")) {
      if (addresses->empty()) web->Fail("listen_addresses", "expected at least one address");
      for (const std::string& a : *addresses) {
        try {
          http::NormalizeListenAddress(a);
        } catch (const Error& e) {
          web->Fail("listen_addresses", e.what());
        }
      }
      c.listen_addresses = *addresses;
    }
    c.telemetry_path = web->String("telemetry_path").value_or(c.telemetry_path);
    if (!c.telemetry_path.starts_with("/") || c.telemetry_path == "/" ||
        c.telemetry_path.starts_with("/-/")) {
      web->Fail("telemetry_path",
                "expected a path such as /metrics, got '" + c.telemetry_path + "'");
    }
    if (c.telemetry_path == kProbePath) {
      web->Fail("telemetry_path", std::string(kProbePath) + " serves targets: choose another path");
    }
    web->Finish();
  }
  if (auto scrape = root.Map("scrape")) {
    c.scrape_timeout = scrape->Duration("timeout").value_or(c.scrape_timeout);
    c.scrape_timeout_offset = scrape->Duration("timeout_offset").value_or(c.scrape_timeout_offset);
    c.lock_timeout = scrape->Duration("lock_timeout").value_or(c.lock_timeout);
    if (c.scrape_timeout.count() <= 0) scrape->Fail("timeout", "expected a positive duration");
    if (c.lock_timeout.count() <= 0) scrape->Fail("lock_timeout", "expected a positive duration");
    scrape->Finish();
  }
  if (auto metrics = root.Map("metrics")) {
    c.max_tasks = static_cast<int>(metrics->Integer("max_tasks", 1, 100000).value_or(c.max_tasks));
    if (auto buckets = metrics->Map("buckets")) {
      c.wait_buckets = buckets->AscendingNumbers("wait_seconds").value_or(c.wait_buckets);
      c.run_buckets = buckets->AscendingNumbers("run_seconds").value_or(c.run_buckets);
      c.attempt_buckets = buckets->AscendingNumbers("attempts").value_or(c.attempt_buckets);
      buckets->Finish();
    }
    metrics->Finish();
  }
  if (auto customs = root.MapList("custom_metrics")) {
    std::set<std::string> names;
    for (config::MapReader& m : *customs) {
      CustomMetric metric = ParseCustom(m);
      if (!names.insert(metric.name).second) {
        m.Fail("name", "duplicate custom metric '" + metric.name + "'");
      }
      c.custom_metrics.push_back(std::move(metric));
    }
  }
  if (auto targets = root.Map("targets")) {
    for (const std::string& name : targets->Keys()) {
      auto target = targets->Map(name);
      if (!target) targets->Fail(name, "expected a map with dsn (and connect_timeout)");
      if (name.empty() || name.find_first_of(" /?&#%\"'") != std::string::npos) {
        targets->Fail(name, "a target name is used in URLs: no spaces, quotes, /, ?, &, # or %");
      }
      ProbeTarget t;
      t.dsn = target->String("dsn").value_or("");
      if (t.dsn.empty()) target->FailHere("dsn is required");
      try {
        db::CheckDsn(t.dsn);
      } catch (const Error& e) {
        target->Fail("dsn", e.what());
      }
      t.connect_timeout = target->Duration("connect_timeout").value_or(c.connect_timeout);
      t.pooling = target->Has("pooling") ? ParsePooling(*target) : c.pooling;
      target->Finish();
      c.targets[name] = t;
    }
  }
  root.Finish();
  return c;
}

ExporterConfig ForTarget(const ExporterConfig& config, const std::string& name) {
  ExporterConfig out = config;
  const ProbeTarget& target = config.targets.at(name);
  out.dsn = target.dsn;
  out.connect_timeout = target.connect_timeout;
  out.pooling = target.pooling;
  out.targets.clear();
  return out;
}

}  // namespace pgjobs::exporter
