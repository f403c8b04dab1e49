#include "command_handler.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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
  const std::string id = std::to_string(job.id);
  const std::string attempt = std::to_string(job.attempt);
  const pid_t pid = fork();
  if (pid < 0) {
    return Outcome::Failure(std::string("cannot fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    setpgid(0, 0);  // its own group, so that a timeout kills whatever it started too
    dup2(in_pipe[0], 0);
    dup2(err_pipe[1], 2);
    const int null_fd = open("/dev/null", O_WRONLY);
    dup2(null_fd, 1);
    setenv("PGJOBS_JOB_ID", id.c_str(), 1);
    setenv("PGJOBS_TASK", job.task.c_str(), 1);
    setenv("PGJOBS_ATTEMPT", attempt.c_str(), 1);
    std::vector<char*> args;
    std::vector<std::string> copy = argv;
    for (auto& a : copy) args.push_back(a.data());
    args.push_back(nullptr);
    execvp(args[0], args.data());
    const std::string message = "cannot run " + argv[0] + ": " + std::strerror(errno) + "\n";
    (void)!write(2, message.data(), message.size());
    _exit(127);
  }
  setpgid(pid, pid);
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
