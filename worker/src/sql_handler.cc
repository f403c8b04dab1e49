// SPDX-License-Identifier: Apache-2.0
#include "sql_handler.h"

#include <algorithm>

#include "queue_sql.h"

namespace pgjobs::worker {
namespace {

// A batch's statements before and after its jobs' own, or a job's; see Run.
constexpr size_t kNoJob = static_cast<size_t>(-1);

// What one job contributes to a pipeline, by position, so that a failure is told by where it
// happened, never by a statement's name.
enum class Part { kOther, kStatement, kAck };

// What a failed statement or ack means for its job.
void Failed(Result& r, const db::DbError& e, Part part) {
  if (part == Part::kAck && e.WrongState()) {
    r.report = Result::Report::kLate;  // reclaimed meanwhile: the work rolled back with the ack
    return;
  }
  const std::string message = e.ServerMessage().empty() ? e.what() : e.ServerMessage();
  if (r.taken.job.CancelRequested() && e.TimedOut()) {
    r.outcome = Outcome::Failure("cancelled: its statement was cancelled (jobs.cancel)");
  } else if (e.TimedOut()) {
    r.outcome = Outcome::Timeout("timeout: " + message);
  } else if (part == Part::kStatement) {
    r.outcome = Outcome::Failure(message + " [SQLSTATE " + e.SqlState() + "]");
  } else {
    r.outcome = Outcome::Failure(std::string("sql handler: ") + e.what());
  }
}

Outcome NoTimeLeft() { return Outcome::Timeout("timeout: no time left to run the statement"); }

}  // namespace

void SqlCancels::Add(db::Connection* conn, std::vector<const Job*> jobs) {
  std::lock_guard<std::mutex> lock(mutex_);
  running_[conn] = std::move(jobs);
}

void SqlCancels::Remove(db::Connection* conn) {
  std::lock_guard<std::mutex> lock(mutex_);
  running_.erase(conn);
}

void SqlCancels::CancelAll() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& [conn, flags] : running_) conn->Cancel();
}

void SqlCancels::CancelMarked() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& [conn, jobs] : running_) {
    const bool all_marked =
        !jobs.empty() &&
        std::all_of(jobs.begin(), jobs.end(), [](const Job* j) { return j->CancelRequested(); });
    if (all_marked) conn->Cancel();
  }
}

SqlHandler::SqlHandler(db::ConnectOptions options, log::Logger& logger, const Shutdown& shutdown,
                       SqlCancels& cancels)
    : options_(std::move(options)), logger_(logger), shutdown_(shutdown), cancels_(cancels) {}

SqlHandler::~SqlHandler() = default;

db::Connection* SqlHandler::Session(std::string& error) {
  if (conn_ && conn_->IsOpen()) return conn_.get();
  try {
    conn_ = std::make_unique<db::Connection>(options_);
    conn_->SetSession("configure session", "SET jit = off");
    return conn_.get();
  } catch (const db::DbError& e) {
    conn_.reset();
    error = std::string("sql handler cannot connect: ") + e.what();
    return nullptr;
  }
}

std::vector<Result> SqlHandler::Run(const std::vector<Taken>& jobs, const std::string& statement) {
  std::vector<Result> results;
  for (const Taken& t : jobs) results.push_back(Result{t, Outcome::Success(), {}, 0, 0});
  std::string error;
  db::Connection* conn = Session(error);
  if (conn == nullptr) {
    for (Result& r : results) r.outcome = Outcome::Failure(error);
    return results;
  }
  // The statements' own timeouts end each job; this bounds the wait for a server that cannot
  // keep them (a stopped backend), after which the outcome is unknown and never replayed.
  Clock::time_point latest = Clock::time_point::min();
  for (const Taken& t : jobs) latest = std::max(latest, shutdown_.For(t.job.deadline));
  conn->SetDeadline(latest + std::chrono::seconds(2));

  const bool batch = jobs.size() > 1;
  std::vector<size_t> held;  // jobs whose work and ack are done, waiting for the commit
  size_t next = 0;           // the first job not sent yet
  bool after_failure = false;
  for (;;) {
    std::vector<db::Statement> statements;
    std::vector<std::pair<size_t, Part>> owner;  // the job and part of each statement
    std::vector<size_t> sent;
    // Every job whose fate is this transaction's: done before a failure, or sent now.
    auto in_transaction = [&](auto&& mark) {
      for (size_t j : held) mark(results[j]);
      for (size_t j : sent) mark(results[j]);
    };
    auto add = [&](size_t job, Part part, db::Statement s) {
      statements.push_back(std::move(s));
      owner.emplace_back(job, part);
    };
    if (after_failure) {
      add(kNoJob, Part::kOther, {"rollback to savepoint", "ROLLBACK TO SAVEPOINT job", {}});
      add(kNoJob, Part::kOther, {"release savepoint", "RELEASE SAVEPOINT job", {}});
    } else if (batch) {
      add(kNoJob, Part::kOther, {"begin", "BEGIN", {}});
    }
    for (; next < jobs.size(); ++next) {
      const Taken& t = jobs[next];
      const long long left = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 shutdown_.For(t.job.deadline) - Clock::now())
                                 .count();
      if (left <= 0) {
        results[next].outcome = NoTimeLeft();
        continue;
      }
      if (batch) add(next, Part::kOther, {"savepoint", "SAVEPOINT job", {}});
      add(next, Part::kOther, queue_sql::StatementTimeout(left));
      // Declared jsonb, so that a statement that does not use $1 runs too.
      add(next, Part::kStatement,
          {"task statement", statement, {t.job.arguments}, {db::kJsonbType}});
      add(next, Part::kAck, queue_sql::Ack(t.job));
      if (batch) add(next, Part::kOther, {"release savepoint", "RELEASE SAVEPOINT job", {}});
      sent.push_back(next);
    }
    if (sent.empty() && held.empty() && !after_failure) return results;
    if (batch) add(kNoJob, Part::kOther, {"commit", "COMMIT", {}});
    db::PipelineOutcome out;
    std::vector<const Job*> running;
    for (size_t j : sent) running.push_back(&jobs[j].job);
    cancels_.Add(conn, std::move(running));
    try {
      out = conn->RunPipeline(statements);
    } catch (const db::DbError& e) {
      cancels_.Remove(conn);
      // Lost with the commit in flight: never replay. What committed is done; the rest expires
      // and is retried.
      logger_.Warn("connection lost before a sql job's outcome was known",
                   {{"jobs", std::to_string(held.size() + sent.size())}, {"err", e.what()}});
      in_transaction([](Result& r) { r.report = Result::Report::kLate; });
      return results;
    }
    cancels_.Remove(conn);
    if (!out.failed) {
      in_transaction([](Result& r) { r.report = Result::Report::kCommitted; });
      return results;
    }
    const auto [failed_job, part] = owner[*out.failed];
    if (!batch) {
      // One job, one implicit transaction: it rolled back whole.
      Failed(results.front(), *out.error, part);
      return results;
    }
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
    Failed(results[failed_job], *out.error, part);
    next = failed_job + 1;
    after_failure = true;
  }
}

}  // namespace pgjobs::worker
