// SPDX-License-Identifier: Apache-2.0
#include "metrics.h"

#include <chrono>

#include "pgjobs/build_info.h"

namespace pgjobs::worker {
namespace {

const char* OutcomeName(Outcome::Kind kind) {
  switch (kind) {
    case Outcome::Kind::kSuccess:
      return "success";
    case Outcome::Kind::kFailure:
      return "failure";
    case Outcome::Kind::kTimeout:
      return "timeout";
  }
  return "failure";
}

}  // namespace

const std::vector<const char*>& MaintenanceSteps() {
  static const std::vector<const char*> kSteps = {"expire",  "schedules",   "partitions", "prune",
                                                  "workers", "unique_keys", "compact"};
  return kSteps;
}

WorkerMetrics::WorkerMetrics(const WorkerConfig& config, const std::vector<std::string>& tasks,
                             const std::string& version)
    : enabled_(config.metrics_enabled), registry_(std::make_shared<prometheus::Registry>()) {
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  using prometheus::BuildHistogram;
  auto* jobs_family =
      &BuildCounter()
           .Name("pgjobs_worker_jobs_total")
           .Help(
               "Job attempts this worker finished, by outcome (success, failure, timeout, "
               "cancelled).")
           .Register(*registry_);
  auto* duration_family = &BuildHistogram()
                               .Name("pgjobs_worker_job_duration_seconds")
                               .Help("Seconds handlers ran, by outcome.")
                               .Register(*registry_);
  auto* wait_family =
      &BuildHistogram()
           .Name("pgjobs_worker_job_wait_seconds")
           .Help(
               "Pickup latency: seconds from when the attempt became runnable to its "
               "start, on the database's clock.")
           .Register(*registry_);
  auto* end_to_end_family =
      &BuildHistogram()
           .Name("pgjobs_worker_job_end_to_end_seconds")
           .Help("Seconds from publish to the job's final outcome, retries included.")
           .Register(*registry_);
  auto* retries_family =
      &BuildCounter()
           .Name("pgjobs_worker_job_retries_total")
           .Help("Failed or timed-out attempts that went back to the queue for a retry.")
           .Register(*registry_);
  auto* dead_family = &BuildCounter()
                           .Name("pgjobs_worker_jobs_dead_total")
                           .Help("Jobs that failed for good: their retries were exhausted.")
                           .Register(*registry_);
  auto* timeouts_family = &BuildCounter()
                               .Name("pgjobs_worker_job_timeouts_total")
                               .Help("Attempts stopped at the job's timeout.")
                               .Register(*registry_);
  auto* late_family =
      &BuildCounter()
           .Name("pgjobs_worker_late_results_total")
           .Help("Results refused because the attempt had expired and been reclaimed.")
           .Register(*registry_);
  auto* in_flight_family =
      &BuildGauge()
           .Name("pgjobs_worker_jobs_in_flight")
           .Help("Jobs taken and not finished yet: running, or prefetched and waiting for a slot.")
           .Register(*registry_);
  BuildGauge()
      .Name("pgjobs_worker_concurrency")
      .Help("Jobs this worker runs at once at most.")
      .Register(*registry_)
      .Add({})
      .Set(config.concurrency);
  prefetch_ = &BuildGauge()
                   .Name("pgjobs_worker_prefetch")
                   .Help(
                       "Jobs the worker takes ahead of free executors now: learned from handler "
                       "and consume times, unless worker.prefetch pins it.")
                   .Register(*registry_)
                   .Add({});
  busy_ = &BuildCounter()
               .Name("pgjobs_worker_busy_seconds_total")
               .Help(
                   "Handler seconds summed over all slots; divide its rate by "
                   "pgjobs_worker_concurrency for saturation.")
               .Register(*registry_)
               .Add({});
  auto* db_duration_family = &BuildHistogram()
                                  .Name("pgjobs_worker_db_call_duration_seconds")
                                  .Help("Seconds database calls took, by call.")
                                  .Register(*registry_);
  auto* db_errors_family = &BuildCounter()
                                .Name("pgjobs_worker_db_errors_total")
                                .Help("Database calls that failed, by call.")
                                .Register(*registry_);
  database_up_ = &BuildGauge()
                      .Name("pgjobs_worker_database_up")
                      .Help("Whether the last database call succeeded.")
                      .Register(*registry_)
                      .Add({});
  auto* wakeups_family =
      &BuildCounter()
           .Name("pgjobs_worker_wakeups_total")
           .Help("Times the idle worker woke to look for jobs, by source (notify, poll).")
           .Register(*registry_);
  last_finished_ = &BuildGauge()
                        .Name("pgjobs_worker_last_job_finished_timestamp_seconds")
                        .Help("Unix time of the last job this worker finished.")
                        .Register(*registry_)
                        .Add({});
  maintenance_leader_ = &BuildGauge()
                             .Name("pgjobs_worker_maintenance_leader")
                             .Help(
                                 "1 while this worker runs the maintenance (jobs.maintain) for "
                                 "all workers of its database, else 0.")
                             .Register(*registry_)
                             .Add({});
  auto* maintenance_family =
      &BuildCounter()
           .Name("pgjobs_worker_maintenance_runs_total")
           .Help(
               "Maintenance steps this worker ran as the leader, by step (expire, schedules, "
               "partitions, prune, workers, unique_keys, compact) and result (ok, error).")
           .Register(*registry_);
  for (const char* step : MaintenanceSteps()) {
    for (const char* result : {"ok", "error"}) {
      maintenance_runs_[{step, result}] =
          &maintenance_family->Add({{"step", step}, {"result", result}});
    }
  }
  BuildGauge()
      .Name("pgjobs_worker_build_info")
      .Help("A metric with a constant '1' value labeled by version and revision.")
      .Register(*registry_)
      .Add({{"version", version}, {"revision", BuildRevision()}})
      .Set(1);

  // Every series at 0 from the start, so that rates and alerts see them before the first job.
  for (const std::string& task : tasks) {
    auto it = config.tasks.find(task);
    const std::vector<double>& duration_buckets =
        it != config.tasks.end() && !it->second.duration_buckets.empty()
            ? it->second.duration_buckets
            : config.duration_buckets;
    TaskSeries series{};
    for (auto kind : {Outcome::Kind::kSuccess, Outcome::Kind::kFailure, Outcome::Kind::kTimeout}) {
      const prometheus::Labels labels{{"task", task}, {"outcome", OutcomeName(kind)}};
      series.jobs[static_cast<size_t>(kind)] = &jobs_family->Add(labels);
      series.duration[static_cast<size_t>(kind)] = &duration_family->Add(labels, duration_buckets);
    }
    series.cancelled = &jobs_family->Add({{"task", task}, {"outcome", "cancelled"}});
    series.wait = &wait_family->Add({{"task", task}}, config.wait_buckets);
    series.end_to_end = &end_to_end_family->Add({{"task", task}}, config.end_to_end_buckets);
    series.retries = &retries_family->Add({{"task", task}});
    series.dead = &dead_family->Add({{"task", task}});
    series.timeouts = &timeouts_family->Add({{"task", task}});
    series.late = &late_family->Add({{"task", task}});
    series.in_flight = &in_flight_family->Add({{"task", task}});
    tasks_.emplace(task, series);
  }
  for (const char* call : {"consume", "ack", "nack", "heartbeat"}) {
    db_calls_[call] = {&db_duration_family->Add({{"call", call}},
                                                prometheus::Histogram::BucketBoundaries{
                                                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                    0.1, 0.25, 0.5, 1, 2.5, 5}),
                       &db_errors_family->Add({{"call", call}})};
  }
  for (const char* source : {"notify", "poll"}) {
    wakeups_[source] = &wakeups_family->Add({{"source", source}});
  }
}

const WorkerMetrics::TaskSeries* WorkerMetrics::Series(const std::string& task) const {
  auto it = tasks_.find(task);
  return it != tasks_.end() ? &it->second : nullptr;
}

void WorkerMetrics::Started(const std::string& task, double wait_seconds) {
  if (!enabled_) return;
  if (const TaskSeries* series = Series(task)) series->wait->Observe(wait_seconds);
}

void WorkerMetrics::Finished(const std::string& task, Outcome::Kind kind, double run_seconds,
                             bool retried, bool dead, bool cancelled,
                             std::optional<double> end_to_end) {
  if (!enabled_) return;
  const TaskSeries* series = Series(task);
  if (series == nullptr) return;
  (cancelled ? series->cancelled : series->jobs[static_cast<size_t>(kind)])->Increment();
  series->duration[static_cast<size_t>(kind)]->Observe(run_seconds);
  if (kind == Outcome::Kind::kTimeout) series->timeouts->Increment();
  if (retried) series->retries->Increment();
  if (dead) series->dead->Increment();
  if (end_to_end) series->end_to_end->Observe(*end_to_end);
  last_finished_->Set(
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
}

void WorkerMetrics::LateResult(const std::string& task) {
  if (!enabled_) return;
  if (const TaskSeries* series = Series(task)) series->late->Increment();
}

void WorkerMetrics::DbCall(const std::string& call, double seconds, bool failed) {
  if (!enabled_) return;
  auto it = db_calls_.find(call);
  if (it == db_calls_.end()) return;
  it->second.first->Observe(seconds);
  if (failed) it->second.second->Increment();
}

void WorkerMetrics::DatabaseUp(bool up) { database_up_->Set(up ? 1 : 0); }

void WorkerMetrics::Wakeup(const std::string& source) {
  if (!enabled_) return;
  auto it = wakeups_.find(source);
  if (it != wakeups_.end()) it->second->Increment();
}

void WorkerMetrics::InFlight(const std::string& task, double delta) {
  if (!enabled_) return;
  if (const TaskSeries* series = Series(task)) series->in_flight->Increment(delta);
}

void WorkerMetrics::MaintenanceLeader(bool leader) {
  if (enabled_) maintenance_leader_->Set(leader ? 1 : 0);
}

void WorkerMetrics::MaintenanceRun(const std::string& step, bool ok) {
  if (!enabled_) return;
  auto it = maintenance_runs_.find({step, ok ? "ok" : "error"});
  if (it != maintenance_runs_.end()) it->second->Increment();
}

void WorkerMetrics::Prefetch(int jobs) {
  if (enabled_) prefetch_->Set(jobs);
}

void WorkerMetrics::Busy(double seconds) {
  if (enabled_) busy_->Increment(seconds);
}

http::Families WorkerMetrics::Collect() const {
  http::Families out = registry_->Collect();
  for (auto& f : http::ProcessMetrics()) out.push_back(std::move(f));
  return out;
}

}  // namespace pgjobs::worker
