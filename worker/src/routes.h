// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <map>
#include <string>

#include "metrics.h"
#include "pgjobs/http/server.h"
#include "shutdown.h"
#include "status.h"

namespace pgjobs::worker {

/// What jobs-worker serves over HTTP: the metrics at `metrics_path` (none when it is empty), a
/// landing page, /-/healthy (always 200 while it serves) and /-/ready (503 while the database is
/// unreachable or the worker stops).
std::map<std::string, http::Handler> Routes(const WorkerMetrics& metrics, const Status& status,
                                            const Shutdown& shutdown,
                                            const std::string& metrics_path);

}  // namespace pgjobs::worker
