// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <cstddef>

#include "pgjobs/worker/job.h"

namespace pgjobs::worker {

/// The longest traceback the worker stores for one attempt (the database takes 16 KiB).
inline constexpr size_t kMaxTracebackBytes = 4096;

/// The one rule that decides a job's final outcome from what its handler returned, when it
/// returned, and the deadlines. Pure; every handler kind's result goes through it.
///  - A success that came back after the job's deadline is a timeout, unless `committed` (the
///    sql handler's ack committed with the work: that success is final).
///  - A timeout caused by a shutdown (its grace ended before the job's own deadline) is a
///    failure that says so: the job itself did not run out of time.
///  - Every error becomes safe text (SafeTail) of at most kMaxTracebackBytes.
Outcome FinalOutcome(const Outcome& returned, bool committed,
                     std::chrono::steady_clock::time_point returned_at,
                     std::chrono::steady_clock::time_point job_deadline,
                     std::chrono::steady_clock::time_point shutdown_deadline);

}  // namespace pgjobs::worker
