// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace pgjobs::worker {

/// How the worker paces itself between taking jobs and running them: slot accounting, when to
/// consume, how many idle executors a batch wakes, and when the watchdog wakes one more. Pure
/// state and decisions, with time passed in; RunQueue calls it under its lock.
///
/// Waking every idle executor for each batch cost more than quick jobs themselves: most of them
/// found the queue already empty. A batch wakes as many as its expected handler time calls for,
/// one per kWakeSlice, from each task's recent handler times (a moving average; a task not seen
/// yet counts as slow, so a new worker wakes them all). A job slower than its task's history
/// cannot hold up the jobs queued behind it: while jobs are queued and none is taken for
/// kStall, the watchdog wakes one more executor.
///
/// Prefetch and sql batches adapt unless pinned. Quick handlers need jobs taken ahead of free
/// executors, or every consume fetches a handful: the worker keeps about kBufferCycles consume
/// calls' worth of its executors' work queued (the consume call's own time, a moving average),
/// which for quick jobs is large batches and for slow ones none at all, with nothing learned yet
/// none, so that a single job into an idle worker takes the path it always took. A prefetched
/// job's timeout runs while it waits: the expected wait is kept under kTimeoutShare of the
/// shortest timeout seen. A sql task's executor takes as many of its queued jobs into one
/// transaction as fit in kBatchBudget of their expected time, so that quick statements share a
/// commit and slow ones do not wait for each other.
class RunPolicy {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr double kWakeSlice = 0.001;
  static constexpr double kUnknownSeconds = 1.0;
  static constexpr double kPerJobSeconds = 2e-6;  // an executor's own cost per job
  static constexpr Clock::duration kStall = std::chrono::milliseconds(2);
  static constexpr int kAdaptive = -1;  // for prefetch and sql batch: learn it
  // The learned prefetch's cap: kMaxPrefetch, or kMaxPrefetchPerExecutor per executor when more.
  // Many executors of quick jobs empty 1,000 jobs faster than a consume call returns the next.
  static constexpr int kMaxPrefetch = 1000;
  static constexpr int kMaxPrefetchPerExecutor = 100;
  static constexpr double kBufferCycles = 2.0;
  static constexpr double kMinBufferSeconds = 0.002;
  static constexpr double kTimeoutShare = 0.1;
  static constexpr int kMaxBatch = 64;
  static constexpr double kBatchBudget = 0.02;

  /// `concurrency` executors; `prefetch` jobs may be taken beyond them (kAdaptive: learned);
  /// `batch_size` caps one consume (0: as many as there are free slots). `tasks` are the tasks
  /// it runs; `sql_batch` the sql tasks' batch sizes (kAdaptive: learned).
  RunPolicy(int concurrency, int prefetch, int batch_size, const std::vector<std::string>& tasks,
            std::map<std::string, int> sql_batch = {});

  /// Whether the dispatcher should consume now. With prefetch, it waits until half the capacity
  /// is free, so that batches stay large.
  bool MayConsume() const;
  /// How many jobs to ask for.
  int Want() const;
  /// Jobs taken ahead of free executors now: the pinned prefetch, or the learned one.
  int Prefetch() const;
  /// A consume call took `seconds` and returned jobs whose shortest timeout is
  /// `shortest_timeout` seconds (or none).
  void Consumed(double seconds, std::optional<double> shortest_timeout);
  /// How many queued jobs of `task` one executor takes together: 1 but for sql tasks.
  int Batch(const std::string& task) const;

  /// What a job of `task` adds to the expected work of the run queue, in seconds.
  double ExpectedSeconds(const std::string& task) const;
  /// `jobs` were taken and queued, adding `expected` seconds of work, at `now`; `queued` is the
  /// run queue's length after them. Returns how many idle executors to wake.
  int Queued(int jobs, double expected, size_t queued, Clock::time_point now);
  /// An executor took jobs worth `expected` seconds at `now`; `queued` is what is left.
  void Took(double expected, size_t queued, Clock::time_point now);
  /// An executor ran `jobs` jobs of `task` in `seconds` each and frees their slots.
  void Finished(const std::string& task, int jobs, double seconds);

  void ExecutorWaits() { ++waiting_; }
  void ExecutorWakes() { --waiting_; }
  int WaitingExecutors() const { return waiting_; }

  /// Whether the watchdog has anything to watch: jobs queued and an executor idle.
  bool Watching(size_t queued) const { return queued > 0 && waiting_ > 0; }
  /// Whether queued jobs have had no taker for kStall at `now`; when so, the watchdog wakes one
  /// executor and the stall is counted again from `now`.
  bool Stalled(size_t queued, Clock::time_point now);
  /// When the watchdog should look again.
  Clock::time_point NextLook() const { return last_progress_ + kStall; }

  int FreeSlots() const { return concurrency_ + Prefetch() - in_use_; }
  int MaxPrefetch() const { return std::max(kMaxPrefetch, kMaxPrefetchPerExecutor * concurrency_); }
  int Concurrency() const { return concurrency_; }

 private:
  int concurrency_;
  int prefetch_;
  int batch_size_;
  std::map<std::string, int> sql_batch_;
  int in_use_ = 0;               // jobs taken and not finished
  double consume_seconds_ = -1;  // < 0: no consume yet
  // All tasks' recent handler time per job, and each task's, as averages of logarithms (see
  // LogEwma): what prefetch and sql batches are sized by. NaN: none yet.
  double job_log_seconds_ = NAN;
  std::map<std::string, double> typical_log_seconds_;
  std::optional<double> shortest_timeout_;
  int waiting_ = 0;
  double queued_seconds_ = 0;
  Clock::time_point last_progress_{};
  std::map<std::string, double> typical_seconds_;  // < 0: no job of the task has run yet
};

}  // namespace pgjobs::worker
