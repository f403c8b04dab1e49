// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <vector>

#include "pgjobs/worker/job.h"
#include "shutdown.h"

namespace pgjobs::worker {

/// A handler that POSTs {"job_id", "task", "attempt", "arguments"} to `url` with `headers`
/// ("Name: value" lines); 2xx is success, anything else a failure with the status and the tail
/// of the body. The job's deadline, or the end of `shutdown`'s grace when earlier (read while
/// the request runs), bounds the request; reaching it is a timeout.
Handler HttpHandler(std::string url, std::vector<std::string> headers, const Shutdown& shutdown);

}  // namespace pgjobs::worker
