// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

namespace pgjobs::worker {

/// When the worker must be done: no limit until Begin(), then the end of its shutdown grace.
/// The one place the shutdown deadline is kept and read. Thread-safe.
class Shutdown {
 public:
  using Clock = std::chrono::steady_clock;

  /// Starts the shutdown at `now` with `grace`, and wakes every Pause(); false when it had
  /// started already.
  bool Begin(Clock::duration grace, Clock::time_point now = Clock::now()) {
    if (stopping_.exchange(true)) return false;
    deadline_ = (now + grace).time_since_epoch().count();
    { std::lock_guard<std::mutex> lock(mutex_); }
    cv_.notify_all();
    return true;
  }
  /// Waits `delay`, or less when the shutdown begins; false when stopping.
  bool Pause(Clock::duration delay) const {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait_for(lock, delay, [this] { return stopping_.load(); });
    return !stopping_;
  }
  bool Stopping() const { return stopping_; }
  /// The end of the grace period; Clock::time_point::max() until Begin().
  Clock::time_point Deadline() const { return Clock::time_point(Clock::duration(deadline_)); }
  /// The time by which a job must end: its own deadline, or the shutdown's when that is earlier.
  Clock::time_point For(Clock::time_point job_deadline) const {
    return std::min(job_deadline, Deadline());
  }

 private:
  std::atomic<bool> stopping_{false};
  std::atomic<Clock::rep> deadline_{Clock::time_point::max().time_since_epoch().count()};
  mutable std::mutex mutex_;
  mutable std::condition_variable cv_;
};

}  // namespace pgjobs::worker
