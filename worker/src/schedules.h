// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <vector>

#include "pgjobs/db/connection.h"
#include "pgjobs/log/logger.h"
#include "pgjobs/worker/config.h"
#include "shutdown.h"

namespace pgjobs::worker {

/// Sets the YAML's recurring jobs in jobs.schedules (jobs.schedule, which keeps a schedule that
/// did not change as it is), waiting for the database as long as it is unreachable. Throws
/// Error naming the schedule's place in the YAML when the database refuses one (a bad cron
/// expression or time zone), or when its schema predates recurring jobs.
void SetSchedules(const db::ConnectOptions& options,
                  const std::vector<WorkerConfig::Schedule>& schedules, log::Logger& logger,
                  const Shutdown& shutdown);

}  // namespace pgjobs::worker
