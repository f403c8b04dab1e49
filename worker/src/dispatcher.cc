// SPDX-License-Identifier: Apache-2.0
#include "dispatcher.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

#include "backoff.h"
#include "queue_sql.h"

namespace pgjobs::worker {
namespace {

double Since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

Dispatcher::Dispatcher(const WorkerConfig& config, const std::vector<std::string>& tasks,
                       RunQueue& queue, WorkerMetrics& metrics, log::Logger& logger, Status& status,
                       const Shutdown& shutdown)
    : config_(config),
      tasks_(queue_sql::TextArray(tasks)),
      queue_(queue),
      metrics_(metrics),
      logger_(logger),
      status_(status),
      shutdown_(shutdown) {
  if (pipe2(wake_pipe_, O_CLOEXEC | O_NONBLOCK) != 0) throw Error("cannot create a pipe");
}

Dispatcher::~Dispatcher() {
  close(wake_pipe_[0]);
  close(wake_pipe_[1]);
}

void Dispatcher::Wake() { (void)!write(wake_pipe_[1], "x", 1); }

void Dispatcher::DatabaseUp(bool up) {
  status_.database_up = up;
  metrics_.DatabaseUp(up);
}

std::unique_ptr<db::Connection> Dispatcher::Connect() {
  Backoff backoff(std::chrono::milliseconds(100), std::chrono::seconds(5));
  while (!shutdown_.Stopping()) {
    try {
      auto conn = std::make_unique<db::Connection>(
          db::ConnectOptions{.dsn = config_.dsn,
                             .application_name = "jobs-worker dispatcher",
                             .connect_timeout = config_.connect_timeout,
                             .call_timeout = config_.call_timeout,
                             .pooling = config_.pooling});
      conn->SetSession("configure session", "SET jit = off");
      queue_sql::PrepareDispatcher(*conn);
      if (status_.worker_id == 0) {
        char host[256] = {0};
        gethostname(host, sizeof host - 1);
        status_.worker_id =
            queue_sql::Register(*conn, config_.name, host, getpid(), config_.concurrency,
                                3 * config_.heartbeat_interval);
        logger_.Info("registered", {{"worker_id", std::to_string(status_.worker_id.load())}});
      }
      return conn;
    } catch (const db::DbError& e) {
      DatabaseUp(false);
      logger_.Warn("database unreachable, retrying", {{"role", "dispatcher"}, {"err", e.what()}});
      shutdown_.Pause(backoff.Next());
    }
  }
  return nullptr;
}

void Dispatcher::Run() {
  std::unique_ptr<db::Connection> conn;
  Backoff backoff(std::chrono::milliseconds(100), std::chrono::seconds(5));
  while (!shutdown_.Stopping()) {
    if (!conn) conn = Connect();
    if (!conn) break;
    const int want = queue_.WaitForSlots();
    if (want == 0) break;
    const auto start = Clock::now();
    std::vector<queue_sql::Consumed> consumed;
    try {
      consumed = queue_sql::Consume(*conn, want, tasks_, status_.worker_id, Clock::now());
      metrics_.DbCall("consume", Since(start), false);
      DatabaseUp(true);
      backoff.Reset();
    } catch (const db::DbError& e) {
      metrics_.DbCall("consume", Since(start), true);
      logger_.Warn("consume failed", {{"err", e.what()}});
      if (!conn->IsOpen()) {
        DatabaseUp(false);
        conn.reset();
      }
      shutdown_.Pause(backoff.Next());
      continue;
    }
    const double consume_seconds = Since(start);
    const size_t taken = consumed.size();
    {
      std::vector<Taken> jobs;
      jobs.reserve(taken);
      std::vector<std::pair<std::string, int>> per_task;  // a small tally: few tasks per batch
      for (queue_sql::Consumed& c : consumed) {
        metrics_.Started(c.taken.job.task, c.wait_seconds);
        auto it = std::find_if(per_task.begin(), per_task.end(),
                               [&c](const auto& p) { return p.first == c.taken.job.task; });
        if (it == per_task.end()) {
          per_task.emplace_back(c.taken.job.task, 1);
        } else {
          ++it->second;
        }
        jobs.push_back(std::move(c.taken));
      }
      // Metrics move once per batch, not once per job from every executor: at tens of
      // thousands of jobs a second, contended updates cost more than the jobs.
      for (const auto& [task, n] : per_task) metrics_.InFlight(task, n);
      queue_.Push(std::move(jobs), consume_seconds);
      if (taken > 0) metrics_.Prefetch(queue_.Prefetch());
    }
    if (static_cast<int>(taken) < want) Idle(*conn);
  }
}

db::Connection* Dispatcher::Listener(db::Connection& conn) {
  if (config_.pooling == db::Pooling::kSession) return &conn;
  if (config_.notify_dsn.empty()) return nullptr;
  if (listener_ && listener_->IsOpen()) return listener_.get();
  listener_.reset();
  if (Clock::now() < listener_retry_) return nullptr;
  try {
    listener_ = std::make_unique<db::Connection>(
        db::ConnectOptions{.dsn = config_.notify_dsn,
                           .application_name = "jobs-worker listener",
                           .connect_timeout = config_.connect_timeout,
                           .call_timeout = config_.call_timeout});
    listener_->Execute("listen", "LISTEN jobs");
    return listener_.get();
  } catch (const db::DbError& e) {
    listener_.reset();
    listener_retry_ = Clock::now() + config_.poll_interval;
    logger_.Warn("cannot listen on notify_dsn, polling meanwhile", {{"err", e.what()}});
    return nullptr;
  }
}

void Dispatcher::Idle(db::Connection& conn) {
  long long timeout_ms = config_.poll_interval.count();
  db::Connection* listener = Listener(conn);
  try {
    if (auto due = queue_sql::SecondsUntilNextDue(conn, tasks_)) {
      if (*due <= 0) return;  // already runnable
      timeout_ms = std::min(timeout_ms, static_cast<long long>(std::ceil(*due * 1000.0)));
    }
    // A NOTIFY that arrived while consume or the look above waited for its result is in
    // libpq's buffer, not on the socket: poll would sleep through it. Its job may have committed
    // after the look's snapshot, so it is read here, after the look, right before the poll.
    bool pending = false;
    while (listener != nullptr && listener->NextNotification()) pending = true;
    if (pending) {
      metrics_.Wakeup("notify");
      return;
    }
  } catch (const db::DbError&) {
    return;  // the next consume finds the connection broken and reconnects
  }
  // With no listener, fds[0] is -1, which poll ignores: the wait is the timeout or Wake().
  pollfd fds[2] = {{listener != nullptr ? listener->Socket() : -1, POLLIN, 0},
                   {wake_pipe_[0], POLLIN, 0}};
  const int ready = poll(fds, 2, static_cast<int>(timeout_ms));
  if (fds[1].revents & POLLIN) {
    char buf[64];
    (void)!read(wake_pipe_[0], buf, sizeof buf);
  }
  bool notified = false;
  try {
    while (listener != nullptr && listener->NextNotification()) notified = true;
  } catch (const db::DbError&) {
    return;  // the next consume (or Listener()) finds the connection broken and reconnects
  }
  if (shutdown_.Stopping()) return;
  if (notified) {
    metrics_.Wakeup("notify");
  } else if (ready == 0) {
    metrics_.Wakeup("poll");
  }
}

}  // namespace pgjobs::worker
