// SPDX-License-Identifier: Apache-2.0
#include "maintenance.h"

#include <algorithm>
#include <memory>

#include "pgjobs/log/failure_log.h"
#include "taken.h"

namespace pgjobs::worker {
namespace {

std::string Interval(std::chrono::milliseconds d) {
  return std::to_string(d.count()) + " milliseconds";
}

// Runs one maintenance statement. In session pooling the caller holds the session lock; behind a
// transaction pooler the statement runs in a transaction of its own that takes the lock first,
// and std::nullopt means another worker holds it. Throws db::DbError.
std::optional<db::Result> Locked(db::Connection& conn, bool per_statement_lock,
                                 std::string_view name, const std::string& sql,
                                 const db::Params& params = {}) {
  if (!per_statement_lock) return conn.Query(name, sql, params);
  conn.Execute("begin maintenance", "BEGIN");
  try {
    if (conn.Query("maintenance lock", "SELECT pg_try_advisory_xact_lock($1::bigint)",
                   {std::to_string(kMaintenanceLockKey)})
            .Text(0, 0) != "t") {
      conn.Execute("end maintenance", "ROLLBACK");
      return std::nullopt;
    }
    db::Result r = conn.Query(name, sql, params);
    conn.Execute("end maintenance", "COMMIT");
    return r;
  } catch (const db::DbError&) {
    if (conn.IsOpen()) conn.Execute("end maintenance", "ROLLBACK");
    throw;
  }
}

// One round as the leader. Throws db::DbError.
void Round(db::Connection& conn, bool per_statement_lock, const WorkerConfig::Maintenance& config,
           WorkerMetrics& metrics, log::Logger& logger, const Shutdown& shutdown) {
  const std::string batch = std::to_string(config.prune_batch);
  db::Result steps;
  try {
    auto locked = Locked(conn, per_statement_lock, "maintain",
                         "SELECT step, n FROM jobs.maintain($1::interval, $2::int)",
                         {Interval(config.worker_retention), batch});
    if (!locked) return;  // another worker's round is running
    steps = *locked;
  } catch (const db::DbError&) {
    for (const char* step : MaintenanceSteps()) metrics.MaintenanceRun(step, false);
    throw;
  }
  long long pruned = 0;
  log::Fields fields;
  for (int i = 0; i < steps.Rows(); ++i) {
    const std::string step(steps.Text(i, 0));
    metrics.MaintenanceRun(step, true);
    if (step == "prune") pruned = steps.Int(i, 1);
    fields.emplace_back(step, std::string(steps.Text(i, 1)));
  }
  // A batch per transaction, so that no transaction holds many row locks or a long snapshot.
  long long last = pruned;
  while (last >= config.prune_batch) {
    const auto start = Clock::now();
    try {
      auto locked =
          Locked(conn, per_statement_lock, "prune", "SELECT jobs.prune($1::int)", {batch});
      if (!locked) break;  // another worker prunes now
      last = locked->Int(0, 0);
    } catch (const db::DbError&) {
      metrics.MaintenanceRun("prune", false);
      throw;
    }
    pruned += last;
    metrics.MaintenanceRun("prune", true);
    // At most prune_share of the time: pause for the rest.
    const auto took = Clock::now() - start;
    const auto pause =
        std::chrono::duration_cast<Clock::duration>(took * (1 / config.prune_share - 1));
    if (last >= config.prune_batch && !shutdown.Pause(pause)) break;
  }
  for (auto& [key, value] : fields) {
    if (key == "prune") value = std::to_string(pruned);
  }
  logger.Debug("maintenance round", fields);
}

// Publishes the due slots of recurring jobs, between rounds. Throws db::DbError.
void EnqueueSchedules(db::Connection& conn, bool per_statement_lock, WorkerMetrics& metrics) {
  try {
    if (!Locked(conn, per_statement_lock, "enqueue schedules", "SELECT jobs.enqueue_schedules()")) {
      return;
    }
  } catch (const db::DbError&) {
    metrics.MaintenanceRun("schedules", false);
    throw;
  }
  metrics.MaintenanceRun("schedules", true);
}

// When to look at the recurring jobs next: their next slot, or `look` from now at the latest.
Clock::time_point NextSlot(db::Connection& conn, Clock::duration look) {
  db::Result r = conn.Query("next slot", "SELECT jobs.seconds_until_next_slot()");
  const auto latest = Clock::now() + look;
  if (r.IsNull(0, 0)) return latest;
  const double seconds = std::max(0.0, r.Double(0, 0));
  return std::min(latest, Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(seconds)));
}

}  // namespace

void RunMaintenance(const db::ConnectOptions& options, const WorkerConfig::Maintenance& config,
                    WorkerMetrics& metrics, log::Logger& logger, const Shutdown& shutdown) {
  if (!config.enabled) return;
  std::unique_ptr<db::Connection> conn;
  bool leader = false;
  auto set_leader = [&](bool now) {
    if (now == leader) return;
    leader = now;
    metrics.MaintenanceLeader(leader);
    if (leader) {
      logger.Info("maintenance: this worker runs it now",
                  {{"lock", std::to_string(kMaintenanceLockKey)}});
    } else {
      logger.Warn("maintenance: this worker no longer runs it");
    }
  };
  metrics.MaintenanceLeader(false);
  const bool per_statement_lock = options.pooling == db::Pooling::kTransaction;
  log::FailureLog failures;  // a database that stays down is logged once a minute
  auto next_round = Clock::now();
  // When a recurring job's slot is due (jobs.seconds_until_next_slot), read again at least
  // every kSlotLook, so that a schedule set in SQL is seen soon.
  static constexpr auto kSlotLook = std::chrono::seconds(10);
  auto next_slot = Clock::now();
  do {
    try {
      if (!conn || !conn->IsOpen()) {
        set_leader(false);
        conn = std::make_unique<db::Connection>(options);
      }
      if (per_statement_lock) {
        // Every worker behind the pooler acts as one; Locked() keeps them from overlapping.
        set_leader(true);
      } else if (!leader) {
        set_leader(conn->Query("maintenance lock", "SELECT pg_try_advisory_lock($1::bigint)",
                               {std::to_string(kMaintenanceLockKey)})
                       .Text(0, 0) == "t");
        next_round = Clock::now();
      }
      if (leader && Clock::now() >= next_round) {
        next_round = Clock::now() + config.interval;
        Round(*conn, per_statement_lock, config, metrics, logger, shutdown);
      } else if (leader && Clock::now() >= next_slot) {
        EnqueueSchedules(*conn, per_statement_lock, metrics);
      }
      if (leader) next_slot = NextSlot(*conn, kSlotLook);
      if (failures.Succeeded("maintenance")) logger.Info("maintenance works again");
    } catch (const db::DbError& e) {
      next_slot = Clock::now() + kSlotLook;  // not again at once
      if (const auto left_out = failures.Failed("maintenance", Clock::now())) {
        log::Fields fields{{"err", e.what()}};
        if (*left_out > 0) fields.emplace_back("failures_not_logged", std::to_string(*left_out));
        logger.Warn("maintenance failed", fields);
      }
      if (conn && !conn->IsOpen()) {
        conn.reset();  // the lock went with the session
        set_leader(false);
      }
    }
  } while (shutdown.Pause(
      leader ? std::max(Clock::duration::zero(), std::min(next_round, next_slot) - Clock::now())
             : Clock::duration(config.takeover)));
}

}  // namespace pgjobs::worker
