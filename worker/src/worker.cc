#include "pgjobs/worker/worker.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "command_handler.h"
#include "metrics.h"
#include "pgjobs/db/connection.h"
#include "pgjobs/http/server.h"

namespace pgjobs::worker {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// A job taken from the queue, with what the completer needs to report it.
struct Taken {
  Job job;
  int max_retries = 0;
  double since_publish = 0;  // seconds from publish to this attempt's start (database clock)
  Clock::time_point started;
  double* typical_seconds = nullptr;  // its task's recent handler time; see kWakeSlice
  double expected_seconds = 0;        // what it adds to the run queue's expected work
};

struct Result {
  Taken taken;
  Outcome outcome;
  double run_seconds = 0;
  bool acked_in_handler = false;  // sql handler: the ack committed with the work
  bool late = false;              // sql handler: the ack was refused
  double busy_seconds = 0;        // this job's share of its executor's busy time
};

// Adds 1 to the count of `task` in a small per-batch tally.
void Tally(std::vector<std::pair<std::string, int>>& tally, const std::string& task) {
  for (auto& [name, n] : tally) {
    if (name == task) {
      ++n;
      return;
    }
  }
  tally.emplace_back(task, 1);
}

// "{a,b}" with each element quoted, for a text[] or varchar[] parameter.
std::string TextArray(const std::vector<std::string>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ',';
    out += '"';
    for (char c : values[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

template <typename T>
std::string NumberArray(const std::vector<T>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) out += (i ? "," : "") + std::to_string(values[i]);
  return out + "}";
}

}  // namespace

struct Worker::Impl {
  WorkerConfig config;
  log::Logger& logger;
  std::string version;
  std::map<std::string, Handler> handlers;
  std::unique_ptr<WorkerMetrics> metrics;
  std::unique_ptr<http::Server> server;

  std::atomic<bool> stopping{false};
  std::atomic<bool> database_up{false};
  std::atomic<long long> worker_id{0};
  std::atomic<Clock::rep> abort_at{Clock::time_point::max().time_since_epoch().count()};
  int wake_pipe[2] = {-1, -1};

  // Jobs taken, waiting for an executor; slots free for the dispatcher to fill. Executors wait on
  // work_cv and the dispatcher alone on slots_cv (notified one at a time, so no other thread may
  // wait on it), so that neither wakes the other needlessly: on this path a wakeup costs more
  // than a no-op job. Retry backoffs wait on stop_cv.
  std::mutex run_mutex;
  std::condition_variable work_cv;
  std::condition_variable slots_cv;
  std::condition_variable stop_cv;
  std::deque<Taken> run_queue;
  int free_slots = 0;

  // How many executors a batch wakes. Waking every idle executor for each batch cost more than
  // quick jobs themselves: most of them found the queue already empty. The dispatcher wakes as
  // many as the run queue's expected handler time calls for, a slice of kWakeSlice each, from
  // each task's recent handler times (a moving average; a task without one counts as slow, so a
  // new worker wakes them all). A job slower than its task's history cannot hold up the jobs
  // queued behind it: while jobs are queued and none is taken for kStall, the watchdog wakes one
  // more executor. All under run_mutex; typical_seconds' keys are fixed before the threads start.
  static constexpr double kWakeSlice = 0.001;
  static constexpr double kUnknownSeconds = 1.0;
  static constexpr double kPerJobSeconds = 2e-6;  // an executor's own cost per job
  static constexpr auto kStall = std::chrono::milliseconds(2);
  std::map<std::string, double> typical_seconds;  // < 0: no job of the task has run yet
  double queued_seconds = 0;
  int waiting_executors = 0;
  unsigned long long jobs_taken = 0;
  bool watchdog_parked = false;
  std::condition_variable watch_cv;

  // Results waiting for the completer.
  std::mutex done_mutex;
  std::condition_variable done_cv;
  std::deque<Result> done_queue;
  bool executors_finished = false;

  Impl(WorkerConfig c, log::Logger& l, std::string v)
      : config(std::move(c)), logger(l), version(std::move(v)) {}

  db::ConnectOptions Options(const char* role) const {
    return {.dsn = config.dsn,
            .application_name = std::string("jobs-worker ") + role,
            .connect_timeout = config.connect_timeout};
  }

  void Wake() { (void)!write(wake_pipe[1], "x", 1); }

  // Waits up to `delay` or until stopping; false when stopping.
  bool Backoff(std::chrono::milliseconds delay) {
    std::unique_lock<std::mutex> lock(run_mutex);
    stop_cv.wait_for(lock, delay, [this] { return stopping.load(); });
    return !stopping;
  }

  std::unique_ptr<db::Connection> ConnectWithRetry(const char* role) {
    auto delay = std::chrono::milliseconds(100);
    for (;;) {
      try {
        auto conn = std::make_unique<db::Connection>(Options(role));
        conn->Execute("configure session", "SET jit = off");
        return conn;
      } catch (const db::DbError& e) {
        database_up = false;
        metrics->DatabaseUp(false);
        logger.Warn("database unreachable, retrying", {{"role", role}, {"err", e.what()}});
        if (!Backoff(delay)) return nullptr;
        delay = std::min(delay * 2, std::chrono::milliseconds(5000));
      }
    }
  }

  std::vector<std::string> Tasks() const {
    std::vector<std::string> tasks;
    for (const auto& [task, unused] : handlers) tasks.push_back(task);
    return tasks;
  }

  // Whether the dispatcher should consume now; run_mutex must be held. With prefetch, it waits
  // until half the capacity is free, so that batches stay large.
  bool MayConsume() const {
    const int capacity = config.concurrency + config.prefetch;
    const int threshold = config.prefetch > 0 ? std::max(1, capacity / 2) : 1;
    return free_slots >= threshold || (free_slots > 0 && free_slots == capacity);
  }

  // Idle executors to wake for the run queue (see kWakeSlice); run_mutex must be held.
  int ExecutorsToWake() const {
    if (waiting_executors == 0 || run_queue.empty()) return 0;
    const double slices = std::ceil(queued_seconds / kWakeSlice);
    const int busy = config.concurrency - waiting_executors;
    const int wanted = slices >= config.concurrency ? config.concurrency : static_cast<int>(slices);
    return std::clamp(wanted - busy, 1, waiting_executors);
  }

  // Wakes one more executor whenever queued jobs wait kStall with no taker: every awake
  // executor is then inside a handler slower than its task's history. Queued jobs and a waiting
  // executor together only follow a new batch (an executor waits only on an empty queue), so the
  // watchdog sleeps until the dispatcher's next batch whenever either is missing: a worker whose
  // executors are all busy with long jobs does not tick.
  void Watch() {
    std::unique_lock<std::mutex> lock(run_mutex);
    while (!stopping) {
      if (run_queue.empty() || waiting_executors == 0) {
        watchdog_parked = true;
        watch_cv.wait(lock,
                      [this] { return stopping || (!run_queue.empty() && waiting_executors > 0); });
        watchdog_parked = false;
        continue;
      }
      const unsigned long long taken_before = jobs_taken;
      watch_cv.wait_for(lock, kStall, [this] { return stopping.load(); });
      if (!run_queue.empty() && jobs_taken == taken_before && waiting_executors > 0) {
        work_cv.notify_one();
      }
    }
  }

  // The dispatcher: registers, listens for NOTIFY jobs, and fills free slots.
  void Dispatch() {
    const std::string tasks = TextArray(Tasks());
    std::unique_ptr<db::Connection> conn;
    auto delay = std::chrono::milliseconds(100);
    while (!stopping) {
      if (!conn) {
        conn = ConnectWithRetry("dispatcher");
        if (!conn) break;
        try {
          // consume's commit need not wait for the WAL flush: if a crash loses it, its jobs are
          // simply still pending, and the acks of those lost attempts are refused.
          conn->Execute("listen", "SET synchronous_commit = off; LISTEN jobs");
          // date_part, not extract: it yields the float8 directly, where extract computes a
          // numeric first, a cost paid for every job.
          conn->Prepare("consume",
                        "SELECT job_id, task, coalesce(arguments::text, 'null'), attempts, "
                        "max_retries, timeout::float8, "
                        "date_part('epoch', started_at - scheduled_at), "
                        "date_part('epoch', started_at - published_at) "
                        "FROM jobs.consume($1::int, $2::varchar[], $3::bigint)");
          conn->Prepare("next due", "SELECT jobs.seconds_until_next_due($1::varchar[])");
          if (worker_id == 0) {
            char host[256] = {0};
            gethostname(host, sizeof host - 1);
            const auto stale_after =
                std::to_string(3 * config.heartbeat_interval.count()) + " milliseconds";
            worker_id = conn->Query("register",
                                    "SELECT jobs.register_worker($1, $2, $3::int, $4::int, "
                                    "$5::interval)",
                                    {config.name, std::string(host), std::to_string(getpid()),
                                     std::to_string(config.concurrency), stale_after})
                            .Int(0, 0);
            logger.Info("registered", {{"worker_id", std::to_string(worker_id)}});
          }
        } catch (const db::DbError& e) {
          logger.Warn("cannot prepare the dispatcher session", {{"err", e.what()}});
          conn.reset();
          if (!Backoff(delay)) break;
          continue;
        }
      }
      int want = 0;
      {
        std::unique_lock<std::mutex> lock(run_mutex);
        slots_cv.wait(lock, [this] { return stopping || MayConsume(); });
        if (stopping) break;
        want = config.batch_size > 0 ? std::min(free_slots, config.batch_size) : free_slots;
      }
      const auto start = Clock::now();
      db::Result rows;
      try {
        rows = conn->QueryPrepared("consume",
                                   {std::to_string(want), tasks, std::to_string(worker_id.load())});
        metrics->DbCall("consume", Since(start), false);
        database_up = true;
        metrics->DatabaseUp(true);
        delay = std::chrono::milliseconds(100);
      } catch (const db::DbError& e) {
        metrics->DbCall("consume", Since(start), true);
        logger.Warn("consume failed", {{"err", e.what()}});
        if (!conn->IsOpen()) {
          database_up = false;
          metrics->DatabaseUp(false);
          conn.reset();
        }
        if (!Backoff(delay)) break;
        delay = std::min(delay * 2, std::chrono::milliseconds(5000));
        continue;
      }
      if (rows.Rows() > 0) {
        // Parsed outside the lock, so that executors keep running meanwhile.
        std::vector<Taken> taken(rows.Rows());
        std::vector<std::pair<std::string, int>> per_task;
        const auto now = Clock::now();
        for (int i = 0; i < rows.Rows(); ++i) {
          Taken& t = taken[i];
          t.job.id = rows.Int(i, 0);
          t.job.task = rows.Text(i, 1);
          t.job.arguments = rows.Text(i, 2);
          t.job.attempt = static_cast<int>(rows.Int(i, 3));
          t.max_retries = static_cast<int>(rows.Int(i, 4));
          t.job.max_retries = t.max_retries;
          t.job.deadline =
              now + std::chrono::microseconds(static_cast<long long>(rows.Double(i, 5) * 1e6));
          t.since_publish = rows.Double(i, 7);
          t.started = now;
          t.typical_seconds = &typical_seconds.at(t.job.task);
          metrics->Started(t.job.task, rows.Double(i, 6));
          Tally(per_task, t.job.task);
        }
        // Metrics move once per batch, not once per job from every executor: at tens of
        // thousands of jobs a second, contended updates cost more than the jobs.
        for (const auto& [task, n] : per_task) metrics->InFlight(task, n);
        int wake = 0;
        bool wake_watchdog = false;
        {
          std::lock_guard<std::mutex> lock(run_mutex);
          for (Taken& t : taken) {
            t.expected_seconds =
                *t.typical_seconds < 0 ? kUnknownSeconds : *t.typical_seconds + kPerJobSeconds;
            queued_seconds += t.expected_seconds;
            run_queue.push_back(std::move(t));
          }
          free_slots -= static_cast<int>(taken.size());
          wake = ExecutorsToWake();
          // With an executor woken for every queued job, none waits behind another: the
          // watchdog sleeps on, which spares single jobs a thread switch on their way.
          wake_watchdog = watchdog_parked && run_queue.size() > static_cast<size_t>(wake);
        }
        if (wake >= config.concurrency) {
          work_cv.notify_all();
        } else {
          for (int i = 0; i < wake; ++i) work_cv.notify_one();
        }
        if (wake_watchdog) watch_cv.notify_one();
      }
      if (rows.Rows() < want) Idle(*conn, tasks);
    }
  }

  // Waits for a NOTIFY, the next scheduled job or retry of our tasks, the poll interval, or
  // Stop(); counts the wakeup's source (a timer is a "poll").
  void Idle(db::Connection& conn, const std::string& tasks) {
    long long timeout_ms = config.poll_interval.count();
    try {
      db::Result due = conn.QueryPrepared("next due", {tasks});
      if (!due.IsNull(0, 0)) {
        const double ms = due.Double(0, 0) * 1000.0;
        if (ms <= 0) return;  // already runnable
        timeout_ms = std::min(timeout_ms, static_cast<long long>(ms) + 1);
      }
    } catch (const db::DbError&) {
      return;  // the next consume finds the connection broken and reconnects
    }
    pollfd fds[2] = {{conn.Socket(), POLLIN, 0}, {wake_pipe[0], POLLIN, 0}};
    const int ready = poll(fds, 2, static_cast<int>(timeout_ms));
    if (fds[1].revents & POLLIN) {
      char buf[64];
      (void)!read(wake_pipe[0], buf, sizeof buf);
    }
    bool notified = false;
    try {
      while (conn.NextNotification()) notified = true;
    } catch (const db::DbError&) {
      return;  // the next consume finds the connection broken and reconnects
    }
    if (stopping) return;
    if (notified) {
      metrics->Wakeup("notify");
    } else if (ready == 0) {
      metrics->Wakeup("poll");
    }
  }

  // The session the sql handler runs in, (re)connected when needed; nullptr with `error` set when
  // the database cannot be reached.
  db::Connection* SqlSession(std::unique_ptr<db::Connection>& owned, std::string& error) {
    if (owned && owned->IsOpen()) return owned.get();
    try {
      owned = std::make_unique<db::Connection>(Options("sql"));
      owned->Execute("configure session", "SET jit = off");
      return owned.get();
    } catch (const db::DbError& e) {
      owned.reset();
      error = std::string("sql handler cannot connect: ") + e.what();
      return nullptr;
    }
  }

  static long long MillisecondsLeft(const Taken& t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.job.deadline - Clock::now())
        .count();
  }

  static Outcome NoTimeLeft() {
    return Outcome::Timeout("timeout: no time left to run the statement");
  }

  // The statements around a sql job's own: its time limit, and its ack.
  static db::Statement TimeoutStatement(long long milliseconds) {
    return {"statement timeout",
            "SELECT set_config('statement_timeout', $1, true)",
            {std::to_string(milliseconds)}};
  }
  static db::Statement AckStatement(const Taken& t) {
    return {"ack",
            "SELECT jobs.ack($1::bigint, $2::int)",
            {std::to_string(t.job.id), std::to_string(t.job.attempt)}};
  }

  // What a failed task statement or ack means for its job.
  static void Failed(Result& r, const db::DbError& e, bool in_statement) {
    if (!in_statement && e.SqlState() == "55000") {
      r.late = true;  // reclaimed meanwhile: the work rolled back with the refused ack
      return;
    }
    const std::string message = e.ServerMessage().empty() ? e.what() : e.ServerMessage();
    if (e.SqlState() == "57014") {
      r.outcome = Outcome::Timeout("timeout: " + message);
    } else if (in_statement) {
      r.outcome = Outcome::Failure(message + " [SQLSTATE " + e.SqlState() + "]");
    } else {
      r.outcome = Outcome::Failure(std::string("sql handler: ") + e.what());
    }
  }

  // Runs the sql handler for one job: the timeout, the statement and the ack go in one round
  // trip and commit together, or none does.
  Result RunSql(std::unique_ptr<db::Connection>& owned, const Taken& t,
                const std::string& statement) {
    Result r{t, Outcome::Success(), 0, false, false};
    std::string error;
    db::Connection* conn = SqlSession(owned, error);
    if (conn == nullptr) {
      r.outcome = Outcome::Failure(error);
      return r;
    }
    const long long left = MillisecondsLeft(t);
    if (left <= 0) {
      r.outcome = NoTimeLeft();
      return r;
    }
    try {
      conn->RunInOneTransaction({TimeoutStatement(left),
                                 {"task statement", statement, {t.job.arguments}},
                                 AckStatement(t)});
      r.acked_in_handler = true;
    } catch (const db::DbError& e) {
      if (e.CommitOutcomeUnknown()) {
        // Never replay: if it committed the job is done, otherwise it expires and is retried.
        logger.Warn("connection lost before a sql job's outcome was known",
                    {{"job_id", std::to_string(t.job.id)}, {"err", e.what()}});
        r.late = true;
      } else {
        Failed(r, e, e.Statement() == "task statement");
      }
    }
    return r;
  }

  // Runs several sql jobs of one task in one transaction, so that they share one commit: each
  // job's statement and ack run in a savepoint of their own, so a job that fails is rolled back
  // alone and the others go on. One round trip when nothing fails, plus one per failure.
  std::vector<Result> RunSqlBatch(std::unique_ptr<db::Connection>& owned,
                                  const std::vector<Taken>& jobs, const std::string& statement) {
    std::vector<Result> results;
    for (const Taken& t : jobs) results.push_back(Result{t, Outcome::Success(), 0, false, false});
    std::string error;
    db::Connection* conn = SqlSession(owned, error);
    if (conn == nullptr) {
      for (Result& r : results) r.outcome = Outcome::Failure(error);
      return results;
    }
    constexpr size_t kNoJob = static_cast<size_t>(-1);
    std::vector<size_t> held;  // jobs whose work and ack are done, waiting for the commit
    size_t next = 0;           // the first job not sent yet
    bool after_failure = false;
    for (;;) {
      std::vector<db::Statement> statements;
      std::vector<size_t> owner;  // the job of each statement, or kNoJob
      std::vector<size_t> sent;
      // Every job whose fate is this transaction's: done before a failure, or sent now.
      auto in_transaction = [&](auto&& mark) {
        for (size_t j : held) mark(results[j]);
        for (size_t j : sent) mark(results[j]);
      };
      auto add = [&](size_t job, db::Statement s) {
        statements.push_back(std::move(s));
        owner.push_back(job);
      };
      if (after_failure) {
        add(kNoJob, {"rollback to savepoint", "ROLLBACK TO SAVEPOINT job", {}});
        add(kNoJob, {"release savepoint", "RELEASE SAVEPOINT job", {}});
      } else {
        add(kNoJob, {"begin", "BEGIN", {}});
      }
      for (; next < jobs.size(); ++next) {
        const Taken& t = jobs[next];
        const long long left = MillisecondsLeft(t);
        if (left <= 0) {
          results[next].outcome = NoTimeLeft();
          continue;
        }
        add(next, {"savepoint", "SAVEPOINT job", {}});
        add(next, TimeoutStatement(left));
        add(next, {"task statement", statement, {t.job.arguments}});
        add(next, AckStatement(t));
        add(next, {"release savepoint", "RELEASE SAVEPOINT job", {}});
        sent.push_back(next);
      }
      add(kNoJob, {"commit", "COMMIT", {}});
      db::PipelineOutcome out;
      try {
        out = conn->RunPipeline(statements);
      } catch (const db::DbError& e) {
        // Lost with the commit in flight: never replay. What committed is done; the rest expires
        // and is retried.
        logger.Warn("connection lost before a sql batch's outcome was known",
                    {{"jobs", std::to_string(held.size() + sent.size())}, {"err", e.what()}});
        in_transaction([](Result& r) { r.late = true; });
        return results;
      }
      if (!out.failed) {
        in_transaction([](Result& r) { r.acked_in_handler = true; });
        return results;
      }
      const size_t failed_job = owner[*out.failed];
      if (failed_job == kNoJob) {
        // BEGIN, the savepoint rollback or COMMIT failed: nothing of this transaction committed.
        try {
          if (conn->IsOpen()) conn->Execute("rollback", "ROLLBACK");
        } catch (const db::DbError&) {
        }
        in_transaction([&](Result& r) { r.outcome = Outcome::Failure(out.error->what()); });
        return results;
      }
      for (size_t j : sent) {
        if (j < failed_job) held.push_back(j);
      }
      Failed(results[failed_job], *out.error, out.error->Statement() == "task statement");
      next = failed_job + 1;
      after_failure = true;
    }
  }

  // The sql statement of `task`, when the sql handler runs it (not a C++ handler registered
  // over it); nullptr otherwise.
  const TaskConfig* SqlTask(const std::string& task) const {
    auto found = config.tasks.find(task);
    if (found == config.tasks.end() || found->second.sql.empty() ||
        handlers_overridden.contains(task)) {
      return nullptr;
    }
    return &found->second;
  }

  void Execute() {
    std::unique_ptr<db::Connection> sql_conn;
    int finished = 0;                    // slots this executor freed since it last took jobs
    double* finished_typical = nullptr;  // their task's recent handler time
    double finished_seconds = 0;         // their handler time, per job
    for (;;) {
      std::vector<Taken> jobs;
      const TaskConfig* sql = nullptr;
      {
        // Freeing the last jobs' slots and taking the next jobs share one lock: with many
        // executors, this mutex is the worker's most contended.
        std::unique_lock<std::mutex> lock(run_mutex);
        if (finished > 0) {
          free_slots += finished;
          finished = 0;
          double& typical = *finished_typical;
          typical = typical < 0 ? finished_seconds : typical + 0.2 * (finished_seconds - typical);
          if (MayConsume()) slots_cv.notify_one();
        }
        ++waiting_executors;
        work_cv.wait(lock, [this] { return !run_queue.empty() || stopping; });
        --waiting_executors;
        if (run_queue.empty()) break;
        jobs.push_back(std::move(run_queue.front()));
        run_queue.pop_front();
        sql = SqlTask(jobs.front().job.task);
        // A batched sql task takes the other jobs of its task that are waiting.
        const size_t batch = sql != nullptr ? static_cast<size_t>(sql->sql_batch) : 1;
        for (auto it = run_queue.begin(); it != run_queue.end() && jobs.size() < batch;) {
          if (it->job.task == jobs.front().job.task) {
            jobs.push_back(std::move(*it));
            it = run_queue.erase(it);
          } else {
            ++it;
          }
        }
        ++jobs_taken;
        finished_typical = jobs.front().typical_seconds;
        for (const Taken& t : jobs) queued_seconds -= t.expected_seconds;
        if (run_queue.empty()) queued_seconds = 0;  // no drift from rounding
      }
      // At shutdown, the grace period caps every job's deadline.
      const auto abort = Clock::time_point(Clock::duration(abort_at.load()));
      for (Taken& t : jobs) t.job.deadline = std::min(t.job.deadline, abort);
      const auto start = Clock::now();
      std::vector<Result> results;
      if (sql != nullptr && jobs.size() > 1) {
        results = RunSqlBatch(sql_conn, jobs, sql->sql);
      } else if (sql != nullptr) {
        results.push_back(RunSql(sql_conn, jobs.front(), sql->sql));
      } else {
        Result r{jobs.front(), Outcome::Success(), 0, false, false};
        try {
          r.outcome = handlers.at(r.taken.job.task)(r.taken.job);
        } catch (const std::exception& e) {
          r.outcome = Outcome::Failure(std::string("handler threw: ") + e.what());
        }
        results.push_back(std::move(r));
      }
      // A batch's jobs ran for the whole transaction; the executor was busy once.
      const double seconds = Since(start);
      finished += static_cast<int>(results.size());
      finished_seconds = seconds / results.size();
      for (Result& r : results) Finish(std::move(r), seconds, finished_seconds);
    }
  }

  // Hands a job's result to the completer. Its slot is freed when the executor next takes work.
  void Finish(Result r, double run_seconds, double busy_seconds) {
    r.run_seconds = run_seconds;
    if (r.outcome.kind == Outcome::Kind::kSuccess && Clock::now() > r.taken.job.deadline &&
        !r.acked_in_handler && !r.late) {
      r.outcome = Outcome::Timeout("timeout: the handler returned after the job's timeout");
    }
    // A shutdown that arrived while the handler ran may have cut it short.
    const auto abort_now = Clock::time_point(Clock::duration(abort_at.load()));
    if (stopping && r.outcome.kind == Outcome::Kind::kTimeout && Clock::now() >= abort_now) {
      r.outcome = Outcome::Failure(
          "worker shut down: the job did not finish within the "
          "shutdown grace period");
    }
    r.busy_seconds = busy_seconds;
    metrics->InFlight(r.taken.job.task, -1);  // exact: shows that concurrency is honoured
    {
      std::lock_guard<std::mutex> lock(done_mutex);
      done_queue.push_back(std::move(r));
    }
    done_cv.notify_one();
  }

  // Reports results in batches: one round trip acks and nacks everything that is ready.
  void Complete() {
    // Connected at start, so that the first results do not wait for a new backend: a burst of
    // jobs then gets its first ack as soon as its first jobs finish.
    std::unique_ptr<db::Connection> conn = ConnectWithRetry("completer");
    std::deque<Result> batch;
    for (;;) {
      if (batch.empty()) {
        std::unique_lock<std::mutex> lock(done_mutex);
        done_cv.wait(lock, [this] { return !done_queue.empty() || executors_finished; });
        if (done_queue.empty() && executors_finished) break;
        while (!done_queue.empty() && batch.size() < 5000) {
          batch.push_back(std::move(done_queue.front()));
          done_queue.pop_front();
        }
        lock.unlock();
        // One update per batch, not one per job from every executor.
        double busy = 0;
        for (const Result& r : batch) busy += r.busy_seconds;
        metrics->Busy(busy);
      }
      std::vector<long long> ack_ids, nack_ids;
      std::vector<int> ack_attempts, nack_attempts;
      std::vector<std::string> tracebacks;
      for (const Result& r : batch) {
        if (r.acked_in_handler || r.late) continue;
        if (r.outcome.kind == Outcome::Kind::kSuccess) {
          ack_ids.push_back(r.taken.job.id);
          ack_attempts.push_back(r.taken.job.attempt);
        } else {
          nack_ids.push_back(r.taken.job.id);
          nack_attempts.push_back(r.taken.job.attempt);
          tracebacks.push_back(r.outcome.error);
        }
      }
      std::set<long long> acked, nacked;
      if (!ack_ids.empty() || !nack_ids.empty()) {
        if (!conn) {
          conn = ConnectWithRetry("completer");
          if (!conn) {
            // Stopping while the database is away: these attempts expire and are retried.
            logger.Warn("results not reported; their jobs will expire and be retried",
                        {{"jobs", std::to_string(batch.size())}});
            batch.clear();
            continue;
          }
        }
        const auto start = Clock::now();
        try {
          // Each call only when it has jobs: an empty nack still costs a PL/pgSQL call.
          db::Result rows =
              nack_ids.empty()
                  ? conn->Query("ack", "SELECT true, job_id FROM jobs.ack($1::bigint[], $2::int[])",
                                {NumberArray(ack_ids), NumberArray(ack_attempts)})
              : ack_ids.empty()
                  ? conn->Query(
                        "nack",
                        "SELECT false, job_id FROM jobs.nack($1::bigint[], $2::text[], "
                        "NULL, $3::int[])",
                        {NumberArray(nack_ids), TextArray(tracebacks), NumberArray(nack_attempts)})
                  : conn->Query(
                        "ack and nack",
                        "WITH a AS (SELECT job_id FROM jobs.ack($1::bigint[], $2::int[])), "
                        "n AS (SELECT job_id FROM jobs.nack($3::bigint[], $4::text[], NULL, "
                        "$5::int[])) "
                        "SELECT true, job_id FROM a UNION ALL SELECT false, job_id FROM n",
                        {NumberArray(ack_ids), NumberArray(ack_attempts), NumberArray(nack_ids),
                         TextArray(tracebacks), NumberArray(nack_attempts)});
          const double seconds = Since(start);
          if (!ack_ids.empty()) metrics->DbCall("ack", seconds, false);
          if (!nack_ids.empty()) metrics->DbCall("nack", seconds, false);
          for (int i = 0; i < rows.Rows(); ++i) {
            (rows.Text(i, 0) == "t" ? acked : nacked).insert(rows.Int(i, 1));
          }
          database_up = true;
          metrics->DatabaseUp(true);
        } catch (const db::DbError& e) {
          const double seconds = Since(start);
          if (!ack_ids.empty()) metrics->DbCall("ack", seconds, true);
          if (!nack_ids.empty()) metrics->DbCall("nack", seconds, true);
          logger.Warn("ack/nack failed, retrying", {{"err", e.what()}});
          if (!conn->IsOpen()) {
            database_up = false;
            metrics->DatabaseUp(false);
            conn.reset();
          }
          // Retrying is safe: a job already completed is not running any more, so a second
          // call leaves it alone and it is not counted again.
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
          continue;
        }
      }
      bool retried = false;
      for (const Result& r : batch) {
        const std::string& task = r.taken.job.task;
        const long long id = r.taken.job.id;
        const bool confirmed =
            r.acked_in_handler ||
            (r.outcome.kind == Outcome::Kind::kSuccess ? acked.contains(id) : nacked.contains(id));
        if (!confirmed) {
          metrics->LateResult(task);
          continue;
        }
        const bool success = r.outcome.kind == Outcome::Kind::kSuccess;
        const bool dead = !success && r.taken.job.attempt > r.taken.max_retries;
        const bool final = success || dead;
        metrics->Finished(
            task, r.outcome.kind, r.run_seconds, !success && !dead, dead,
            final ? std::optional<double>(r.taken.since_publish + Since(r.taken.started))
                  : std::nullopt);
        if (!success && !dead) retried = true;
      }
      // A retry went back to the queue and nothing announces it: have an idle dispatcher
      // recompute when its next job is due.
      if (retried) Wake();
      batch.clear();
    }
  }

  void Heartbeat() {
    std::unique_ptr<db::Connection> conn;
    while (!stopping) {
      if (!Backoff(config.heartbeat_interval)) break;
      if (worker_id == 0) continue;
      const auto start = Clock::now();
      try {
        if (!conn) conn = std::make_unique<db::Connection>(Options("heartbeat"));
        conn->Query("heartbeat", "SELECT jobs.heartbeat($1::bigint)",
                    {std::to_string(worker_id.load())});
        metrics->DbCall("heartbeat", Since(start), false);
      } catch (const db::DbError& e) {
        metrics->DbCall("heartbeat", Since(start), true);
        if (conn && !conn->IsOpen()) conn.reset();
      }
    }
    if (worker_id != 0) {
      try {
        if (!conn) conn = std::make_unique<db::Connection>(Options("heartbeat"));
        conn->Query("unregister", "SELECT jobs.unregister_worker($1::bigint)",
                    {std::to_string(worker_id.load())});
      } catch (const db::DbError& e) {
        logger.Warn("cannot unregister; the worker will show as stale", {{"err", e.what()}});
      }
    }
  }

  std::set<std::string> handlers_overridden;
};

Worker::Worker(WorkerConfig config, log::Logger& logger, std::string version)
    : impl_(std::make_unique<Impl>(std::move(config), logger, std::move(version))) {
  for (const auto& [task, t] : impl_->config.tasks) {
    if (!t.command.empty()) {
      impl_->handlers[task] = CommandHandler(t.command, &impl_->abort_at);
    } else if (!t.http_url.empty()) {
      std::vector<std::string> lines;
      for (const auto& [name, value] : t.http_headers) lines.push_back(name + ": " + value);
      impl_->handlers[task] = HttpHandler(t.http_url, lines);
    } else {
      impl_->handlers[task] = [](const Job&) { return Outcome::Success(); };  // sql: see RunSql
    }
  }
}

Worker::~Worker() = default;

void Worker::Handle(const std::string& task, Handler handler) {
  impl_->handlers[task] = std::move(handler);
  impl_->handlers_overridden.insert(task);
}

std::vector<int> Worker::Ports() const {
  return impl_->server ? impl_->server->Ports() : std::vector<int>{};
}

void Worker::Stop() {
  if (impl_->stopping.exchange(true)) return;
  impl_->abort_at = (Clock::now() + impl_->config.shutdown_grace).time_since_epoch().count();
  impl_->Wake();
  // A thread that saw `stopping` false under the lock is waiting by the time this lock is ours.
  { std::lock_guard<std::mutex> lock(impl_->run_mutex); }
  impl_->work_cv.notify_all();
  impl_->slots_cv.notify_all();
  impl_->stop_cv.notify_all();
  impl_->watch_cv.notify_all();
}

void Worker::Run() {
  Impl& w = *impl_;
  if (w.handlers.empty()) {
    throw Error(
        "no tasks to run: configure tasks in the configuration file, or register "
        "handlers with Worker::Handle()");
  }
  if (pipe2(w.wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0) throw Error("cannot create a pipe");
  w.metrics = std::make_unique<WorkerMetrics>(w.config, w.Tasks(), w.version);
  std::map<std::string, http::Handler> routes;
  routes["/metrics"] = [&w](const http::Request&) {
    return http::Response{200, http::kExpositionContentType, http::Serialize(w.metrics->Collect())};
  };
  routes["/"] = [](const http::Request&) {
    return http::Response{200, "text/html; charset=utf-8",
                          "<!DOCTYPE html><html><head><title>pgjobs worker</title></head><body>"
                          "<h1>pgjobs worker</h1><ul><li><a href=\"/metrics\">/metrics</a></li>"
                          "<li><a href=\"/-/healthy\">/-/healthy</a></li><li><a "
                          "href=\"/-/ready\">/-/ready</a></li></ul></body></html>\n"};
  };
  routes["/-/healthy"] = [](const http::Request&) {
    return http::Response{200, "text/plain; charset=utf-8", "Healthy\n"};
  };
  routes["/-/ready"] = [&w](const http::Request&) {
    if (w.database_up && !w.stopping) {
      return http::Response{200, "text/plain; charset=utf-8", "Ready\n"};
    }
    return http::Response{503, "text/plain; charset=utf-8",
                          w.stopping ? "Stopping\n" : "Database unreachable\n"};
  };
  http::ServerOptions server_options;
  server_options.listen_addresses = w.config.listen_addresses;
  w.server = std::make_unique<http::Server>(server_options, routes);
  std::string ports;
  for (int port : w.server->Ports()) ports += (ports.empty() ? "" : ",") + std::to_string(port);
  std::string tasks;
  for (const auto& t : w.Tasks()) tasks += (tasks.empty() ? "" : ",") + t;
  w.logger.Info(
      "listening",
      {{"ports", ports}, {"tasks", tasks}, {"concurrency", std::to_string(w.config.concurrency)}});

  w.free_slots = w.config.concurrency + w.config.prefetch;
  for (const auto& task : w.Tasks()) w.typical_seconds[task] = -1;
  std::thread watchdog([&w] { w.Watch(); });
  std::vector<std::thread> executors;
  for (int i = 0; i < w.config.concurrency; ++i) executors.emplace_back([&w] { w.Execute(); });
  std::thread completer([&w] { w.Complete(); });
  std::thread heartbeat([&w] { w.Heartbeat(); });
  w.Dispatch();  // returns when stopping

  w.logger.Info("stopping: draining jobs in flight",
                {{"grace", std::to_string(w.config.shutdown_grace.count()) + "ms"}});
  for (auto& t : executors) t.join();
  watchdog.join();
  {
    std::lock_guard<std::mutex> lock(w.done_mutex);
    w.executors_finished = true;
  }
  w.done_cv.notify_all();
  completer.join();
  heartbeat.join();
  w.server.reset();
  close(w.wake_pipe[0]);
  close(w.wake_pipe[1]);
  w.logger.Info("stopped");
}

}  // namespace pgjobs::worker
