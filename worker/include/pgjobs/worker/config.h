// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "pgjobs/config/yaml_reader.h"
#include "pgjobs/db/connection.h"

namespace pgjobs::worker {

/// The port jobs-worker serves its metrics on by default.
inline constexpr int kDefaultPort = 9466;

/// The worker's environment variables that a command gets by default; nothing else of the
/// worker's environment (its DSN, say) reaches a command unless the task's pass_env names it.
inline const std::vector<std::string> kCommandEnvironment = {
    "PATH",        "HOME", "LANG",   "LANGUAGE", "LC_ALL", "LC_CTYPE",
    "LC_MESSAGES", "TZ",   "TMPDIR", "USER",     "LOGNAME"};

/// A command's environment: kCommandEnvironment and `pass_env` looked up with `env` (unset ones
/// left out), then `values` (which win); NAME=value entries. Pure.
std::vector<std::string> CommandEnvironment(const config::EnvLookup& env,
                                            const std::vector<std::string>& pass_env,
                                            const std::map<std::string, std::string>& values);

/// How one configured task runs. Exactly one of command, sql and http_url is set.
struct TaskConfig {
  /// argv, run without a shell; arguments as JSON on stdin.
  std::vector<std::string> command;
  /// The command's whole environment (NAME=value), besides PGJOBS_JOB_ID, PGJOBS_TASK and
  /// PGJOBS_ATTEMPT; see CommandEnvironment. Empty: nothing else.
  std::vector<std::string> environment;
  /// A statement run with the arguments (jsonb) as $1, committed with the ack.
  std::string sql;
  /// sql tasks: up to this many waiting jobs run in one transaction, each in its own savepoint
  /// and acked there, so that they share one commit (one WAL flush). 0 (the default, "auto"):
  /// as many as fit in 20 ms of the task's recent statement time, at most 64; 1: a transaction
  /// per job.
  int sql_batch = 0;
  /// POSTed the job as JSON; 2xx acks.
  std::string http_url;
  std::map<std::string, std::string> http_headers;
  /// Handler run time buckets for this task (seconds); empty: the global ones.
  std::vector<double> duration_buckets;
};

/// The validated configuration of jobs-worker. Defaults live here and nowhere else.
struct WorkerConfig {
  std::string dsn;
  /// kTransaction behind a pooler in transaction mode (PgBouncer): no session state on `dsn`.
  db::Pooling pooling = db::Pooling::kSession;
  /// A direct connection (not through a transaction pooler) for what needs a session: LISTEN
  /// and the maintenance leader's lock. Only used with kTransaction; empty: the dispatcher
  /// polls every poll_interval and maintenance locks each statement.
  std::string notify_dsn;
  std::chrono::milliseconds connect_timeout{5000};
  /// Every call of the dispatcher, completer and heartbeat returns within this long, whatever
  /// the database does (see db::Connection).
  std::chrono::milliseconds call_timeout{30000};
  /// Shown in jobs.worker; defaults to "jobs-worker".
  std::string name = "jobs-worker";
  int concurrency = 16;
  /// Jobs taken per consume call at most (0: as many as there are free slots).
  int batch_size = 0;
  /// Jobs taken ahead of free slots, so that fast handlers get large consume batches. A
  /// prefetched job is running in the database (its timeout runs) while it waits for a slot.
  /// -1 (the default, "auto"): learned from handler and consume times (see RunPolicy), up to
  /// 1,000 or 100 per executor, whichever is more; 0: none.
  int prefetch = -1;
  std::chrono::milliseconds shutdown_grace{30000};
  /// Fallback poll when no NOTIFY arrives.
  std::chrono::milliseconds poll_interval{5000};
  std::chrono::milliseconds heartbeat_interval{5000};
  std::vector<std::string> listen_addresses{"127.0.0.1:" + std::to_string(kDefaultPort)};
  /// false: no metrics path at all (not zeroed series); the health endpoints stay.
  bool metrics_enabled = true;
  std::string telemetry_path = "/metrics";
  /// exporter-toolkit's web configuration file (basic auth, response headers, TLS) for the
  /// metrics server; empty for none.
  std::string web_config_file;
  std::vector<double> duration_buckets{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                       2.5,   5,     10,   30,    60,   120, 300,  600};
  std::vector<double> wait_buckets{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                   2.5,   5,     10,   30,    60,   120, 300,  600};
  std::vector<double> end_to_end_buckets{0.01, 0.05, 0.1, 0.5, 1,    5,    10,   30,
                                         60,   120,  300, 600, 1800, 3600, 21600};
  std::map<std::string, TaskConfig> tasks;

  /// Maintenance (jobs.maintain): run by one worker of all those with it enabled at a time,
  /// the holder of an advisory lock; another takes over within `takeover` of its end.
  struct Maintenance {
    bool enabled = true;
    std::chrono::milliseconds interval{60000};
    /// How often a worker that is not the leader tries to become it.
    std::chrono::milliseconds takeover{5000};
    /// Workers gone (stopped, or silent) for longer than this are deleted.
    std::chrono::milliseconds worker_retention{3600000};
    /// Finished jobs deleted per transaction; a round repeats it until none is left to prune.
    int prune_batch = 10000;
    /// The share of its time a round may spend pruning: after each batch it pauses for as long
    /// as the batch took times (1 / prune_share - 1), so that a large backlog of finished jobs
    /// (after retention was first set, say) costs the queue little while it goes.
    double prune_share = 0.2;
  } maintenance;

  /// A recurring job (schedules: in the YAML), set in jobs.schedules when the worker starts.
  struct Schedule {
    std::string name;
    std::string cron;
    std::string timezone = "UTC";
    std::string task;
    std::string arguments_json;  ///< empty: none
    std::string missed = "run_once";
    /// "file:line:column: schedules.NAME", for what the database refuses.
    std::string where;
  };
  std::vector<Schedule> schedules;
};

/// Parses and validates the YAML in `text` (the contents of `file`), expanding ${VAR} with
/// `env`. Throws config::ConfigError: "file:line:column: key.path: problem".
WorkerConfig ParseWorkerConfig(const std::string& text, const std::string& file,
                               const config::EnvLookup& env);

}  // namespace pgjobs::worker
