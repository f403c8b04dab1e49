// SPDX-License-Identifier: Apache-2.0
#include "cancellations.h"

#include <algorithm>

namespace pgjobs::worker {

Cancellations::Cancellations(int slots)
    : running_(static_cast<size_t>(slots)), marks_(static_cast<size_t>(slots)) {}

const std::atomic<long long>* Cancellations::Track(int slot, long long job_id) {
  const auto s = static_cast<size_t>(slot);
  running_[s].store(job_id);
  // Request stores any_waiting_ before it looks at running_, and Track stores running_ before it
  // looks at any_waiting_ (both sequentially consistent): a job is either seen running by
  // Request, or finds its id waiting here.
  if (any_waiting_.load()) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (waiting_.erase(job_id) > 0) marks_[s].store(job_id);
    any_waiting_.store(!waiting_.empty());
  }
  return &marks_[s];
}

void Cancellations::Untrack(int slot) { running_[static_cast<size_t>(slot)].store(0); }

void Cancellations::Request(const std::vector<long long>& job_ids) {
  std::lock_guard<std::mutex> lock(mutex_);
  // The database lists every marked job still running here, so what it no longer lists has
  // ended: the waiting set stays as small as the marks.
  waiting_ = std::set<long long>(job_ids.begin(), job_ids.end());
  any_waiting_.store(!waiting_.empty());
  for (size_t s = 0; s < running_.size() && !waiting_.empty(); ++s) {
    const long long id = running_[s].load();
    if (id != 0 && waiting_.erase(id) > 0) marks_[s].store(id);
  }
  any_waiting_.store(!waiting_.empty());
}

}  // namespace pgjobs::worker
