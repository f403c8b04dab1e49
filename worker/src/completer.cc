// SPDX-License-Identifier: Apache-2.0
#include "completer.h"

#include <algorithm>

#include "backoff.h"
#include "outcome.h"
#include "safe_text.h"

namespace pgjobs::worker {
namespace {

constexpr size_t kMaxBatch = 5000;

double Since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

Completer::Completer(db::ConnectOptions options, WorkerMetrics& metrics, log::Logger& logger,
                     Status& status, const Shutdown& shutdown, std::function<void()> on_retry)
    : options_(std::move(options)),
      metrics_(metrics),
      logger_(logger),
      status_(status),
      shutdown_(shutdown),
      on_retry_(std::move(on_retry)) {}

Completer::~Completer() = default;

void Completer::Push(std::vector<Result> results) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (Result& r : results) done_.push_back(std::move(r));
  }
  cv_.notify_one();
}

void Completer::ExecutorsFinished() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    executors_finished_ = true;
  }
  cv_.notify_all();
}

bool Completer::WaitToRetry(std::chrono::milliseconds delay) {
  // While the worker runs, retry for ever: the database comes back. Once it stops, only until
  // the grace ends: the jobs not reported then expire and are retried.
  auto until = Clock::now() + delay;
  if (shutdown_.Stopping()) {
    if (Clock::now() >= shutdown_.Deadline()) return false;
    until = std::min(until, shutdown_.Deadline());
  }
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait_until(lock, until);
  return !(shutdown_.Stopping() && Clock::now() >= shutdown_.Deadline());
}

void Completer::LogFailure(const std::string& what, const db::DbError& e, size_t jobs) {
  const auto left_out = failures_.Failed(what, Clock::now());
  if (!left_out) return;
  log::Fields fields{{"jobs", std::to_string(jobs)}, {"err", e.what()}};
  if (*left_out > 0) fields.emplace_back("failures_not_logged", std::to_string(*left_out));
  logger_.Warn(what, fields);
}

void Completer::Run() {
  for (;;) {
    std::vector<Result> batch;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [this] { return !done_.empty() || executors_finished_; });
      if (done_.empty()) return;
      batch.reserve(std::min(done_.size(), kMaxBatch));
      while (!done_.empty() && batch.size() < kMaxBatch) {
        batch.push_back(std::move(done_.front()));
        done_.pop_front();
      }
    }
    // One update per batch, not one per job from every executor.
    double busy = 0;
    for (const Result& r : batch) busy += r.busy_seconds;
    metrics_.Busy(busy);
    Report(batch);
  }
}

void Completer::Report(std::vector<Result>& batch) {
  std::vector<queue_sql::Report> reports;
  reports.reserve(batch.size());
  bool acks = false;
  bool nacks = false;
  for (const Result& r : batch) {
    if (r.report != Result::Report::kByCompleter) continue;
    queue_sql::Report report{r.taken.job.id, r.taken.job.attempt, std::nullopt};
    if (r.outcome.kind == Outcome::Kind::kSuccess) {
      acks = true;
    } else {
      report.traceback = r.outcome.error;
      nacks = true;
    }
    reports.push_back(std::move(report));
  }
  if (reports.empty()) {
    Count(batch, nullptr);
    return;
  }
  Backoff backoff(std::chrono::milliseconds(100), std::chrono::seconds(5));
  for (;;) {
    const auto start = Clock::now();
    try {
      if (!conn_) {
        conn_ = std::make_unique<db::Connection>(options_);
        conn_->SetSession("configure session", "SET jit = off");
      }
      const auto decided = queue_sql::Complete(*conn_, reports);
      if (acks) metrics_.DbCall("ack", Since(start), false);
      if (nacks) metrics_.DbCall("nack", Since(start), false);
      status_.database_up = true;
      metrics_.DatabaseUp(true);
      if (failures_.Succeeded("cannot report results, retrying")) {
        logger_.Info("reporting results again");
      }
      Count(batch, &decided);
      return;
    } catch (const db::DbError& e) {
      if (acks) metrics_.DbCall("ack", Since(start), true);
      if (nacks) metrics_.DbCall("nack", Since(start), true);
      if (!conn_ || !conn_->IsOpen()) {
        conn_.reset();
        status_.database_up = false;
        metrics_.DatabaseUp(false);
      }
      if (e.BadValue() && reports.size() > 1) {
        // A value of one result was refused: halves until that one is alone, so that it
        // cannot hold back the others.
        const auto half = static_cast<std::ptrdiff_t>(batch.size() / 2);
        std::vector<Result> second(std::make_move_iterator(batch.begin() + half),
                                   std::make_move_iterator(batch.end()));
        batch.erase(batch.begin() + half, batch.end());
        Report(batch);
        Report(second);
        return;
      }
      if (e.BadValue()) {
        Result* alone = nullptr;
        for (Result& r : batch) {
          if (r.report == Result::Report::kByCompleter) alone = &r;
        }
        const std::string reason =
            SafeTail("the worker could not store this attempt's result: " + e.ServerMessage(),
                     kMaxTracebackBytes);
        if (alone != nullptr && alone->outcome.error != reason) {
          logger_.Warn("a job's result was refused; failing it with the reason",
                       {{"job_id", std::to_string(alone->taken.job.id)}, {"err", e.what()}});
          alone->outcome = Outcome::Failure(reason);
          Report(batch);
          return;
        }
      }
      if (!e.Transient() && !e.ConnectionBroken() && !e.BadValue()) {
        logger_.Error(
            "cannot report results, and retrying would not help; their jobs will expire and be "
            "retried",
            {{"jobs", std::to_string(reports.size())}, {"err", e.what()}});
        Count(batch, nullptr);
        return;
      }
      if (e.BadValue()) {
        logger_.Error("a job's result cannot be stored; it will expire and be retried",
                      {{"err", e.what()}});
        Count(batch, nullptr);
        return;
      }
      LogFailure("cannot report results, retrying", e, reports.size());
      // Retrying is safe: a job already completed is not running any more, so a second call
      // leaves it alone and it is not counted again.
      if (!WaitToRetry(backoff.Next())) {
        logger_.Warn(
            "results not reported before the shutdown grace ended; their jobs will "
            "expire and be retried",
            {{"jobs", std::to_string(reports.size())}});
        Count(batch, nullptr);
        return;
      }
    }
  }
}

void Completer::Count(const std::vector<Result>& batch, const queue_sql::Decisions* decided) {
  bool retried = false;
  for (const Result& r : batch) {
    const std::string& task = r.taken.job.task;
    queue_sql::Decision decision;
    if (r.report == Result::Report::kCommitted) {
      decision = queue_sql::Decision::kSucceeded;
    } else if (r.report == Result::Report::kLate) {
      metrics_.LateResult(task);
      continue;
    } else if (decided == nullptr) {
      continue;  // not reported: the database decided nothing, and nothing is counted
    } else if (const queue_sql::Decision* d = queue_sql::Find(*decided, r.taken.job.id)) {
      decision = *d;
    } else {
      metrics_.LateResult(task);  // refused: the attempt had been reclaimed
      continue;
    }
    const bool again = decision == queue_sql::Decision::kRetried;
    // The database ends a marked job that did not succeed as cancelled, without a retry.
    const bool cancelled = decision == queue_sql::Decision::kFailed && r.cancel_requested;
    const bool dead = decision == queue_sql::Decision::kFailed && !cancelled;
    const bool final = !again;
    metrics_.Finished(task, r.outcome.kind, r.run_seconds, again, dead, cancelled,
                      final ? std::optional<double>(r.taken.since_publish + Since(r.taken.started))
                            : std::nullopt);
    retried = retried || again;
  }
  // A retry went back to the queue and nothing announces it: have an idle dispatcher recompute
  // when its next job is due.
  if (retried) on_retry_();
}

}  // namespace pgjobs::worker
