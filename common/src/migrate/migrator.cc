// SPDX-License-Identifier: Apache-2.0
#include "pgjobs/migrate/migrator.h"

#include <algorithm>
#include <map>

namespace pgjobs::migrate {
namespace {

// Serialises jobs-migrate runs against one database (any 64-bit constant of our own).
constexpr const char* kLockKey = "7238510458217003";

constexpr const char* kBootstrap = R"sql(
SET LOCAL client_min_messages = warning;
CREATE SCHEMA IF NOT EXISTS jobs;
CREATE TABLE IF NOT EXISTS jobs.schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
)sql";

struct Applied {
  std::string name;
  std::string checksum;
  std::string applied_at;
};

// Whether jobs.schema_migrations exists, without creating anything.
bool HasVersionTable(db::Connection& conn) {
  db::Result r = conn.Query("find jobs.schema_migrations",
                            "SELECT to_regclass('jobs.schema_migrations') IS NOT NULL");
  return r.Text(0, 0) == "t";
}

std::map<int, Applied> ReadApplied(db::Connection& conn) {
  std::map<int, Applied> applied;
  if (!HasVersionTable(conn)) return applied;
  db::Result r = conn.Query("read jobs.schema_migrations",
                            "SELECT version, name, checksum, applied_at::text "
                            "FROM jobs.schema_migrations ORDER BY version");
  for (int row = 0; row < r.Rows(); ++row) {
    applied[static_cast<int>(r.Int(row, 0))] = Applied{
        std::string(r.Text(row, 1)), std::string(r.Text(row, 2)), std::string(r.Text(row, 3))};
  }
  return applied;
}

std::string Checksum(db::Connection& conn, const Migration& m) {
  db::Result r = conn.Query("checksum migration", "SELECT md5($1)", {m.sql});
  return std::string(r.Text(0, 0));
}

std::string Label(const Migration& m) {
  return "migration " + std::to_string(m.version) + " (" + m.name + ")";
}

// Refuses a database whose history disagrees with the bundled migrations.
void CheckHistory(db::Connection& conn, const std::vector<Migration>& migrations,
                  const std::map<int, Applied>& applied) {
  for (const Migration& m : migrations) {
    auto it = applied.find(m.version);
    if (it == applied.end()) continue;
    if (it->second.name != m.name) {
      throw Error("database records migration " + std::to_string(m.version) + " as '" +
                  it->second.name + "', but this jobs-migrate calls it '" + m.name + "'");
    }
    if (it->second.checksum != Checksum(conn, m)) {
      throw Error(Label(m) + " was changed after it was applied (checksum " + it->second.checksum +
                  " in the database); restore the original file and add a new migration instead");
    }
  }
}

}  // namespace

std::vector<VersionStatus> Status(db::Connection& conn, const std::vector<Migration>& migrations) {
  const std::map<int, Applied> applied = ReadApplied(conn);
  CheckHistory(conn, migrations, applied);
  std::vector<VersionStatus> out;
  for (const auto& [version, a] : applied) out.push_back({version, a.name, a.applied_at});
  for (const Migration& m : migrations) {
    if (!applied.contains(m.version)) out.push_back({m.version, m.name, std::nullopt});
  }
  std::sort(out.begin(), out.end(),
            [](const VersionStatus& a, const VersionStatus& b) { return a.version < b.version; });
  return out;
}

std::vector<int> Apply(db::Connection& conn, const std::vector<Migration>& migrations,
                       std::optional<int> target_version) {
  std::vector<int> done;
  conn.Execute("begin", "BEGIN");
  try {
    conn.Query("lock migrations", "SELECT pg_advisory_xact_lock($1::bigint)", {kLockKey});
    conn.Execute("create jobs.schema_migrations", kBootstrap);
    const std::map<int, Applied> applied = ReadApplied(conn);
    CheckHistory(conn, migrations, applied);
    const int newest_known = migrations.empty() ? 0 : migrations.back().version;
    if (!applied.empty() && applied.rbegin()->first > newest_known) {
      throw Error("database is at version " + std::to_string(applied.rbegin()->first) +
                  ", newer than this jobs-migrate knows (" + std::to_string(newest_known) + ")");
    }
    for (const Migration& m : migrations) {
      if (applied.contains(m.version)) continue;
      if (target_version && m.version > *target_version) break;
      conn.Execute(Label(m), m.sql);  // errors read "migration 2 (stats): ERROR: ..."
      conn.Query("record migration",
                 "INSERT INTO jobs.schema_migrations (version, name, checksum) "
                 "VALUES ($1, $2, md5($3))",
                 {std::to_string(m.version), m.name, m.sql});
      done.push_back(m.version);
    }
    conn.Execute("commit", "COMMIT");
  } catch (...) {
    if (conn.IsOpen()) {
      try {
        conn.Execute("rollback", "ROLLBACK");
      } catch (const db::DbError&) {
        // The original error says more than a failed rollback; the server rolls back anyway
        // when the session ends.
      }
    }
    throw;
  }
  return done;
}

}  // namespace pgjobs::migrate
