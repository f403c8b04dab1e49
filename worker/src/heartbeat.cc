// SPDX-License-Identifier: Apache-2.0
#include "heartbeat.h"

#include "queue_sql.h"

namespace pgjobs::worker {

void RunHeartbeat(const db::ConnectOptions& options, std::chrono::milliseconds interval,
                  WorkerMetrics& metrics, log::Logger& logger, const Status& status,
                  Cancellations& cancellations, SqlCancels& sql_cancels, const Shutdown& shutdown) {
  std::unique_ptr<db::Connection> conn;
  bool cancels_readable = true;
  while (shutdown.Pause(interval)) {
    if (status.worker_id == 0) continue;
    const auto start = Clock::now();
    try {
      if (!conn) conn = std::make_unique<db::Connection>(options);
      queue_sql::Heartbeat(*conn, status.worker_id);
      std::vector<long long> marked;
      if (cancels_readable) {
        try {
          marked = queue_sql::CancelRequested(*conn, status.worker_id);
        } catch (const db::DbError& e) {
          if (!e.MissingObject()) throw;  // a schema before version 12
          cancels_readable = false;
          logger.Warn(
              "the jobs schema predates version 12: jobs.cancel cannot stop this worker's "
              "running jobs; run jobs-migrate",
              {{"err", e.what()}});
        }
      }
      metrics.DbCall("heartbeat", std::chrono::duration<double>(Clock::now() - start).count(),
                     false);
      cancellations.Request(marked);
      if (!marked.empty()) sql_cancels.CancelMarked();
    } catch (const db::DbError& e) {
      metrics.DbCall("heartbeat", std::chrono::duration<double>(Clock::now() - start).count(),
                     true);
      if (conn && !conn->IsOpen()) conn.reset();
    }
  }
  if (status.worker_id == 0) return;
  try {
    if (!conn || !conn->IsOpen()) conn = std::make_unique<db::Connection>(options);
    queue_sql::Unregister(*conn, status.worker_id);
  } catch (const db::DbError& e) {
    logger.Warn("cannot unregister; the worker will show as stale", {{"err", e.what()}});
  }
}

}  // namespace pgjobs::worker
