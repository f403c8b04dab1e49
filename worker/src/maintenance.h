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
///
/// Behind a transaction pooler (options.pooling kTransaction) a session lock would stay on a
/// pooled server session: every maintenance statement then runs in its own transaction under
/// pg_try_advisory_xact_lock of the same key, and is skipped when another worker holds it. Each
/// worker then tries a round every `interval`; the lock keeps two from running at once.
void RunMaintenance(const db::ConnectOptions& options, const WorkerConfig::Maintenance& config,
                    WorkerMetrics& metrics, log::Logger& logger, const Shutdown& shutdown);

}  // namespace pgjobs::worker
