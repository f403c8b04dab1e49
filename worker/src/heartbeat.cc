#include "heartbeat.h"

#include "queue_sql.h"

namespace pgjobs::worker {

void RunHeartbeat(const db::ConnectOptions& options, std::chrono::milliseconds interval,
                  WorkerMetrics& metrics, log::Logger& logger, const Status& status,
                  const Shutdown& shutdown) {
  std::unique_ptr<db::Connection> conn;
  while (shutdown.Pause(interval)) {
    if (status.worker_id == 0) continue;
    const auto start = Clock::now();
    try {
      if (!conn) conn = std::make_unique<db::Connection>(options);
      queue_sql::Heartbeat(*conn, status.worker_id);
      metrics.DbCall("heartbeat", std::chrono::duration<double>(Clock::now() - start).count(),
                     false);
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
