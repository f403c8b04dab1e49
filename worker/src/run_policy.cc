#include "run_policy.h"

#include <algorithm>
#include <cmath>

namespace pgjobs::worker {

RunPolicy::RunPolicy(int concurrency, int prefetch, int batch_size,
                     const std::vector<std::string>& tasks)
    : concurrency_(concurrency),
      prefetch_(prefetch),
      batch_size_(batch_size),
      free_slots_(concurrency + prefetch) {
  for (const std::string& task : tasks) typical_seconds_[task] = -1;
}

bool RunPolicy::MayConsume() const {
  const int capacity = concurrency_ + prefetch_;
  const int threshold = prefetch_ > 0 ? std::max(1, capacity / 2) : 1;
  return free_slots_ >= threshold || (free_slots_ > 0 && free_slots_ == capacity);
}

int RunPolicy::Want() const {
  return batch_size_ > 0 ? std::min(free_slots_, batch_size_) : free_slots_;
}

double RunPolicy::ExpectedSeconds(const std::string& task) const {
  auto it = typical_seconds_.find(task);
  if (it == typical_seconds_.end() || it->second < 0) return kUnknownSeconds;
  return it->second + kPerJobSeconds;
}

int RunPolicy::Queued(int jobs, double expected, size_t queued, Clock::time_point now) {
  free_slots_ -= jobs;
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
  free_slots_ += jobs;
  double& typical = typical_seconds_[task];
  typical = typical < 0 ? seconds : typical + 0.2 * (seconds - typical);
}

bool RunPolicy::Stalled(size_t queued, Clock::time_point now) {
  if (!Watching(queued) || now - last_progress_ < kStall) return false;
  last_progress_ = now;
  return true;
}

}  // namespace pgjobs::worker
