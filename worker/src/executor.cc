#include "executor.h"

#include "outcome.h"

namespace pgjobs::worker {

Executor::Executor(RunQueue& queue, const std::map<std::string, Handler>& handlers,
                   const std::map<std::string, std::string>& sql_statements, SqlHandler sql,
                   Completer& completer, WorkerMetrics& metrics, const Shutdown& shutdown)
    : queue_(queue),
      handlers_(handlers),
      sql_statements_(sql_statements),
      sql_(std::move(sql)),
      completer_(completer),
      metrics_(metrics),
      shutdown_(shutdown) {}

std::vector<Result> Executor::RunJobs(const std::vector<Taken>& jobs) {
  const std::string& task = jobs.front().job.task;
  if (auto sql = sql_statements_.find(task); sql != sql_statements_.end()) {
    return sql_.Run(jobs, sql->second);
  }
  Result r{jobs.front(), Outcome::Success(), Result::Report::kByCompleter, 0, 0};
  // The handler sees the deadline it must keep: its own, or the shutdown's when earlier.
  Job job = r.taken.job;
  job.deadline = shutdown_.For(job.deadline);
  try {
    r.outcome = handlers_.at(task)(job);
  } catch (const std::exception& e) {
    r.outcome = Outcome::Failure(std::string("handler threw: ") + e.what());
  } catch (...) {
    r.outcome = Outcome::Failure("handler threw something that is not a std::exception");
  }
  return {std::move(r)};
}

void Executor::Run() {
  RunQueue::Ran ran;
  for (;;) {
    std::vector<Taken> jobs = queue_.Take(ran);
    if (jobs.empty()) return;
    const auto start = Clock::now();
    std::vector<Result> results = RunJobs(jobs);
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
    ran = {jobs.front().job.task, static_cast<int>(results.size()), per_job};
    completer_.Push(std::move(results));
  }
}

}  // namespace pgjobs::worker
