// SPDX-License-Identifier: Apache-2.0
#include "pgjobs/exporter/exporter.h"

#include <algorithm>
#include <set>

#include "pgjobs/build_info.h"
#include "pgjobs/db/error.h"

namespace pgjobs::exporter {
namespace {

using prometheus::MetricType;
using Clock = std::chrono::steady_clock;

constexpr size_t kFoldedBound = 100000;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::chrono::milliseconds Remaining(Clock::time_point deadline) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
}

}  // namespace

const std::string& TaskLabels::Label(const std::string& task) {
  auto kept = kept_.find(task);
  if (kept != kept_.end()) return *kept;
  if (kept_.size() < max_tasks_) return *kept_.insert(task).first;
  if (folded_.size() < kFoldedBound) folded_.insert(task);
  return kOther;
}

Exporter::Exporter(ExporterConfig config, std::string version, log::Logger& logger,
                   std::string probe_target)
    : version_(std::move(version)),
      probe_target_(std::move(probe_target)),
      logger_(logger),
      config_(std::move(config)),
      labels_(config_.max_tasks),
      active_(config_) {}

Exporter::~Exporter() = default;

ExporterConfig Exporter::Config() const {
  std::lock_guard<std::mutex> lock(config_mutex_);
  return config_;
}

void Exporter::Reconfigure(ExporterConfig config) {
  std::lock_guard<std::mutex> lock(config_mutex_);
  config_ = std::move(config);
}

http::Families Exporter::Scrape(Clock::time_point deadline) {
  std::promise<http::Families> promise;
  std::shared_future<http::Families> future;
  bool leader = false;
  {
    std::lock_guard<std::mutex> lock(flight_mutex_);
    if (in_flight_) {
      future = *in_flight_;
    } else {
      future = promise.get_future().share();
      in_flight_ = future;
      leader = true;
    }
  }
  if (leader) {
    http::Families result;
    try {
      result = Collect(deadline);
    } catch (const std::exception& e) {
      // Collect catches per collector; this is a last line so that no exception escapes.
      auto up = http::Family("pgjobs_up", "Whether the database answered this scrape.",
                             MetricType::Gauge);
      http::AddSample(up, {}, 0);
      result.push_back(std::move(up));
    }
    {
      std::lock_guard<std::mutex> lock(flight_mutex_);
      in_flight_.reset();
    }
    promise.set_value(result);
    return result;
  }
  // The collection in flight ends by its own deadline, which every database call keeps; its
  // result is the truth of this moment too. Answering anything else at our own deadline (a
  // made-up pgjobs_up 0) would page for a database that is up.
  return future.get();
}

void Exporter::LogFailure(const std::string& collector, const std::string& error) {
  const std::optional<long long> left_out = failures_.Failed(collector, Clock::now());
  if (!left_out) return;
  log::Fields fields{{"collector", collector}, {"err", error}};
  if (!probe_target_.empty()) fields.emplace_back("target", probe_target_);
  if (*left_out > 0) fields.emplace_back("failures_not_logged", std::to_string(*left_out));
  logger_.Warn(collector == "connect" ? "cannot reach the database" : "collector failed", fields);
}

void Exporter::LogSuccess(const std::string& collector) {
  if (!failures_.Succeeded(collector)) return;
  log::Fields fields{{"collector", collector}};
  if (!probe_target_.empty()) fields.emplace_back("target", probe_target_);
  logger_.Info(collector == "connect" ? "database reachable again" : "collector recovered", fields);
}

http::Families Exporter::Collect(Clock::time_point deadline) {
  {
    std::lock_guard<std::mutex> lock(config_mutex_);
    const ExporterConfig& next = config_;
    const bool buckets_changed = next.wait_buckets != active_.wait_buckets ||
                                 next.run_buckets != active_.run_buckets ||
                                 next.attempt_buckets != active_.attempt_buckets;
    if (buckets_changed) histograms_.clear();
    if (next.dsn != active_.dsn || next.connect_timeout != active_.connect_timeout ||
        next.pooling != active_.pooling) {
      source_.reset();
    }
    if (next.max_tasks != active_.max_tasks) {
      labels_ = TaskLabels(next.max_tasks);
      known_tasks_.clear();
    }
    active_ = next;
  }
  if (!source_) {
    source_ =
        std::make_unique<StatsSource>(db::ConnectOptions{.dsn = active_.dsn,
                                                         .application_name = "jobs-exporter",
                                                         .connect_timeout = active_.connect_timeout,
                                                         .pooling = active_.pooling});
  }

  http::Families out;
  auto success = http::Family("pgjobs_scrape_collector_success",
                              "Whether a collector succeeded in this scrape.", MetricType::Gauge);
  auto duration = http::Family("pgjobs_scrape_collector_duration_seconds",
                               "How long a collector took in this scrape.", MetricType::Gauge);
  auto up =
      http::Family("pgjobs_up", "Whether the database answered this scrape.", MetricType::Gauge);

  bool connected = false;
  try {
    if (Remaining(deadline).count() <= 0) throw Error("no time left before the scrape deadline");
    source_->Begin(deadline, active_.lock_timeout);
    connected = true;
    LogSuccess("connect");
  } catch (const std::exception& e) {
    source_->ForgetIfBroken();
    LogFailure("connect", e.what());
  }
  http::AddSample(up, {}, connected ? 1 : 0);
  if (connected) {
    try {
      source_->Prefetch(FinishedQueryNow());
    } catch (const std::exception&) {
      // The connection was lost: each collector now fails on its own, with its own error.
      source_->ForgetIfBroken();
    }
  }

  auto run = [&](const std::string& name, auto&& collect) {
    const auto start = Clock::now();
    bool ok = false;
    if (connected && Clock::now() < deadline) {
      try {
        collect();
        ok = true;
        LogSuccess(name);
      } catch (const std::exception& e) {
        source_->ForgetIfBroken();
        LogFailure(name, e.what());
      }
    } else if (connected) {
      LogFailure(name, "no time left before the scrape deadline");
    }
    http::AddSample(success, {{"collector", name}}, ok ? 1 : 0);
    // Its prefetched statements' time on the database, and its own time here.
    http::AddSample(
        duration, {{"collector", name}},
        SecondsSince(start) + std::chrono::duration<double>(source_->TakePrefetchedTime()).count());
  };
  run("queue", [&] { CollectQueue(out); });
  run("finished", [&] { CollectFinished(out); });
  run("workers", [&] { CollectWorkers(out); });
  run("tables", [&] { CollectTables(out); });
  run("retention", [&] { CollectRetention(out); });
  run("paused", [&] { CollectPaused(out); });
  run("schedules", [&] { CollectUniqueAndRecurring(out); });
  run("database", [&] { CollectHealth(out); });
  for (const CustomMetric& metric : active_.custom_metrics) {
    run("custom:" + metric.name, [&] {
      // OwnFamilyNames() refuses these names at configuration; this holds if it ever misses one.
      for (const auto& family : out) {
        if (family.name == metric.name) {
          throw Error("custom metric " + metric.name +
                      ": the exporter serves a metric of this "
                      "name itself");
        }
      }
      CollectCustom(metric, deadline, out);
    });
  }

  auto folded = http::Family("pgjobs_tasks_folded_into_other",
                             "Distinct task names counted under task=\"other\" because more than "
                             "metrics.max_tasks tasks were seen.",
                             MetricType::Gauge);
  http::AddSample(folded, {}, static_cast<double>(labels_.Folded()));
  auto build = http::Family("pgjobs_exporter_build_info",
                            "A metric with a constant '1' value labeled by version and revision.",
                            MetricType::Gauge);
  http::AddSample(build, {{"version", version_}, {"revision", BuildRevision()}}, 1);

  out.push_back(std::move(up));
  out.push_back(std::move(success));
  out.push_back(std::move(duration));
  out.push_back(std::move(folded));
  if (probe_target_.empty()) {  // the exporter's own metrics belong on /metrics only
    out.push_back(std::move(build));
    for (auto& family : http::ProcessMetrics()) out.push_back(std::move(family));
  }
  return out;
}

void Exporter::CollectQueue(http::Families& out) {
  const std::vector<QueueRow> rows = source_->Queue();
  // Fold tasks beyond the label limit: counts add up, ages take the worst.
  std::map<std::string, QueueRow> by_label;
  for (const QueueRow& row : rows) {
    const std::string& label = labels_.Label(row.task);
    auto [it, fresh] = by_label.try_emplace(label, row);
    if (fresh) continue;
    QueueRow& sum = it->second;
    sum.ready += row.ready;
    sum.scheduled += row.scheduled;
    sum.retry_wait += row.retry_wait;
    sum.running += row.running;
    sum.expired += row.expired;
    sum.oldest_ready_age = std::max(sum.oldest_ready_age, row.oldest_ready_age);
    sum.oldest_running = std::max(sum.oldest_running, row.oldest_running);
    sum.max_expired_overdue = std::max(sum.max_expired_overdue, row.max_expired_overdue);
  }
  auto jobs = http::Family("pgjobs_jobs",
                           "Jobs in the queue by state: ready (runnable now), scheduled (future, "
                           "first attempt), retry_wait (in a retry backoff), running, expired "
                           "(running past their timeout).",
                           MetricType::Gauge);
  auto ready_age = http::Family("pgjobs_oldest_ready_job_age_seconds",
                                "Seconds since the oldest runnable job became runnable; 0 when "
                                "none is waiting.",
                                MetricType::Gauge);
  auto running_age =
      http::Family("pgjobs_oldest_running_job_seconds",
                   "Seconds the longest-running job has been running.", MetricType::Gauge);
  auto overdue =
      http::Family("pgjobs_expired_job_max_overdue_seconds",
                   "Seconds past its timeout of the most overdue expired job.", MetricType::Gauge);
  for (const auto& [task, row] : by_label) {
    for (const auto& [state, value] : {std::pair<const char*, double>{"ready", row.ready},
                                       {"scheduled", row.scheduled},
                                       {"retry_wait", row.retry_wait},
                                       {"running", row.running},
                                       {"expired", row.expired}}) {
      http::AddSample(jobs, {{"task", task}, {"state", state}}, value);
    }
    http::AddSample(ready_age, {{"task", task}}, row.oldest_ready_age);
    http::AddSample(running_age, {{"task", task}}, row.oldest_running);
    http::AddSample(overdue, {{"task", task}}, row.max_expired_overdue);
  }
  queue_tasks_.clear();
  for (const auto& [task, row] : by_label) queue_tasks_.insert(task);
  known_tasks_.insert(queue_tasks_.begin(), queue_tasks_.end());
  out.push_back(std::move(jobs));
  out.push_back(std::move(ready_age));
  out.push_back(std::move(running_age));
  out.push_back(std::move(overdue));
}

FinishedQuery Exporter::FinishedQueryNow() const {
  return {.after = watermark_,
          .wait_bounds = active_.wait_buckets,
          .run_bounds = active_.run_buckets,
          .attempt_bounds = active_.attempt_buckets};
}

void Exporter::CollectFinished(http::Families& out) {
  FinishedBatch batch;
  try {
    batch = source_->Finished(FinishedQueryNow());
  } catch (const std::exception&) {
    // More jobs finished since the last scrape than fit in one deadline (or the read failed):
    // re-base at the present so that the next scrape succeeds, rather than retrying the same
    // growing window for ever. The jobs of that window go uncounted; the reset is counted.
    if (watermark_) {
      watermark_.reset();
      ++finished_resets_;
    }
    throw;
  }
  for (const FinishedRow& row : batch.rows) {
    const std::string& task = labels_.Label(row.task);
    if (row.kind == "finished") {
      finished_[{task, row.status}] += row.n;
      continue;
    }
    TaskHistograms& h = histograms_[task];
    if (h.wait.empty()) {
      h.wait.assign(active_.wait_buckets.size() + 1, 0);
      h.run.assign(active_.run_buckets.size() + 1, 0);
      h.attempts.assign(active_.attempt_buckets.size() + 1, 0);
    }
    std::vector<std::uint64_t>* counts = nullptr;
    double* sum = nullptr;
    if (row.kind == "wait") {
      counts = &h.wait;
      sum = &h.wait_sum;
    } else if (row.kind == "run") {
      counts = &h.run;
      sum = &h.run_sum;
    } else if (row.kind == "attempts") {
      counts = &h.attempts;
      sum = &h.attempts_sum;
    } else {
      continue;
    }
    const size_t index =
        static_cast<size_t>(std::clamp(row.bucket, 1, static_cast<int>(counts->size()))) - 1;
    (*counts)[index] += static_cast<std::uint64_t>(row.n);
    *sum += row.total;
  }
  watermark_ = batch.watermark;

  std::map<std::string, double> published_by_task;
  for (const auto& [task, n] : source_->PublishedByTask()) {
    published_by_task[labels_.Label(task)] += n;
  }
  for (const auto& [task, n] : published_by_task) known_tasks_.insert(task);
  for (const auto& [key, n] : finished_) known_tasks_.insert(key.first);
  for (const std::string& task : known_tasks_) {
    published_by_task.try_emplace(task, 0);
    for (const char* status : {"success", "failure", "expired", "cancelled"}) {
      finished_.try_emplace({task, status}, 0);
    }
  }

  auto finished = http::Family("pgjobs_jobs_finished_total",
                               "Jobs finished since the exporter started, by final status "
                               "(success, failure, expired, cancelled).",
                               MetricType::Counter);
  for (const auto& [key, value] : finished_) {
    http::AddSample(finished, {{"task", key.first}, {"status", key.second}}, value);
  }
  auto wait = http::Family("pgjobs_job_wait_seconds",
                           "Seconds finished jobs waited from runnable to started (final "
                           "attempt).",
                           MetricType::Histogram);
  auto run = http::Family("pgjobs_job_run_seconds",
                          "Seconds finished jobs ran from started to finished (final attempt).",
                          MetricType::Histogram);
  auto attempts =
      http::Family("pgjobs_job_attempts", "Attempts finished jobs made.", MetricType::Histogram);
  for (const auto& [task, h] : histograms_) {
    http::AddHistogram(wait, {{"task", task}}, active_.wait_buckets, h.wait, h.wait_sum);
    http::AddHistogram(run, {{"task", task}}, active_.run_buckets, h.run, h.run_sum);
    http::AddHistogram(attempts, {{"task", task}}, active_.attempt_buckets, h.attempts,
                       h.attempts_sum);
  }
  auto resets = http::Family("pgjobs_finished_stats_resets_total",
                             "Times the finished-job read failed and restarted from the present, "
                             "leaving the jobs finished in between uncounted.",
                             MetricType::Counter);
  http::AddSample(resets, {}, finished_resets_);
  out.push_back(std::move(resets));
  auto published = http::Family("pgjobs_jobs_published_total",
                                "Jobs queued, ever, by task: published, queued by a recurring "
                                "schedule, or re-queued by jobs.retry.",
                                MetricType::Counter);
  for (const auto& [task, n] : published_by_task) {
    http::AddSample(published, {{"task", task}}, n);
  }
  out.push_back(std::move(finished));
  out.push_back(std::move(wait));
  out.push_back(std::move(run));
  out.push_back(std::move(attempts));
  out.push_back(std::move(published));
}

void Exporter::CollectWorkers(http::Families& out) {
  const auto [alive, stale] = source_->Workers();
  auto workers = http::Family("pgjobs_workers",
                              "Registered workers that beat recently (alive) or stopped beating "
                              "without unregistering (stale).",
                              MetricType::Gauge);
  http::AddSample(workers, {{"state", "alive"}}, alive);
  http::AddSample(workers, {{"state", "stale"}}, stale);
  auto on_stale = http::Family("pgjobs_jobs_on_stale_workers",
                               "Running jobs held by stale workers; they expire and are retried "
                               "after their timeout.",
                               MetricType::Gauge);
  std::map<std::string, double> by_label;
  for (const std::string& task : known_tasks_) by_label[task] = 0;
  for (const auto& [task, n] : source_->JobsOnStaleWorkers()) by_label[labels_.Label(task)] += n;
  for (const auto& [task, n] : by_label) http::AddSample(on_stale, {{"task", task}}, n);
  out.push_back(std::move(workers));
  out.push_back(std::move(on_stale));
}

void Exporter::CollectTables(http::Families& out) {
  auto live = http::Family("pgjobs_table_live_tuples", "Estimated live rows of a queue table.",
                           MetricType::Gauge);
  auto dead =
      http::Family("pgjobs_table_dead_tuples",
                   "Estimated dead rows of a queue table, waiting for vacuum.", MetricType::Gauge);
  auto size = http::Family("pgjobs_table_size_bytes",
                           "Size of a queue table with its indexes and TOAST.", MetricType::Gauge);
  auto vacuum = http::Family("pgjobs_table_last_vacuum_age_seconds",
                             "Seconds since a queue table was last vacuumed (by hand or "
                             "autovacuum); absent until it first is.",
                             MetricType::Gauge);
  for (const TableRow& t : source_->Tables()) {
    const http::Labels labels{{"table", t.table}};
    http::AddSample(live, labels, t.live_tuples);
    http::AddSample(dead, labels, t.dead_tuples);
    http::AddSample(size, labels, t.total_bytes);
    if (t.seconds_since_vacuum) http::AddSample(vacuum, labels, *t.seconds_since_vacuum);
  }
  out.push_back(std::move(live));
  out.push_back(std::move(dead));
  out.push_back(std::move(size));
  out.push_back(std::move(vacuum));
}

void Exporter::CollectRetention(http::Families& out) {
  auto pruned = http::Family("pgjobs_jobs_pruned_total",
                             "Finished jobs deleted past their retention (jobs.prune), ever, by "
                             "status.",
                             MetricType::Counter);
  auto oldest = http::Family("pgjobs_oldest_finished_job_age_seconds",
                             "Age of the oldest finished job kept, by status; 0 when none is.",
                             MetricType::Gauge);
  auto keep = http::Family("pgjobs_retention_seconds",
                           "How long finished jobs of a status are kept; absent when for ever.",
                           MetricType::Gauge);
  for (const RetentionRow& row : source_->Retention()) {
    const http::Labels labels{{"status", row.status}};
    http::AddSample(pruned, labels, row.pruned_total);
    http::AddSample(oldest, labels, row.oldest_age_seconds);
    if (row.keep_seconds) http::AddSample(keep, labels, *row.keep_seconds);
  }
  out.push_back(std::move(pruned));
  out.push_back(std::move(oldest));
  out.push_back(std::move(keep));
}

void Exporter::CollectPaused(http::Families& out) {
  auto paused = http::Family("pgjobs_task_paused",
                             "1 for a task paused with jobs.pause (its jobs wait until "
                             "jobs.resume), 0 for the other tasks in the queue.",
                             MetricType::Gauge);
  std::map<std::string, int> state;
  for (const std::string& task : queue_tasks_) state[task] = 0;
  for (const std::string& task : source_->PausedTasks()) state[labels_.Label(task)] = 1;
  for (const auto& [task, value] : state) http::AddSample(paused, {{"task", task}}, value);
  out.push_back(std::move(paused));
}

void Exporter::CollectUniqueAndRecurring(http::Families& out) {
  auto dedup = http::Family("pgjobs_jobs_deduplicated_total",
                            "Publishes that queued nothing because a job of the task held their "
                            "unique key, ever, by task.",
                            MetricType::Counter);
  std::map<std::string, double> by_task;
  for (const std::string& task : known_tasks_) by_task[task] = 0;
  for (const auto& [task, n] : source_->Deduplicated()) by_task[labels_.Label(task)] += n;
  for (const auto& [task, n] : by_task) http::AddSample(dedup, {{"task", task}}, n);
  out.push_back(std::move(dedup));

  auto last = http::Family("pgjobs_schedule_last_enqueued_timestamp_seconds",
                           "When the recurring job last queued a job (Unix time); absent "
                           "before its first.",
                           MetricType::Gauge);
  auto next = http::Family("pgjobs_schedule_next_run_timestamp_seconds",
                           "The recurring job's next slot (Unix time): in the past while a due "
                           "slot waits to be queued.",
                           MetricType::Gauge);
  for (const ScheduleRow& row : source_->Schedules()) {
    const http::Labels labels{{"schedule", row.name}};
    if (row.last_enqueued_seconds) http::AddSample(last, labels, *row.last_enqueued_seconds);
    if (row.next_run_seconds) http::AddSample(next, labels, *row.next_run_seconds);
  }
  out.push_back(std::move(last));
  out.push_back(std::move(next));
}

void Exporter::CollectHealth(http::Families& out) {
  const DatabaseHealth h = source_->Health();
  auto xid = http::Family("pgjobs_oldest_transaction_xid_age",
                          "Transactions since the oldest one still open started (holds back "
                          "vacuum of the queue tables).",
                          MetricType::Gauge);
  http::AddSample(xid, {}, h.oldest_xid_age);
  out.push_back(std::move(xid));
  auto age = http::Family("pgjobs_oldest_transaction_age_seconds",
                          "Age of the oldest open transaction among the sessions this role may "
                          "see (all of them with pg_read_all_stats); 0 when none.",
                          MetricType::Gauge);
  http::AddSample(age, {}, h.oldest_transaction_seconds.value_or(0));
  out.push_back(std::move(age));
  auto notify = http::Family("pgjobs_notification_queue_usage_ratio",
                             "Fraction of the NOTIFY queue in use (pg_notification_queue_usage).",
                             MetricType::Gauge);
  http::AddSample(notify, {}, h.notification_queue_usage);
  out.push_back(std::move(notify));
}

void Exporter::CollectCustom(const CustomMetric& metric, Clock::time_point deadline,
                             http::Families& out) {
  auto cached = custom_cache_.find(metric.name);
  if (cached != custom_cache_.end() && metric.min_interval.count() > 0 &&
      Clock::now() - cached->second.at < metric.min_interval) {
    out.push_back(cached->second.family);
    return;
  }
  const CustomResult result =
      source_->Custom(metric.query, std::min(metric.timeout, Remaining(deadline)));
  auto column = [&](const std::string& name) {
    auto it = std::find(result.columns.begin(), result.columns.end(), name);
    if (it == result.columns.end()) {
      throw Error("custom metric " + metric.name + ": the query returns no column '" + name + "'");
    }
    return static_cast<size_t>(it - result.columns.begin());
  };
  const size_t value_column = column(metric.value);
  std::vector<size_t> label_columns;
  for (const std::string& label : metric.labels) label_columns.push_back(column(label));
  auto family = http::Family(metric.name, metric.help,
                             metric.counter ? MetricType::Counter : MetricType::Gauge);
  std::set<http::Labels> seen;
  for (const auto& row : result.rows) {
    if (!row[value_column]) continue;
    char* end = nullptr;
    const double value = std::strtod(row[value_column]->c_str(), &end);
    if (row[value_column]->empty() || *end != '\0') {
      throw Error("custom metric " + metric.name + ": column '" + metric.value + "' holds '" +
                  *row[value_column] + "', not a number");
    }
    http::Labels labels;
    for (size_t i = 0; i < label_columns.size(); ++i) {
      labels.emplace_back(metric.labels[i], row[label_columns[i]].value_or(""));
    }
    // Two samples with one label set make the whole exposition invalid for Prometheus.
    if (!seen.insert(labels).second) {
      std::string shown;
      for (const auto& [name, v] : labels)
        shown += (shown.empty() ? "" : ",") + name + "=\"" + v + "\"";
      throw Error("custom metric " + metric.name +
                  ": the query returned two rows with the labels {" + shown +
                  "}; make the label columns unique per row");
    }
    http::AddSample(family, labels, value);
  }
  custom_cache_[metric.name] = {Clock::now(), family};
  out.push_back(std::move(family));
}

}  // namespace pgjobs::exporter
