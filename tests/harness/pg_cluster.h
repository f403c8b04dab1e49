// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <vector>

#include "pgjobs/db/connection.h"

namespace pgjobs::testing {

/// A throwaway PostgreSQL 15 cluster, made and started by scripts/pg-cluster (initdb into a
/// temporary directory, a free loopback port, the unprivileged `postgres` user when the tests run
/// as root). A guard process stops the
/// postmaster by its pid and removes the directory when this process exits for any reason,
/// including a crash or a failed assertion.
class PgCluster {
 public:
  /// The cluster of this test process, started (and the template database migrated) on first
  /// use. Throws pgjobs::Error when it cannot start, with the server log's tail.
  static PgCluster& Shared();

  PgCluster(const PgCluster&) = delete;
  PgCluster& operator=(const PgCluster&) = delete;
  ~PgCluster();

  /// A libpq DSN for `dbname` as the superuser.
  std::string Dsn(const std::string& dbname) const;
  /// Creates a new database copied from the migrated template and returns its DSN.
  std::string FreshDatabase();
  /// Creates a new empty database (no schema) and returns its DSN.
  std::string EmptyDatabase();
  /// The TCP port the server listens on (127.0.0.1).
  int Port() const { return port_; }
  /// The directory of the server's programs (pg_dump among them).
  const std::string& BinDir() const { return bin_dir_; }
  /// Stops the server (fast shutdown) and waits for it; Start() brings it back on the same port.
  void Stop();
  /// Starts the server again after Stop().
  void Start();
  /// Runs SQL as the superuser in database `dbname`.
  void Sql(const std::string& dbname, const std::string& sql) const;

 private:
  PgCluster();
  std::string NextDatabaseName();
  void StartGuard();

  std::string bin_dir_;
  std::string dir_;
  std::string data_dir_;
  int port_ = 0;
  int guard_pipe_ = -1;
  int next_db_ = 0;
  bool running_ = false;
};

/// Runs scripts/pg-cluster with `args` (the one place that starts throwaway clusters) and
/// returns its output without the final newline; throws pgjobs::Error with its stderr when it
/// fails.
std::string RunScript(const std::vector<std::string>& args);

}  // namespace pgjobs::testing
