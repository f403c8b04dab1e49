// SPDX-License-Identifier: Apache-2.0
#include "tests/harness/pgbouncer.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "pgjobs/error.h"
#include "tests/harness/pg_cluster.h"

namespace pgjobs::testing {

PgBouncer::PgBouncer(int upstream_port, const std::string& pool_mode, int pool_size) {
  const std::string binary = "/usr/sbin/pgbouncer";
  if (!std::filesystem::exists(binary)) throw Error(binary + " not found (install pgbouncer)");
  char tmpl[] = "/tmp/pgjobs-pgbouncer-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) throw Error("mkdtemp failed");
  dir_ = tmpl;
  chmod(dir_.c_str(), 0755);  // read by the postgres user
  std::ofstream(dir_ + "/users.txt") << "\"postgres\" \"\"\n";
  for (int attempt = 0;; ++attempt) {
    port_ = std::stoi(RunScript({"free-port"}));
    std::ofstream(dir_ + "/pgbouncer.ini")
        << "[databases]\n* = host=127.0.0.1 port=" << upstream_port << "\n"
        << "[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = " << port_ << "\n"
        << "unix_socket_dir =\nauth_type = trust\nauth_file = " << dir_ << "/users.txt\n"
        << "pool_mode = " << pool_mode << "\ndefault_pool_size = " << pool_size << "\n"
        << "max_client_conn = 500\n";
    std::vector<std::string> argv{binary};
    if (geteuid() == 0) argv.insert(argv.end(), {"-u", "postgres"});
    argv.push_back(dir_ + "/pgbouncer.ini");
    process_ = std::make_unique<BackgroundProcess>(argv, std::vector<std::string>{});
    if (process_->WaitForOutput("process up", 10000)) return;
    // Another process took the port between probe and bind: try another.
    if (attempt == 3) throw Error("pgbouncer did not start: " + process_->Output());
  }
}

PgBouncer::~PgBouncer() {
  process_.reset();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string PgBouncer::Dsn(const std::string& dbname) const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " user=postgres dbname=" + dbname;
}

std::string DsnValue(const std::string& dsn, const std::string& key) {
  std::istringstream in(dsn);
  std::string word;
  while (in >> word) {
    if (word.rfind(key + "=", 0) == 0) return word.substr(key.size() + 1);
  }
  return "";
}

}  // namespace pgjobs::testing
