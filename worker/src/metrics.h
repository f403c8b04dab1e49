// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "pgjobs/http/metrics.h"
#include "pgjobs/worker/config.h"
#include "pgjobs/worker/job.h"

namespace pgjobs::worker {

/// The steps of jobs.maintain, as its rows and pgjobs_worker_maintenance_runs_total name them.
const std::vector<const char*>& MaintenanceSteps();

/// The one owner of the worker's metric families. Every configured task's series exist at 0 from
/// the start. Thread-safe. When disabled, every call is a no-op and Collect() returns only the
/// build info (to measure what metrics cost).
class WorkerMetrics {
 public:
  WorkerMetrics(const WorkerConfig& config, const std::vector<std::string>& tasks,
                const std::string& version);

  /// A job started: its pickup latency (seconds from runnable to started, the database's clock).
  void Started(const std::string& task, double wait_seconds);
  /// A result the database confirmed. `retried`: the job returns to the queue; `dead`: it
  /// failed for good; `cancelled`: it ended as cancelled (jobs.cancel), counted as that outcome
  /// rather than its handler's; `end_to_end`: seconds from publish to this final outcome (final
  /// only).
  void Finished(const std::string& task, Outcome::Kind kind, double run_seconds, bool retried,
                bool dead, bool cancelled, std::optional<double> end_to_end);
  /// A result the database refused because the attempt had been reclaimed.
  void LateResult(const std::string& task);
  /// One database call and whether it failed.
  void DbCall(const std::string& call, double seconds, bool failed);
  void DatabaseUp(bool up);
  void Wakeup(const std::string& source);
  void InFlight(const std::string& task, double delta);
  /// Adds handler-busy seconds.
  void Busy(double seconds);
  /// The jobs taken ahead of free executors now.
  void Prefetch(int jobs);

  /// Whether this worker holds the maintenance lock now.
  void MaintenanceLeader(bool leader);
  /// One maintenance step (expire, prune, workers) the leader ran, and whether it succeeded.
  void MaintenanceRun(const std::string& step, bool ok);

  /// Every family, for /metrics.
  http::Families Collect() const;

 private:
  // Every series of one task, resolved once at construction: the per-job calls then cost one
  // map lookup, not a label hash, a family lock and a bucket copy per metric.
  struct TaskSeries {
    std::array<prometheus::Counter*, 3> jobs;        // by Outcome::Kind
    prometheus::Counter* cancelled;                  // outcome="cancelled"
    std::array<prometheus::Histogram*, 3> duration;  // by Outcome::Kind
    prometheus::Histogram* wait;
    prometheus::Histogram* end_to_end;
    prometheus::Counter* retries;
    prometheus::Counter* dead;
    prometheus::Counter* timeouts;
    prometheus::Counter* late;
    prometheus::Gauge* in_flight;
  };
  // The series of `task`, or null for a task the worker was not built with. Read-only after
  // construction, so safe from every thread.
  const TaskSeries* Series(const std::string& task) const;

  bool enabled_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::map<std::string, TaskSeries> tasks_;
  std::map<std::string, std::pair<prometheus::Histogram*, prometheus::Counter*>> db_calls_;
  std::map<std::string, prometheus::Counter*> wakeups_;
  prometheus::Gauge* database_up_;
  prometheus::Counter* busy_;
  prometheus::Gauge* prefetch_;
  prometheus::Gauge* last_finished_;
  prometheus::Gauge* maintenance_leader_;
  std::map<std::pair<std::string, std::string>, prometheus::Counter*> maintenance_runs_;
};

}  // namespace pgjobs::worker
