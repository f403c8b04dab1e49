// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "metrics.h"
#include "pgjobs/db/connection.h"
#include "pgjobs/log/logger.h"
#include "pgjobs/worker/config.h"
#include "shutdown.h"

namespace pgjobs::worker {

/// The advisory lock (session level) whose holder runs the maintenance for every worker of its
/// database; documented, so that an operator can see who holds it in pg_locks.
inline constexpr long long kMaintenanceLockKey = 7061021001;

/// The maintenance thread's loop: tries to take kMaintenanceLockKey every `takeover`; while it
/// holds it, runs jobs.maintain every `interval` (expire, prune, forget long-gone workers) and
/// prunes on, a batch per transaction, until nothing past retention is left. The lock goes with
/// the session: when this worker dies or loses its connection, another takes over.
void RunMaintenance(const db::ConnectOptions& options, const WorkerConfig::Maintenance& config,
                    WorkerMetrics& metrics, log::Logger& logger, const Shutdown& shutdown);

}  // namespace pgjobs::worker
