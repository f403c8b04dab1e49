#pragma once

#include "metrics.h"
#include "pgjobs/db/connection.h"
#include "pgjobs/log/logger.h"
#include "shutdown.h"
#include "status.h"

namespace pgjobs::worker {

/// The heartbeat thread's loop: beats every `interval` once the dispatcher registered the
/// worker, and unregisters it when the shutdown begins (a worker that cannot shows as stale).
void RunHeartbeat(const db::ConnectOptions& options, std::chrono::milliseconds interval,
                  WorkerMetrics& metrics, log::Logger& logger, const Status& status,
                  const Shutdown& shutdown);

}  // namespace pgjobs::worker
