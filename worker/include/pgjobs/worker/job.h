// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <string>

namespace pgjobs::worker {

/// A job as a handler sees it.
struct Job {
  long long id = 0;
  std::string task;
  /// The job's arguments as JSON text ("null" when none).
  std::string arguments = "null";
  /// The number of this attempt, from 1.
  int attempt = 1;
  int max_retries = 0;
  /// When the job's timeout runs out; a handler should give up by then.
  std::chrono::steady_clock::time_point deadline;
  /// Where the worker marks the job cancelled while it runs (jobs.cancel; the worker reads the
  /// marks with each heartbeat); read it with CancelRequested. Null outside a worker.
  const std::atomic<long long>* cancel_mark = nullptr;

  /// Whether an operator cancelled the job while it runs. A handler that can should stop and
  /// return a failure: the job then ends as cancelled. One that returns a success anyway has
  /// done the work: the job succeeds.
  bool CancelRequested() const {
    return cancel_mark != nullptr && cancel_mark->load(std::memory_order_relaxed) == id;
  }
};

/// What a handler reports.
struct Outcome {
  enum class Kind { kSuccess, kFailure, kTimeout };
  Kind kind = Kind::kSuccess;
  /// For failures and timeouts: what went wrong, kept as the job's traceback.
  std::string error;

  static Outcome Success() { return {Kind::kSuccess, ""}; }
  static Outcome Failure(std::string error) { return {Kind::kFailure, std::move(error)}; }
  static Outcome Timeout(std::string error) { return {Kind::kTimeout, std::move(error)}; }
};

/// Runs one job. Called on the worker's executor threads, concurrently for different jobs; it
/// touches neither the database nor the metrics. An exception escaping it is reported as a
/// failure with its message. A handler that returns after the deadline is reported as a timeout.
using Handler = std::function<Outcome(const Job&)>;

}  // namespace pgjobs::worker
