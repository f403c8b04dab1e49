// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <map>
#include <string>

#include "cancellations.h"
#include "completer.h"
#include "metrics.h"
#include "pgjobs/worker/job.h"
#include "run_queue.h"
#include "shutdown.h"
#include "sql_handler.h"

namespace pgjobs::worker {

/// One executor thread's loop: takes jobs from the run queue, runs them (their task's handler,
/// or the sql handler for a sql task; not those cancelled before they started), decides their
/// outcome (FinalOutcome) and hands the results to the completer, until the shutdown leaves nothing
/// queued.
class Executor {
 public:
  /// `handlers` and `sql_statements` (task -> statement) are shared by every executor and read
  /// only; `sql` is this executor's own; `slot` numbers it among the executors, from 0.
  Executor(RunQueue& queue, const std::map<std::string, Handler>& handlers,
           const std::map<std::string, std::string>& sql_statements, SqlHandler sql,
           Completer& completer, Cancellations& cancellations, int slot, WorkerMetrics& metrics,
           const Shutdown& shutdown);
  void Run();

 private:
  std::vector<Result> RunJobs(std::vector<Taken> jobs);
  std::vector<Result> RunHandlers(std::vector<Taken>& jobs);

  RunQueue& queue_;
  const std::map<std::string, Handler>& handlers_;
  const std::map<std::string, std::string>& sql_statements_;
  SqlHandler sql_;
  Completer& completer_;
  Cancellations& cancellations_;
  int slot_;  // this executor's place in cancellations_
  WorkerMetrics& metrics_;
  const Shutdown& shutdown_;
};

}  // namespace pgjobs::worker
