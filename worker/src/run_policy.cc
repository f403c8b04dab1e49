// SPDX-License-Identifier: Apache-2.0
#include "run_policy.h"

#include <algorithm>
#include <cmath>

namespace pgjobs::worker {

namespace {

double Ewma(double average, double sample) {
  return average < 0 ? sample : average + 0.2 * (sample - average);
}

// A moving average of logarithms (a geometric mean): a preempted executor's one slow sample,
// hundreds of times the usual, moves it by a factor of about three, where the arithmetic
// average would jump a hundredfold and shrink prefetch and batches for a while. `average` is
// NaN until the first sample.
double LogEwma(double average, double sample) {
  const double log_sample = std::log(std::max(sample, 1e-9));
  return std::isnan(average) ? log_sample : average + 0.2 * (log_sample - average);
}

}  // namespace

RunPolicy::RunPolicy(int concurrency, int prefetch, int batch_size,
                     const std::vector<std::string>& tasks, std::map<std::string, int> sql_batch)
    : concurrency_(concurrency),
      prefetch_(prefetch),
      batch_size_(batch_size),
      sql_batch_(std::move(sql_batch)) {
  for (const std::string& task : tasks) typical_seconds_[task] = -1;
}

int RunPolicy::Prefetch() const {
  if (prefetch_ != kAdaptive) return prefetch_;
  if (std::isnan(job_log_seconds_) || consume_seconds_ < 0) return 0;
  const double per_job = std::max(std::exp(job_log_seconds_), kPerJobSeconds);
  double buffer = std::max(kMinBufferSeconds, kBufferCycles * consume_seconds_);
  // A prefetched job waits about `buffer`: keep that a small share of the shortest timeout.
  if (shortest_timeout_) buffer = std::min(buffer, kTimeoutShare * *shortest_timeout_);
  // The small addition keeps exp(log(x)) rounding from costing a whole job.
  const double jobs = concurrency_ * buffer / per_job + 1e-6;
  return static_cast<int>(std::clamp(jobs, 0.0, static_cast<double>(MaxPrefetch())));
}

void RunPolicy::Consumed(double seconds, std::optional<double> shortest_timeout) {
  consume_seconds_ = Ewma(consume_seconds_, seconds);
  if (shortest_timeout) shortest_timeout_ = shortest_timeout;
}

int RunPolicy::Batch(const std::string& task) const {
  auto pinned = sql_batch_.find(task);
  if (pinned == sql_batch_.end()) return 1;
  if (pinned->second != kAdaptive) return pinned->second;
  auto typical = typical_log_seconds_.find(task);
  if (typical == typical_log_seconds_.end()) return 1;
  const double fit = kBatchBudget / std::max(std::exp(typical->second), kPerJobSeconds) + 1e-6;
  return static_cast<int>(std::clamp(fit, 1.0, static_cast<double>(kMaxBatch)));
}

bool RunPolicy::MayConsume() const {
  const int prefetch = Prefetch();
  const int capacity = concurrency_ + prefetch;
  const int free = capacity - in_use_;
  const int threshold = prefetch > 0 ? std::max(1, capacity / 2) : 1;
  return free >= threshold || (free > 0 && free == capacity);
}

int RunPolicy::Want() const {
  const int free = std::max(0, concurrency_ + Prefetch() - in_use_);
  return batch_size_ > 0 ? std::min(free, batch_size_) : free;
}

double RunPolicy::ExpectedSeconds(const std::string& task) const {
  auto it = typical_seconds_.find(task);
  if (it == typical_seconds_.end() || it->second < 0) return kUnknownSeconds;
  return it->second + kPerJobSeconds;
}

int RunPolicy::Queued(int jobs, double expected, size_t queued, Clock::time_point now) {
  in_use_ += jobs;
  queued_seconds_ += expected;
  if (queued == static_cast<size_t>(jobs)) last_progress_ = now;  // the queue was empty
  if (waiting_ == 0 || queued == 0) return 0;
  const double slices = std::ceil(queued_seconds_ / kWakeSlice);
  const int busy = concurrency_ - waiting_;
  const int wanted = slices >= concurrency_ ? concurrency_ : static_cast<int>(slices);
  return std::clamp(wanted - busy, 1, waiting_);
}

void RunPolicy::Took(double expected, size_t queued, Clock::time_point now) {
  queued_seconds_ -= expected;
  if (queued == 0) queued_seconds_ = 0;  // no drift from rounding
  last_progress_ = now;
}

void RunPolicy::Finished(const std::string& task, int jobs, double seconds) {
  in_use_ -= jobs;
  double& typical = typical_seconds_[task];
  typical = Ewma(typical, seconds);
  auto [log_typical, fresh] = typical_log_seconds_.try_emplace(task, LogEwma(NAN, seconds));
  if (!fresh) log_typical->second = LogEwma(log_typical->second, seconds);
  job_log_seconds_ = LogEwma(job_log_seconds_, seconds);
}

bool RunPolicy::Stalled(size_t queued, Clock::time_point now) {
  if (!Watching(queued) || now - last_progress_ < kStall) return false;
  last_progress_ = now;
  return true;
}

}  // namespace pgjobs::worker
