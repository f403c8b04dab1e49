// SPDX-License-Identifier: Apache-2.0
#include "command_handler.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "safe_text.h"

namespace pgjobs::worker {
namespace {

using Clock = std::chrono::steady_clock;

// stderr kept while a command runs; the outcome rule keeps the tail of it.
constexpr size_t kKeptStderr = size_t{64} * 1024;

int MillisecondsUntil(Clock::time_point until, int cap) {
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(until - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(ms, 0, cap));
}

// A descriptor that becomes readable when the process exits (Linux 5.3), or -1.
int OpenPidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  return -1;
#endif
}

// Blocks SIGPIPE on this thread while a command's stdin is written: a command that exits
// without reading all of it must cost an EPIPE, not the process. A SIGPIPE left pending is taken
// before the mask is restored.
class PipeSignalBlock {
 public:
  PipeSignalBlock() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_, &previous_);
  }
  ~PipeSignalBlock() {
    const timespec zero{0, 0};
    while (sigtimedwait(&pipe_, nullptr, &zero) > 0) {
    }
    pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
  }
  PipeSignalBlock(const PipeSignalBlock&) = delete;
  PipeSignalBlock& operator=(const PipeSignalBlock&) = delete;

 private:
  sigset_t pipe_;
  sigset_t previous_;
};

void CloseFd(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

Outcome RunCommand(const std::vector<std::string>& argv,
                   const std::vector<std::string>& environment, const Job& job,
                   const Shutdown& shutdown) {
  // Everything the child needs is built here: the worker is multithreaded, so nothing may
  // allocate or take a lock between fork and exec. posix_spawn does no more than exec needs.
  std::vector<std::string> env_strings = environment;
  env_strings.push_back("PGJOBS_JOB_ID=" + std::to_string(job.id));
  env_strings.push_back("PGJOBS_TASK=" + job.task);
  env_strings.push_back("PGJOBS_ATTEMPT=" + std::to_string(job.attempt));
  std::vector<char*> envp;
  for (std::string& entry : env_strings) envp.push_back(entry.data());
  envp.push_back(nullptr);
  std::vector<std::string> args_copy = argv;
  std::vector<char*> args;
  for (std::string& a : args_copy) args.push_back(a.data());
  args.push_back(nullptr);

  int in_pipe[2];
  int err_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) != 0) {
    return Outcome::Failure(std::string("cannot create pipes: ") + std::strerror(errno));
  }
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    close(in_pipe[0]);
    close(in_pipe[1]);
    return Outcome::Failure(std::string("cannot create pipes: ") + std::strerror(errno));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_pipe[0], 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  // Its own process group, so that a timeout kills whatever it started too; and the signals the
  // worker blocks or handles itself back to normal.
  posix_spawnattr_setpgroup(&attributes, 0);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attributes, &none);
  sigset_t defaults;
  sigemptyset(&defaults);
  for (int signal_number : {SIGTERM, SIGINT, SIGHUP, SIGPIPE}) sigaddset(&defaults, signal_number);
  posix_spawnattr_setsigdefault(&attributes, &defaults);
  posix_spawnattr_setflags(&attributes,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = 0;
  const int spawned = posix_spawnp(&pid, args[0], &actions, &attributes, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  close(in_pipe[0]);
  close(err_pipe[1]);
  int in_fd = in_pipe[1];
  int err_fd = err_pipe[0];
  if (spawned != 0) {
    CloseFd(in_fd);
    CloseFd(err_fd);
    return Outcome::Failure("cannot run " + argv[0] + ": " + std::strerror(spawned));
  }
  fcntl(in_fd, F_SETFL, O_NONBLOCK);
  fcntl(err_fd, F_SETFL, O_NONBLOCK);
  int exit_fd = OpenPidfd(pid);

  PipeSignalBlock no_sigpipe;
  const std::string& input = job.arguments;
  size_t written = 0;
  std::string err;
  bool exited = false;
  int status = 0;
  Clock::time_point linger_until;
  bool timed_out = false;
  bool cancelled = false;
  for (;;) {
    const Clock::time_point deadline = shutdown.For(job.deadline);
    if (Clock::now() >= deadline) {
      timed_out = true;
      break;
    }
    if (!exited && job.CancelRequested()) {
      cancelled = true;
      break;
    }
    if (!exited && waitpid(pid, &status, WNOHANG) == pid) {
      exited = true;
      linger_until = Clock::now() + kCommandLinger;
      CloseFd(exit_fd);
      CloseFd(in_fd);  // what it did not read, it did not want
    }
    if (exited && (err_fd < 0 || Clock::now() >= linger_until)) break;
    pollfd fds[3];
    nfds_t n = 0;
    if (in_fd >= 0) fds[n++] = {in_fd, POLLOUT, 0};
    if (err_fd >= 0) fds[n++] = {err_fd, POLLIN, 0};
    if (exit_fd >= 0) fds[n++] = {exit_fd, POLLIN, 0};
    // Without a pidfd the exit is noticed by looking every 10 ms.
    // A cancel (jobs.cancel) is noticed within 250 ms.
    int wait_ms = MillisecondsUntil(deadline, exit_fd >= 0 || exited ? 250 : 10);
    if (exited) wait_ms = std::min(wait_ms, MillisecondsUntil(linger_until, 1000));
    if (poll(fds, n, wait_ms) < 0 && errno != EINTR) break;
    for (nfds_t i = 0; i < n; ++i) {
      if (fds[i].revents == 0) continue;
      if (fds[i].fd == in_fd) {
        const size_t chunk = std::min<size_t>(input.size() - written, size_t{64} * 1024);
        const ssize_t w = chunk == 0 ? 0 : write(in_fd, input.data() + written, chunk);
        if (w > 0) written += static_cast<size_t>(w);
        if (written == input.size() || (w < 0 && errno != EAGAIN && errno != EINTR)) {
          CloseFd(in_fd);  // all sent (end of input), or the command closed its stdin
        }
      } else if (fds[i].fd == err_fd) {
        char buf[8192];
        const ssize_t r = read(err_fd, buf, sizeof buf);
        if (r > 0) {
          err.append(buf, static_cast<size_t>(r));
          if (err.size() > 2 * kKeptStderr) err.erase(0, err.size() - kKeptStderr);
        } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
          CloseFd(err_fd);
        }
      }
    }
  }
  CloseFd(in_fd);
  CloseFd(err_fd);
  CloseFd(exit_fd);
  // Whatever is left in its group goes: the command's own exit has decided.
  kill(-pid, SIGKILL);
  if (!exited) waitpid(pid, &status, 0);
  if (cancelled) {
    return Outcome::Failure("cancelled: " + argv[0] + " was killed (jobs.cancel)");
  }
  if (timed_out) {
    return Outcome::Timeout("timeout: " + argv[0] + " ran past the job's timeout and was killed");
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return Outcome::Success();
  const std::string how = WIFEXITED(status)
                              ? "exited with status " + std::to_string(WEXITSTATUS(status))
                              : std::string("killed by signal ") + strsignal(WTERMSIG(status));
  err = SafeTail(err, 2000);
  return Outcome::Failure(argv[0] + " " + how + (err.empty() ? "" : ": " + err));
}

}  // namespace

Handler CommandHandler(std::vector<std::string> argv, std::vector<std::string> environment,
                       const Shutdown& shutdown) {
  return [argv = std::move(argv), environment = std::move(environment), &shutdown](const Job& job) {
    return RunCommand(argv, environment, job, shutdown);
  };
}

}  // namespace pgjobs::worker
