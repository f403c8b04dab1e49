// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <memory>
#include <string>

#include "tests/harness/background_process.h"

namespace pgjobs::testing {

/// Debian's PgBouncer in front of a test cluster, on a free loopback port, in a temporary
/// directory removed with it. Every database of the cluster is reachable through it as the
/// superuser. Runs as the `postgres` user when the tests run as root (PgBouncer refuses root).
class PgBouncer {
 public:
  /// `pool_mode` is PgBouncer's (session, transaction); `pool_size` the server connections per
  /// database and user: small, so that clients share server sessions and session state shows.
  /// Throws pgjobs::Error with PgBouncer's output when it does not come up.
  PgBouncer(int upstream_port, const std::string& pool_mode, int pool_size);
  ~PgBouncer();
  PgBouncer(const PgBouncer&) = delete;
  PgBouncer& operator=(const PgBouncer&) = delete;

  /// A libpq DSN for `dbname` through PgBouncer.
  std::string Dsn(const std::string& dbname) const;
  int Port() const { return port_; }
  std::string Output() const { return process_->Output(); }

 private:
  std::string dir_;
  int port_ = 0;
  std::unique_ptr<BackgroundProcess> process_;
};

/// The value of `key` in a libpq key=value DSN ("" when absent).
std::string DsnValue(const std::string& dsn, const std::string& key);

}  // namespace pgjobs::testing
