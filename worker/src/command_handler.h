// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <vector>

#include "pgjobs/worker/job.h"
#include "shutdown.h"

namespace pgjobs::worker {

/// A handler that runs `argv` directly (no shell) in its own process group, with the job's
/// arguments as JSON on stdin (written while stdout and stderr are read, so an argument of any
/// size arrives whole) and an environment of `environment` (NAME=value entries) plus
/// PGJOBS_JOB_ID, PGJOBS_TASK and PGJOBS_ATTEMPT, nothing else. The command's exit decides:
/// 0 is success, anything else a failure with the tail of stderr. Once it exited, what it left
/// running in its group gets kCommandLinger to close stderr, then is killed. At the job's
/// deadline, or the end of `shutdown`'s grace when earlier (read while it runs), the group is
/// killed and the outcome is a timeout.
Handler CommandHandler(std::vector<std::string> argv, std::vector<std::string> environment,
                       const Shutdown& shutdown);

/// How long output of a command's leftover processes is still read after it exited.
inline constexpr std::chrono::milliseconds kCommandLinger{100};

}  // namespace pgjobs::worker
