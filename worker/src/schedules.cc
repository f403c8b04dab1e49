// SPDX-License-Identifier: Apache-2.0
#include "schedules.h"

#include <memory>

#include "backoff.h"
#include "taken.h"

namespace pgjobs::worker {

void SetSchedules(const db::ConnectOptions& options,
                  const std::vector<WorkerConfig::Schedule>& schedules, log::Logger& logger,
                  const Shutdown& shutdown) {
  if (schedules.empty()) return;
  Backoff backoff(std::chrono::milliseconds(100), std::chrono::seconds(5));
  while (!shutdown.Stopping()) {
    try {
      db::Connection conn(options);
      // One transaction: a refused schedule leaves the table as it was.
      conn.Execute("begin", "BEGIN");
      for (const WorkerConfig::Schedule& s : schedules) {
        try {
          conn.Query("schedule", "SELECT jobs.schedule($1, $2, $3, $4::jsonb, $5, $6)",
                     {s.name, s.cron, s.task,
                      s.arguments_json.empty() ? std::optional<std::string>()
                                               : std::optional<std::string>(s.arguments_json),
                      s.timezone, s.missed});
        } catch (const db::DbError& e) {
          if (e.BadValue()) throw Error(s.where + ": " + e.ServerMessage());
          if (e.MissingObject()) {
            throw Error(s.where +
                        ": the database's jobs schema has no recurring jobs; upgrade it with "
                        "jobs-migrate");
          }
          throw;
        }
      }
      conn.Execute("commit", "COMMIT");
      logger.Info("schedules set", {{"schedules", std::to_string(schedules.size())}});
      return;
    } catch (const db::DbError& e) {
      logger.Warn("database unreachable, retrying", {{"role", "schedules"}, {"err", e.what()}});
      shutdown.Pause(backoff.Next());
    }
  }
}

}  // namespace pgjobs::worker
