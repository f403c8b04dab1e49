// SPDX-License-Identifier: Apache-2.0
#include "tests/harness/pg_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "pgjobs/error.h"
#include "pgjobs/migrate/migrator.h"
#include "tests/harness/process.h"

namespace pgjobs::testing {
namespace {

constexpr const char* kTemplate = "pgjobs_template";

std::string FindBinDir() {
  for (const char* dir : {"/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin"}) {
    if (std::filesystem::exists(std::string(dir) + "/initdb")) return dir;
  }
  throw Error(
      "PostgreSQL server binaries not found in /usr/lib/postgresql/15/bin "
      "(install postgresql-15)");
}

// The pid in postmaster.pid, or 0.
pid_t PostmasterPid(const std::string& data_dir) {
  std::ifstream in(data_dir + "/postmaster.pid");
  long pid = 0;
  in >> pid;
  return static_cast<pid_t>(pid);
}

}  // namespace

std::string RunScript(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {std::string(PGJOBS_SOURCE_DIR) + "/scripts/pg-cluster"};
  argv.insert(argv.end(), args.begin(), args.end());
  ProcessResult r = RunProcess(argv);
  if (r.exit_code != 0) {
    throw Error("scripts/pg-cluster " + args.front() + " failed (status " +
                std::to_string(r.exit_code) + "): " + r.err);
  }
  std::string out = r.out;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

PgCluster& PgCluster::Shared() {
  static PgCluster cluster;
  return cluster;
}

PgCluster::PgCluster() : bin_dir_(FindBinDir()) {
  char tmpl[] = "/tmp/pgjobs-test-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) throw Error("mkdtemp failed");
  dir_ = tmpl;
  data_dir_ = dir_ + "/data";
  StartGuard();
  RunScript({"init", dir_});
  for (int attempt = 0;; ++attempt) {
    try {
      Start();
      break;
    } catch (const Error&) {
      if (attempt == 3) throw;  // another process took the port between probe and bind
    }
  }
  Sql("postgres", std::string("CREATE DATABASE ") + kTemplate);
  {
    db::Connection conn(db::ConnectOptions{.dsn = Dsn(kTemplate)});
    migrate::Apply(conn, migrate::BundledMigrations());
  }
}

void PgCluster::StartGuard() {
  int fds[2];
  if (pipe(fds) != 0) throw Error("pipe failed");
  const std::string data_dir = data_dir_;
  const std::string dir = dir_;
  const pid_t pid = fork();
  if (pid == 0) {
    // The guard: wait until the test process closes the pipe (at exit, or by dying), then stop
    // the postmaster by its pid and remove the directory.
    close(fds[1]);
    setsid();
    char byte;
    while (read(fds[0], &byte, 1) != 0) {
    }
    const pid_t pm = PostmasterPid(data_dir);
    if (pm > 0 && kill(pm, SIGQUIT) == 0) {
      for (int i = 0; i < 100 && kill(pm, 0) == 0; ++i) usleep(50000);
    }
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    _exit(0);
  }
  close(fds[0]);
  fcntl(fds[1], F_SETFD, FD_CLOEXEC);
  guard_pipe_ = fds[1];
}

PgCluster::~PgCluster() {
  try {
    Stop();
  } catch (const Error&) {
    // The guard still stops it by pid.
  }
  if (guard_pipe_ >= 0) close(guard_pipe_);
}

std::string PgCluster::Dsn(const std::string& dbname) const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " user=postgres dbname=" + dbname;
}

void PgCluster::Start() {
  // Throwaway data: durability off for speed. The benchmarks run their own cluster with defaults.
  const std::string port = RunScript({"start", dir_, std::to_string(port_), "-c", "fsync=off", "-c",
                                      "synchronous_commit=off", "-c", "full_page_writes=off", "-c",
                                      "max_connections=200", "-c", "log_min_messages=warning"});
  port_ = std::stoi(port);
  running_ = true;
}

void PgCluster::Stop() {
  if (!running_) return;
  const pid_t pm = PostmasterPid(data_dir_);
  running_ = false;
  if (pm <= 0) return;
  kill(pm, SIGINT);  // fast shutdown: disconnect clients, checkpoint, exit
  for (int i = 0; i < 600 && kill(pm, 0) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (kill(pm, 0) == 0) kill(pm, SIGQUIT);
}

void PgCluster::Sql(const std::string& dbname, const std::string& sql) const {
  db::Connection conn(db::ConnectOptions{.dsn = Dsn(dbname)});
  conn.Execute("test sql", sql);
}

std::string PgCluster::NextDatabaseName() { return "test_" + std::to_string(++next_db_); }

std::string PgCluster::FreshDatabase() {
  const std::string name = NextDatabaseName();
  Sql("postgres", "CREATE DATABASE " + name + " TEMPLATE " + kTemplate);
  return Dsn(name);
}

std::string PgCluster::EmptyDatabase() {
  const std::string name = NextDatabaseName();
  Sql("postgres", "CREATE DATABASE " + name);
  return Dsn(name);
}

}  // namespace pgjobs::testing
