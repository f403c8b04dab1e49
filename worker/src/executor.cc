// SPDX-License-Identifier: Apache-2.0
#include "executor.h"

#include "outcome.h"

namespace pgjobs::worker {

Executor::Executor(RunQueue& queue, const std::map<std::string, Handler>& handlers,
                   const std::map<std::string, std::string>& sql_statements, SqlHandler sql,
                   Completer& completer, Cancellations& cancellations, int slot,
                   WorkerMetrics& metrics, const Shutdown& shutdown)
    : queue_(queue),
      handlers_(handlers),
      sql_statements_(sql_statements),
      sql_(std::move(sql)),
      completer_(completer),
      cancellations_(cancellations),
      slot_(slot),
      metrics_(metrics),
      shutdown_(shutdown) {}

std::vector<Result> Executor::RunJobs(std::vector<Taken> jobs) {
  bool any_cancelled = false;
  for (Taken& t : jobs) {
    t.job.cancel_mark = cancellations_.Track(slot_, t.job.id);
    any_cancelled = any_cancelled || t.job.CancelRequested();
  }
  std::vector<Result> results;
  if (!any_cancelled) {
    results = RunHandlers(jobs);  // moves the jobs into the results
  } else {
    // Jobs cancelled before they started are not run.
    std::vector<Taken> to_run;
    for (Taken& t : jobs) {
      if (t.job.CancelRequested()) {
        results.push_back(Result{std::move(t),
                                 Outcome::Failure("cancelled (jobs.cancel) before it started"),
                                 Result::Report::kByCompleter, 0, 0});
      } else {
        to_run.push_back(std::move(t));
      }
    }
    if (!to_run.empty()) {
      for (Result& r : RunHandlers(to_run)) results.push_back(std::move(r));
    }
  }
  for (Result& r : results) r.cancel_requested = r.taken.job.CancelRequested();
  cancellations_.Untrack(slot_);
  return results;
}

std::vector<Result> Executor::RunHandlers(std::vector<Taken>& jobs) {
  const std::string& task = jobs.front().job.task;
  if (auto sql = sql_statements_.find(task); sql != sql_statements_.end()) {
    return sql_.Run(jobs, sql->second);
  }
  auto handler = handlers_.find(task);
  Result r{std::move(jobs.front()), Outcome::Success(), Result::Report::kByCompleter, 0, 0};
  if (handler == handlers_.end()) {  // the worker consumes only its tasks: never expected
    r.outcome = Outcome::Failure("this worker has no handler for task " + r.taken.job.task);
    std::vector<Result> results;
    results.push_back(std::move(r));
    return results;
  }
  // The handler sees the deadline it must keep: its own, or the shutdown's when earlier. The
  // job's own stays in the result, for FinalOutcome.
  Job& job = r.taken.job;
  const Clock::time_point own_deadline = job.deadline;
  job.deadline = shutdown_.For(own_deadline);
  try {
    r.outcome = handler->second(job);
  } catch (const std::exception& e) {
    r.outcome = Outcome::Failure(std::string("handler threw: ") + e.what());
  } catch (...) {
    r.outcome = Outcome::Failure("handler threw something that is not a std::exception");
  }
  job.deadline = own_deadline;
  std::vector<Result> results;
  results.push_back(std::move(r));
  return results;
}

void Executor::Run() {
  RunQueue::Ran ran;
  for (;;) {
    std::vector<Taken> jobs = queue_.Take(ran);
    if (jobs.empty()) return;
    const auto start = Clock::now();
    const std::string task = jobs.front().job.task;
    std::vector<Result> results = RunJobs(std::move(jobs));
    const auto end = Clock::now();
    // A batch's jobs ran for the whole transaction; the executor was busy once.
    const double seconds = std::chrono::duration<double>(end - start).count();
    const double per_job = seconds / static_cast<double>(results.size());
    for (Result& r : results) {
      r.outcome = FinalOutcome(r.outcome, r.report == Result::Report::kCommitted, end,
                               r.taken.job.deadline, shutdown_.Deadline());
      r.run_seconds = seconds;
      r.busy_seconds = per_job;
      metrics_.InFlight(r.taken.job.task, -1);  // exact: shows that concurrency is honoured
    }
    ran = {task, static_cast<int>(results.size()), per_job};
    completer_.Push(std::move(results));
  }
}

}  // namespace pgjobs::worker
