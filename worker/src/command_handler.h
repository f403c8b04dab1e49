#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "pgjobs/worker/job.h"

namespace pgjobs::worker {

/// A handler that runs `argv` directly (no shell) in its own process group, with the job's
/// arguments as JSON on stdin and PGJOBS_JOB_ID, PGJOBS_TASK, PGJOBS_ATTEMPT in the environment.
/// Exit 0 is success; anything else a failure with the tail of stderr. At the deadline the whole
/// process group is killed and the outcome is a timeout. `abort_at` (steady-clock ticks, may be
/// null) is read while the command runs: the worker's shutdown grace ends it the same way.
Handler CommandHandler(std::vector<std::string> argv,
                       const std::atomic<std::chrono::steady_clock::rep>* abort_at = nullptr);

/// A handler that POSTs {"job_id", "task", "attempt", "arguments"} to `url`; 2xx is success,
/// anything else a failure with the status and the tail of the body; the deadline bounds the
/// request.
Handler HttpHandler(std::string url, std::vector<std::string> headers);

/// The last `bytes` bytes of `text`, prefixed with "..." when cut; pure.
std::string Tail(const std::string& text, size_t bytes = 2000);

}  // namespace pgjobs::worker
