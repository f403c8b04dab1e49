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

namespace pgjobs::testing {
namespace {

constexpr const char* kTemplate = "pgjobs_template";

std::string Tail(const std::string& path, size_t bytes = 2000) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string all = ss.str();
  return all.size() > bytes ? all.substr(all.size() - bytes) : all;
}

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    throw Error("cannot find a free loopback port");
  }
  close(fd);
  return ntohs(addr.sin_port);
}

std::string BinDir() {
  for (const char* dir : {"/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin"}) {
    if (std::filesystem::exists(std::string(dir) + "/initdb")) return dir;
  }
  throw Error(
      "PostgreSQL server binaries not found in /usr/lib/postgresql/15/bin "
      "(install postgresql-15)");
}

bool IsRoot() { return geteuid() == 0; }

// The pid in postmaster.pid, or 0.
pid_t PostmasterPid(const std::string& data_dir) {
  std::ifstream in(data_dir + "/postmaster.pid");
  long pid = 0;
  in >> pid;
  return static_cast<pid_t>(pid);
}

}  // namespace

void RunAsPostgres(const std::vector<std::string>& argv, const std::string& log) {
  std::vector<std::string> full;
  if (IsRoot()) full = {"/usr/sbin/runuser", "-u", "postgres", "--"};
  full.insert(full.end(), argv.begin(), argv.end());
  const pid_t pid = fork();
  if (pid == 0) {
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<char*> args;
    for (auto& a : full) args.push_back(a.data());
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw Error(argv[0] + " failed; log " + log + ":\n" + Tail(log));
  }
}

PgCluster& PgCluster::Shared() {
  static PgCluster cluster;
  return cluster;
}

PgCluster::PgCluster() : bin_dir_(BinDir()) {
  char tmpl[] = "/tmp/pgjobs-test-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) throw Error("mkdtemp failed");
  dir_ = tmpl;
  data_dir_ = dir_ + "/data";
  if (IsRoot()) {
    const passwd* pw = getpwnam("postgres");
    if (pw == nullptr) throw Error("running as root needs the 'postgres' user (postgresql-15)");
    if (chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) throw Error("chown " + dir_ + " failed");
  }
  StartGuard();
  RunAsPostgres({bin_dir_ + "/initdb", "-D", data_dir_, "-A", "trust", "-U", "postgres",
                 "--no-sync", "-E", "UTF8", "--locale=C"},
                dir_ + "/initdb.log");
  // Throwaway data: durability off for speed. The benchmarks run their own cluster with defaults.
  std::ofstream conf(data_dir_ + "/postgresql.conf", std::ios::app);
  conf << "listen_addresses = '127.0.0.1'\nunix_socket_directories = '" << dir_ << "'\n"
       << "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
       << "max_connections = 200\nlog_min_messages = warning\n";
  conf.close();
  for (int attempt = 0;; ++attempt) {
    port_ = FreePort();
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
  RunAsPostgres({bin_dir_ + "/pg_ctl", "-D", data_dir_, "-w", "-t", "60", "-l",
                 dir_ + "/server.log", "-o", "-p " + std::to_string(port_), "start"},
                dir_ + "/pg_ctl.log");
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
