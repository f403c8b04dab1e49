// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <mutex>
#include <set>
#include <vector>

namespace pgjobs::worker {

/// The cancel marks (jobs.cancel) on this worker's running jobs, as the heartbeat last read
/// them, where the handlers running those jobs see them (Job::CancelRequested). One slot per
/// executor, so that starting a job costs two atomic stores and no allocation. Thread-safe.
class Cancellations {
 public:
  explicit Cancellations(int slots);

  /// Executor `slot` starts job `job_id`: the mark its Job::cancel_mark points to. The mark
  /// equals the job's id once the job is cancelled (already, when it was marked before it
  /// started).
  const std::atomic<long long>* Track(int slot, long long job_id);
  /// Executor `slot`'s job returned.
  void Untrack(int slot);
  /// The marked jobs, as jobs.cancel_requested returns them: marks those running, and keeps the
  /// others for Track (jobs taken but not started yet).
  void Request(const std::vector<long long>& job_ids);

 private:
  std::vector<std::atomic<long long>> running_;  // per slot: the running job's id, or 0
  std::vector<std::atomic<long long>> marks_;    // per slot: the id last cancelled there
  std::atomic<bool> any_waiting_{false};         // whether waiting_ has ids
  std::mutex mutex_;
  std::set<long long> waiting_;  // marked jobs not running here (yet)
};

}  // namespace pgjobs::worker
