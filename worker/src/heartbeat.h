// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "cancellations.h"
#include "metrics.h"
#include "pgjobs/db/connection.h"
#include "pgjobs/log/logger.h"
#include "shutdown.h"
#include "sql_handler.h"
#include "status.h"

namespace pgjobs::worker {

/// The heartbeat thread's loop: beats every `interval` once the dispatcher registered the
/// worker, reads which of its running jobs were cancelled (jobs.cancel) and stops them, and
/// unregisters the worker when the shutdown begins (a worker that cannot shows as stale).
void RunHeartbeat(const db::ConnectOptions& options, std::chrono::milliseconds interval,
                  WorkerMetrics& metrics, log::Logger& logger, const Status& status,
                  Cancellations& cancellations, SqlCancels& sql_cancels, const Shutdown& shutdown);

}  // namespace pgjobs::worker
