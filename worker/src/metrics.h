#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <string>

#include "pgjobs/http/metrics.h"
#include "pgjobs/worker/config.h"
#include "pgjobs/worker/job.h"

namespace pgjobs::worker {

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
  /// failed for good; `end_to_end`: seconds from publish to this final outcome (final only).
  void Finished(const std::string& task, Outcome::Kind kind, double run_seconds, bool retried,
                bool dead, std::optional<double> end_to_end);
  /// A result the database refused because the attempt had been reclaimed.
  void LateResult(const std::string& task);
  /// One database call and whether it failed.
  void DbCall(const std::string& call, double seconds, bool failed);
  void DatabaseUp(bool up);
  void Wakeup(const std::string& source);
  void InFlight(const std::string& task, double delta);
  /// Adds handler-busy seconds.
  void Busy(double seconds);

  /// Every family, for /metrics.
  http::Families Collect() const;

 private:
  bool enabled_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* jobs_;
  prometheus::Family<prometheus::Histogram>* duration_;
  prometheus::Family<prometheus::Histogram>* wait_;
  prometheus::Family<prometheus::Histogram>* end_to_end_;
  prometheus::Family<prometheus::Counter>* retries_;
  prometheus::Family<prometheus::Counter>* dead_;
  prometheus::Family<prometheus::Counter>* timeouts_;
  prometheus::Family<prometheus::Counter>* late_;
  prometheus::Family<prometheus::Gauge>* in_flight_;
  prometheus::Family<prometheus::Histogram>* db_duration_;
  prometheus::Family<prometheus::Counter>* db_errors_;
  prometheus::Family<prometheus::Counter>* wakeups_;
  prometheus::Gauge* database_up_;
  prometheus::Counter* busy_;
  prometheus::Gauge* last_finished_;
  std::map<std::string, std::vector<double>> duration_buckets_;  // per task
  WorkerConfig config_;
};

}  // namespace pgjobs::worker
