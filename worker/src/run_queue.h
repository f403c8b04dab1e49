// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "run_policy.h"
#include "shutdown.h"
#include "taken.h"

namespace pgjobs::worker {

/// The jobs taken and waiting for an executor, between the dispatcher, the executors and the
/// watchdog; RunPolicy decides, this class holds the lock and wakes the threads. Executors wait
/// on one condition variable and the dispatcher alone on another (notified one at a time, so no
/// other thread may wait on it): on this path a needless wakeup costs more than a no-op job.
/// Thread-safe.
class RunQueue {
 public:
  RunQueue(RunPolicy policy, const Shutdown& shutdown);

  /// The dispatcher waits until it may consume; how many jobs to ask for, or 0 when stopping.
  int WaitForSlots();
  /// The dispatcher queues the jobs a consume call that took `consume_seconds` returned (none,
  /// maybe), and wakes as many executors as they need.
  void Push(std::vector<Taken> jobs, double consume_seconds);

  /// What an executor last ran, whose slots it frees when it takes more.
  struct Ran {
    std::string task;
    int jobs = 0;
    double seconds_per_job = 0;
  };
  /// An executor frees the slots of what it `ran`, then waits for work: the next jobs to run
  /// (several of one sql task when that task runs in batches), or none when stopping with
  /// nothing left.
  std::vector<Taken> Take(const Ran& ran);

  /// The jobs taken ahead of free executors now (see RunPolicy::Prefetch).
  int Prefetch();
  /// The watchdog's loop (see RunPolicy); returns when stopping.
  void Watch();
  /// Wakes every thread waiting here, after the shutdown began.
  void WakeAll();

 private:
  const Shutdown& shutdown_;
  const int concurrency_;
  std::mutex mutex_;
  std::condition_variable work_cv_;
  std::condition_variable slots_cv_;
  std::condition_variable watch_cv_;
  std::deque<Taken> queue_;
  RunPolicy policy_;
  bool watchdog_parked_ = false;
};

}  // namespace pgjobs::worker
