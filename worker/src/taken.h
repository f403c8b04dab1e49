// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>

#include "pgjobs/worker/job.h"

namespace pgjobs::worker {

using Clock = std::chrono::steady_clock;

/// A job taken from the queue, with what the worker needs to run and report it.
struct Taken {
  Job job;
  /// Seconds from publish to this attempt's start, on the database's clock.
  double since_publish = 0;
  /// When the worker took it, on this process's clock.
  Clock::time_point started;
  /// What it adds to the run queue's expected work (see RunPolicy).
  double expected_seconds = 0;
};

/// What running a job produced, on its way to the completer.
struct Result {
  Taken taken;
  /// The final outcome (see FinalOutcome).
  Outcome outcome;
  /// How the result reaches the database.
  enum class Report {
    kByCompleter,  ///< the completer acks or nacks it
    kCommitted,    ///< the sql handler committed its ack with the work
    kLate,         ///< the database refused it, or its commit's outcome is unknown: never replay
  };
  Report report = Report::kByCompleter;
  /// Handler run time (for a batched sql job, its transaction's).
  double run_seconds = 0;
  /// This job's share of its executor's busy time.
  double busy_seconds = 0;
  /// jobs.cancel marked it while this worker held it: a failure then ends it as cancelled. Read
  /// before the executor's slot moves on to other jobs, which clears the mark.
  bool cancel_requested = false;
};

}  // namespace pgjobs::worker
