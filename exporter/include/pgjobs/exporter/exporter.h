// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "pgjobs/exporter/config.h"
#include "pgjobs/exporter/stats_source.h"
#include "pgjobs/http/metrics.h"
#include "pgjobs/log/failure_log.h"
#include "pgjobs/log/logger.h"

namespace pgjobs::exporter {

/// Bounds the task label: the first `max_tasks` task names seen keep their name for the life of
/// the process; later ones become "other". Pure state, not thread-safe.
class TaskLabels {
 public:
  explicit TaskLabels(int max_tasks) : max_tasks_(max_tasks) {}
  /// The label value for `task`.
  const std::string& Label(const std::string& task);
  /// Distinct task names folded into "other" so far (counted up to a bound).
  size_t Folded() const { return folded_.size(); }

 private:
  size_t max_tasks_;
  std::set<std::string> kept_;
  std::set<std::string> folded_;
  static inline const std::string kOther = "other";
};

/// Turns the queue's statistics into metric families, building them fresh on every scrape.
/// Thread-safe: concurrent scrapes share one collection (single flight).
class Exporter {
 public:
  /// `version` is reported in pgjobs_exporter_build_info. `logger` must outlive the exporter; it
  /// gets a line when the database cannot be reached and when a collector fails (at most one a
  /// minute per collector while it keeps failing), and one when it recovers.
  /// `probe_target` names the database when this exporter serves /probe?target=NAME: its
  /// output then holds that database's metrics only (no process or build metrics, which
  /// /metrics serves), and its log lines carry target=NAME.
  Exporter(ExporterConfig config, std::string version, log::Logger& logger,
           std::string probe_target = "");
  ~Exporter();

  /// Collects every metric, finishing by `deadline` whatever the database does: a collector that
  /// fails or runs out of time costs its own metrics and reports pgjobs_scrape_collector_success
  /// 0. A scrape that arrives while another collects waits for that collection and reports it
  /// (which ends by the other scrape's deadline). Never throws.
  http::Families Scrape(std::chrono::steady_clock::time_point deadline);

  /// Replaces the configuration (after SIGHUP). The connection is re-opened when the DSN
  /// changed; finished-job histograms restart when their buckets changed (a counter reset).
  void Reconfigure(ExporterConfig config);

  /// The configuration in force.
  ExporterConfig Config() const;

 private:
  struct TaskHistograms {
    std::vector<std::uint64_t> wait, run, attempts;
    double wait_sum = 0, run_sum = 0, attempts_sum = 0;
  };
  struct CachedCustom {
    std::chrono::steady_clock::time_point at;
    prometheus::MetricFamily family;
  };

  http::Families Collect(std::chrono::steady_clock::time_point deadline);
  void CollectQueue(http::Families& out);
  void CollectFinished(http::Families& out);
  // What CollectFinished() asks for, from the watermark of the last scrape.
  FinishedQuery FinishedQueryNow() const;
  void CollectWorkers(http::Families& out);
  void CollectTables(http::Families& out);
  void CollectRetention(http::Families& out);
  void CollectUniqueAndRecurring(http::Families& out);
  void CollectPaused(http::Families& out);
  void CollectHealth(http::Families& out);
  void CollectCustom(const CustomMetric& metric, std::chrono::steady_clock::time_point deadline,
                     http::Families& out);

  // Logs a collector's (or the connection's) failure when FailureLog says so.
  void LogFailure(const std::string& collector, const std::string& error);
  void LogSuccess(const std::string& collector);

  const std::string version_;
  const std::string probe_target_;
  log::Logger& logger_;
  log::FailureLog failures_;  // touched only by the collection in flight
  mutable std::mutex config_mutex_;
  ExporterConfig config_;

  // Collection state: touched only by the single collection in flight.
  std::unique_ptr<StatsSource> source_;
  TaskLabels labels_;
  std::optional<long long> watermark_;
  // Times the finished-job read failed and the watermark was re-based at the present.
  double finished_resets_ = 0;
  std::map<std::pair<std::string, std::string>, double> finished_;  // (task, status) -> count
  std::map<std::string, TaskHistograms> histograms_;
  // The task labels of the last queue collection: pgjobs_task_paused is 0 for those not paused.
  std::set<std::string> queue_tasks_;
  // Every task label seen since start (queued, published or finished): their counters and
  // per-task gauges are served from 0, so that a healthy system shows 0 rather than no data.
  std::set<std::string> known_tasks_;
  std::map<std::string, CachedCustom> custom_cache_;
  ExporterConfig active_;  // the configuration the current collection runs with

  // Single flight.
  std::mutex flight_mutex_;
  std::optional<std::shared_future<http::Families>> in_flight_;
};

}  // namespace pgjobs::exporter
