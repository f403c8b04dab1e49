#include "command_handler.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include "pgjobs/log/logger.h"

namespace pgjobs::worker {

std::string Tail(const std::string& text, size_t bytes) {
  if (text.size() <= bytes) return text;
  return "..." + text.substr(text.size() - bytes);
}

namespace {

int Remaining(std::chrono::steady_clock::time_point deadline) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      deadline - std::chrono::steady_clock::now())
                      .count();
  return ms < 0 ? 0 : static_cast<int>(std::min<long long>(ms, 1000));
}

Outcome RunCommand(const std::vector<std::string>& argv, Job job,
                   const std::atomic<std::chrono::steady_clock::rep>* abort_at) {
  // The deadline, shortened by a shutdown that arrives while the command runs.
  auto deadline = [&job, abort_at] {
    if (abort_at == nullptr) return job.deadline;
    const auto abort =
        std::chrono::steady_clock::time_point(std::chrono::steady_clock::duration(*abort_at));
    return std::min(job.deadline, abort);
  };
  int in_pipe[2];
  int err_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) {
    return Outcome::Failure(std::string("cannot create pipes: ") + std::strerror(errno));
  }
  // Everything the child needs is built here: the worker is multithreaded, so nothing may
  // allocate or take a lock between fork and exec. posix_spawn does no more than exec needs.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    if (entry.starts_with("PGJOBS_JOB_ID=") || entry.starts_with("PGJOBS_TASK=") ||
        entry.starts_with("PGJOBS_ATTEMPT=")) {
      continue;
    }
    env_strings.emplace_back(entry);
  }
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
  if (spawned != 0) {
    for (int fd : {in_pipe[0], in_pipe[1], err_pipe[0], err_pipe[1]}) close(fd);
    return Outcome::Failure("cannot run " + argv[0] + ": " + std::strerror(spawned));
  }
  close(in_pipe[0]);
  close(err_pipe[1]);
  // Arguments are small; a child that does not read stdin must not block us, so write what fits.
  fcntl(in_pipe[1], F_SETFL, O_NONBLOCK);
  (void)!write(in_pipe[1], job.arguments.data(), job.arguments.size());
  close(in_pipe[1]);

  std::string err;
  bool timed_out = false;
  for (;;) {
    if (std::chrono::steady_clock::now() >= deadline()) {
      timed_out = true;
      break;
    }
    pollfd pfd{err_pipe[0], POLLIN, 0};
    const int ready = poll(&pfd, 1, std::min(Remaining(deadline()), 100));
    if (ready > 0) {
      char buf[4096];
      const ssize_t n = read(err_pipe[0], buf, sizeof buf);
      if (n <= 0) break;  // stderr closed: the process is exiting
      err.append(buf, static_cast<size_t>(n));
      if (err.size() > 64 * 1024) err = Tail(err, 16 * 1024);
    }
  }
  int status = 0;
  if (!timed_out) {
    // stderr closed; wait for the exit, still bounded by the deadline.
    while (waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() >= deadline()) {
        timed_out = true;
        break;
      }
      usleep(1000);
    }
  }
  if (timed_out) {
    kill(-pid, SIGKILL);
    waitpid(pid, &status, 0);
    close(err_pipe[0]);
    return Outcome::Timeout("timeout: " + argv[0] + " ran past the job's timeout and was killed");
  }
  close(err_pipe[0]);
  kill(-pid, SIGKILL);  // anything it left running in its group goes with it
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return Outcome::Success();
  const std::string how = WIFEXITED(status)
                              ? "exited with status " + std::to_string(WEXITSTATUS(status))
                              : std::string("killed by signal ") + strsignal(WTERMSIG(status));
  return Outcome::Failure(argv[0] + " " + how + (err.empty() ? "" : ": " + Tail(err)));
}

size_t Collect(char* data, size_t size, size_t count, void* out) {
  static_cast<std::string*>(out)->append(data, size * count);
  return size * count;
}

Outcome Post(const std::string& url, const std::vector<std::string>& headers, const Job& job) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                        job.deadline - std::chrono::steady_clock::now())
                        .count();
  if (left <= 0) return Outcome::Timeout("timeout: no time left to POST to " + url);
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return Outcome::Failure("cannot create an HTTP client");
  const std::string body =
      "{\"job_id\":" + std::to_string(job.id) + ",\"task\":" + log::JsonQuote(job.task) +
      ",\"attempt\":" + std::to_string(job.attempt) + ",\"arguments\":" + job.arguments + "}";
  curl_slist* list = curl_slist_append(nullptr, "Content-Type: application/json");
  for (const std::string& h : headers) list = curl_slist_append(list, h.c_str());
  std::string response;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(left));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &Collect);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response);
  const CURLcode rc = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(list);
  curl_easy_cleanup(curl);
  if (rc == CURLE_OPERATION_TIMEDOUT) {
    return Outcome::Timeout("timeout: POST " + url + " did not answer before the job's timeout");
  }
  if (rc != CURLE_OK) return Outcome::Failure("POST " + url + ": " + curl_easy_strerror(rc));
  if (status >= 200 && status < 300) return Outcome::Success();
  return Outcome::Failure("POST " + url + ": HTTP " + std::to_string(status) +
                          (response.empty() ? "" : ": " + Tail(response, 1000)));
}

}  // namespace

Handler CommandHandler(std::vector<std::string> argv,
                       const std::atomic<std::chrono::steady_clock::rep>* abort_at) {
  return [argv = std::move(argv), abort_at](const Job& job) {
    return RunCommand(argv, job, abort_at);
  };
}

Handler HttpHandler(std::string url, std::vector<std::string> headers) {
  return [url = std::move(url), headers = std::move(headers)](const Job& job) {
    return Post(url, headers, job);
  };
}

}  // namespace pgjobs::worker
