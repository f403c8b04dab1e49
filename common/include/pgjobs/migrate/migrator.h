// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "pgjobs/db/connection.h"

namespace pgjobs::migrate {

/// One version of the schema: the SQL that upgrades the previous version to this one.
struct Migration {
  int version;
  std::string name;
  std::string sql;
};

/// The migrations built into this binary from sql/, in version order.
const std::vector<Migration>& BundledMigrations();

/// A version as the database records it, or as this binary would apply it.
struct VersionStatus {
  int version;
  std::string name;
  /// When it was applied (the database's text form), or std::nullopt when pending.
  std::optional<std::string> applied_at;
};

/// Lists every known version: those recorded in jobs.schema_migrations and those in `migrations`
/// not yet applied, ordered by version. Throws pgjobs::Error if the database holds a version this
/// binary does not know with a different name, or one whose recorded checksum differs from the
/// bundled SQL (the migration was edited after it was applied); DbError on database errors.
std::vector<VersionStatus> Status(db::Connection& conn, const std::vector<Migration>& migrations);

/// Applies every migration newer than the database's version, up to and including
/// `target_version` when given, in one transaction: an upgrade is all or nothing, and a failure
/// leaves the database as it was. Concurrent callers are serialised by an advisory lock.
/// Returns the versions applied (empty when already current). Throws pgjobs::Error naming the
/// migration that failed, with PostgreSQL's message.
std::vector<int> Apply(db::Connection& conn, const std::vector<Migration>& migrations,
                       std::optional<int> target_version = std::nullopt);

}  // namespace pgjobs::migrate
