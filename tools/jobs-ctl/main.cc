// SPDX-License-Identifier: Apache-2.0
// jobs-ctl: an operator's view of the queue, and controls over its jobs.
#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "pgjobs/build_info.h"
#include "pgjobs/db/connection.h"
#include "pgjobs/db/dsn.h"
#include "pgjobs/db/error.h"
#include "pgjobs/json_quote.h"

namespace {

using pgjobs::JsonQuote;

constexpr const char* kUsage =
    "usage: jobs-ctl [--dsn DSN] [--output table|json] COMMAND [ARGUMENTS]\n"
    "\n"
    "Looks at and acts on the jobs queue. DSN is a postgresql:// URI or libpq connection string;\n"
    "without --dsn, the environment variable PGJOBS_DSN is used. The role needs jobs_operator\n"
    "(stats, list and workers also work with jobs_monitor).\n"
    "\n"
    "commands:\n"
    "  stats                          jobs per task and state, and paused tasks\n"
    "  list [--task T] [--state S] [--status S] [--limit N]\n"
    "                                 the newest jobs first (limit 50); states: ready, scheduled,\n"
    "                                 retry_wait, running, expired, finished; statuses: pending,\n"
    "                                 running, success, failure, expired, cancelled\n"
    "  show ID                        one job: its arguments, attempts and every traceback\n"
    "  retry ID... | --task T [--status S] [--since DURATION]\n"
    "                                 finished failure, expired or cancelled jobs run again\n"
    "                                 (--status failure by default)\n"
    "  cancel ID... | --task T        pending jobs end as cancelled; running ones are stopped\n"
    "  reschedule ID... --at TIME     pending jobs run at TIME (a PostgreSQL timestamp)\n"
    "  pause TASK | resume TASK       stop or restart taking jobs of TASK\n"
    "  prune [--dry-run]              delete finished jobs past their retention now\n"
    "  workers                        registered workers and their state\n"
    "  schedules                      recurring jobs with their last and next run\n"
    "\n"
    "  --yes              act on more than one job selected by --task\n"
    "  --output FORMAT    table (for people, the default) or json (for scripts)\n"
    "  --version          print the version, then exit\n"
    "  -h, --help         show this help\n"
    "\n"
    "Exit status: 0 done, 1 the database failed or refused, 2 bad arguments.\n";

// Options that take a value, and those that do not.
const std::set<std::string>& ValuedOptions() {
  static const std::set<std::string> kValued = {"--dsn",    "--output", "--task",  "--state",
                                                "--status", "--limit",  "--since", "--at"};
  return kValued;
}
const std::set<std::string>& FlagOptions() {
  static const std::set<std::string> kFlags = {"--yes", "--dry-run"};
  return kFlags;
}

// The options each command accepts (besides --dsn and --output).
const std::map<std::string, std::set<std::string>>& CommandOptions() {
  static const std::map<std::string, std::set<std::string>> kCommandOptions = {
      {"stats", {}},
      {"list", {"--task", "--state", "--status", "--limit"}},
      {"show", {}},
      {"retry", {"--task", "--status", "--since", "--yes"}},
      {"cancel", {"--task", "--yes"}},
      {"reschedule", {"--at"}},
      {"pause", {}},
      {"resume", {}},
      {"prune", {"--dry-run"}},
      {"workers", {}},
      {"schedules", {}},
  };
  return kCommandOptions;
}

// A bad command line: exit status 2.
struct UsageError {
  std::string message;
};

struct Args {
  std::string command;
  std::vector<std::string> positional;
  std::map<std::string, std::string> options;
  std::string dsn;
  bool json = false;

  [[nodiscard]] bool Has(const std::string& name) const { return options.contains(name); }
  [[nodiscard]] std::optional<std::string> Get(const std::string& name) const {
    auto it = options.find(name);
    return it == options.end() ? std::nullopt : std::optional<std::string>(it->second);
  }
};

Args Parse(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      std::exit(0);
    }
    if (arg == "--version") {
      std::cout << "jobs-ctl " << pgjobs::BuildVersion() << " (revision " << pgjobs::BuildRevision()
                << ")\n";
      std::exit(0);
    }
    if (arg.starts_with("--")) {
      const size_t eq = arg.find('=');
      const std::string name = arg.substr(0, eq);
      if (FlagOptions().contains(name)) {
        if (eq != std::string::npos) throw UsageError{name + " takes no value"};
        args.options[name] = "";
      } else if (ValuedOptions().contains(name)) {
        std::string value;
        if (eq != std::string::npos) {
          value = arg.substr(eq + 1);
        } else if (i + 1 < argc) {
          value = argv[++i];
        } else {
          throw UsageError{name + " needs a value"};
        }
        if (args.options.contains(name)) throw UsageError{name + " given twice"};
        args.options[name] = value;
      } else {
        throw UsageError{"unknown option '" + name + "'"};
      }
    } else if (args.command.empty()) {
      args.command = arg;
    } else {
      args.positional.push_back(arg);
    }
  }
  if (args.command.empty()) throw UsageError{"no command given"};
  auto allowed = CommandOptions().find(args.command);
  if (allowed == CommandOptions().end()) {
    throw UsageError{"unknown command '" + args.command + "'"};
  }
  for (const auto& [name, value] : args.options) {
    if (name == "--dsn" || name == "--output") continue;
    if (!allowed->second.contains(name)) {
      throw UsageError{args.command + ": " + name + " does not apply to this command"};
    }
  }
  const std::string output = args.Get("--output").value_or("table");
  if (output != "table" && output != "json") {
    throw UsageError{"--output: expected table or json, got '" + output + "'"};
  }
  args.json = output == "json";
  if (auto dsn = args.Get("--dsn")) {
    args.dsn = *dsn;
  } else {
    const char* env = std::getenv("PGJOBS_DSN");
    if (env == nullptr || *env == '\0') {
      throw UsageError{
          "no database given: pass --dsn (postgresql://user:password@host:5432/db) or set "
          "PGJOBS_DSN"};
    }
    args.dsn = env;
  }
  return args;
}

// --- checks of arguments -----------------------------------------------------------------------

long long ParsePositive(const std::string& text, const std::string& what, long long max) {
  if (text.empty() || text.size() > 18 ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    throw UsageError{what + ": expected a positive integer, got '" + text + "'"};
  }
  const long long value = std::stoll(text);
  if (value < 1 || value > max) {
    throw UsageError{what + ": expected an integer from 1 to " + std::to_string(max) + ", got " +
                     text};
  }
  return value;
}

// Job ids from the positional arguments, as a PostgreSQL array literal.
std::string IdArray(const Args& args) {
  std::string out = "{";
  for (const std::string& id : args.positional) {
    ParsePositive(id, args.command + ": job id", 999999999999999999LL);
    if (out.size() > 1) out += ",";
    out += id;
  }
  return out + "}";
}

// "90s", "15m", "2h", "7d" as a PostgreSQL interval.
std::string Duration(const std::string& text, const std::string& what) {
  static const std::map<char, std::string> kUnits = {
      {'s', "seconds"}, {'m', "minutes"}, {'h', "hours"}, {'d', "days"}};
  if (text.size() >= 2 && kUnits.contains(text.back())) {
    const std::string number = text.substr(0, text.size() - 1);
    if (std::all_of(number.begin(), number.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
        number.size() <= 9) {
      return number + " " + kUnits.at(text.back());
    }
  }
  throw UsageError{what + ": expected a duration such as 90s, 15m, 2h or 7d, got '" + text + "'"};
}

void OneOf(const std::optional<std::string>& value, const std::string& what,
           const std::vector<std::string>& allowed) {
  if (!value || std::find(allowed.begin(), allowed.end(), *value) != allowed.end()) return;
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
  throw UsageError{what + ": expected one of " + list + ", got '" + *value + "'"};
}

const std::vector<std::string>& States() {
  static const std::vector<std::string> kStates = {"ready",   "scheduled", "retry_wait",
                                                   "running", "expired",   "finished"};
  return kStates;
}
const std::vector<std::string>& Statuses() {
  static const std::vector<std::string> kStatuses = {"pending", "running", "success",
                                                     "failure", "expired", "cancelled"};
  return kStatuses;
}

// --- output ------------------------------------------------------------------------------------

// Columns printed as JSON numbers (or booleans for those named in BooleanColumns()); others as
// strings.
const std::set<std::string>& NumberColumns() {
  static const std::set<std::string> kNumbers = {
      "job_id",  "attempts", "max_retries", "ready",     "scheduled", "retry_wait", "running",
      "expired", "pid",      "concurrency", "worker_id", "jobs",      "priority",   "timeout"};
  return kNumbers;
}
const std::set<std::string>& BooleanColumns() {
  static const std::set<std::string> kBooleans = {"paused"};
  return kBooleans;
}

std::string JsonValue(const pgjobs::db::Result& r, int row, int column) {
  if (r.IsNull(row, column)) return "null";
  const std::string name = r.ColumnName(column);
  const std::string_view text = r.Text(row, column);
  if (NumberColumns().contains(name)) return std::string(text);
  if (BooleanColumns().contains(name)) return text == "t" ? "true" : "false";
  if (name == "arguments" || name == "tracebacks") return std::string(text);  // JSON already
  return JsonQuote(text);
}

void PrintJson(const pgjobs::db::Result& r) {
  std::cout << "[";
  for (int row = 0; row < r.Rows(); ++row) {
    std::cout << (row == 0 ? "\n  {" : ",\n  {");
    for (int c = 0; c < r.Columns(); ++c) {
      std::cout << (c == 0 ? "" : ", ") << JsonQuote(r.ColumnName(c)) << ": "
                << JsonValue(r, row, c);
    }
    std::cout << "}";
  }
  std::cout << (r.Rows() == 0 ? "]\n" : "\n]\n");
}

// One line of a table cell: line breaks and tabs become spaces.
std::string Cell(const pgjobs::db::Result& r, int row, int column) {
  if (r.IsNull(row, column)) return "-";
  std::string s(r.Text(row, column));
  if (BooleanColumns().contains(r.ColumnName(column))) return s == "t" ? "yes" : "no";
  for (char& c : s) {
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  }
  return s;
}

void PrintTable(const pgjobs::db::Result& r) {
  std::vector<size_t> width(static_cast<size_t>(r.Columns()));
  for (int c = 0; c < r.Columns(); ++c) {
    width[static_cast<size_t>(c)] = r.ColumnName(c).size();
    for (int row = 0; row < r.Rows(); ++row) {
      width[static_cast<size_t>(c)] =
          std::max(width[static_cast<size_t>(c)], Cell(r, row, c).size());
    }
  }
  auto line = [&](auto&& text) {
    std::string out;
    for (int c = 0; c < r.Columns(); ++c) {
      std::string cell = text(c);
      if (c + 1 < r.Columns()) cell.resize(width[static_cast<size_t>(c)], ' ');
      out += (c == 0 ? "" : "  ") + cell;
    }
    std::cout << out << "\n";
  };
  line([&](int c) { return r.ColumnName(c); });
  for (int row = 0; row < r.Rows(); ++row) line([&](int c) { return Cell(r, row, c); });
}

void Print(const Args& args, const pgjobs::db::Result& r) {
  if (args.json) {
    PrintJson(r);
  } else {
    PrintTable(r);
  }
}

// What an action did: the ids it changed, out of those asked for.
void PrintDone(const Args& args, const std::string& verb, const pgjobs::db::Result& r,
               size_t asked) {
  if (args.json) {
    std::cout << "{" << JsonQuote(verb) << ": [";
    for (int i = 0; i < r.Rows(); ++i) std::cout << (i == 0 ? "" : ", ") << r.Text(i, 0);
    std::cout << "], \"asked\": " << asked << "}\n";
    return;
  }
  std::cout << verb << " " << r.Rows() << " of " << asked << " job" << (asked == 1 ? "" : "s");
  for (int i = 0; i < r.Rows(); ++i) std::cout << (i == 0 ? ": " : ", ") << r.Text(i, 0);
  std::cout << "\n";
}

// --- commands ----------------------------------------------------------------------------------

using pgjobs::db::Connection;
using pgjobs::db::Result;

void NoPositional(const Args& args) {
  if (!args.positional.empty()) {
    throw UsageError{args.command + ": unexpected argument '" + args.positional.front() + "'"};
  }
}

// The ids to act on: those given, or those the query selects (then --yes for more than one).
std::string Selected(const Args& args, Connection& conn, const std::string& sql,
                     const pgjobs::db::Params& params, size_t& asked) {
  if (!args.positional.empty()) {
    if (args.Has("--task")) {
      throw UsageError{args.command + ": give job ids or --task, not both"};
    }
    asked = args.positional.size();
    return IdArray(args);
  }
  if (!args.Has("--task")) throw UsageError{args.command + ": give job ids or --task"};
  Result r = conn.Query("select jobs", sql, params);
  asked = static_cast<size_t>(r.Rows());
  if (asked > 1 && !args.Has("--yes")) {
    throw UsageError{args.command + ": " + std::to_string(asked) +
                     " jobs match; add --yes to act on all of them"};
  }
  std::string ids = "{";
  for (int i = 0; i < r.Rows(); ++i) ids += (i == 0 ? "" : ",") + std::string(r.Text(i, 0));
  return ids + "}";
}

int Stats(const Args& args, Connection& conn) {
  NoPositional(args);
  Print(args, conn.Query("stats", R"sql(
    SELECT coalesce(q.task, p.task) AS task, coalesce(q.ready, 0) AS ready,
           coalesce(q.scheduled, 0) AS scheduled, coalesce(q.retry_wait, 0) AS retry_wait,
           coalesce(q.running, 0) AS running, coalesce(q.expired, 0) AS expired,
           p.task IS NOT NULL AS paused
    FROM jobs.stats_queue q FULL JOIN jobs.stats_paused_tasks p ON p.task = q.task
    ORDER BY 1)sql"));
  return 0;
}

int List(const Args& args, Connection& conn) {
  NoPositional(args);
  OneOf(args.Get("--state"), "--state", States());
  OneOf(args.Get("--status"), "--status", Statuses());
  const long long limit = ParsePositive(args.Get("--limit").value_or("50"), "--limit", 100000);
  auto opt = [](const std::optional<std::string>& v) { return v; };
  Print(args, conn.Query("list", R"sql(
    SELECT job_id, task, status, state, attempts, max_retries,
           date_trunc('second', scheduled_at) AS scheduled_at,
           date_trunc('second', started_at) AS started_at,
           date_trunc('second', finished_at) AS finished_at,
           left(tracebacks -> -1 ->> 'error', 80) AS last_error
    FROM jobs.job_overview
    WHERE ($1::text IS NULL OR task = $1) AND ($2::text IS NULL OR state = $2)
      AND ($3::text IS NULL OR status = $3)
    ORDER BY job_id DESC LIMIT $4::int)sql",
                         {opt(args.Get("--task")), opt(args.Get("--state")),
                          opt(args.Get("--status")), std::to_string(limit)}));
  return 0;
}

int Show(const Args& args, Connection& conn) {
  if (args.positional.size() != 1) throw UsageError{"show: expected one job id"};
  const std::string id =
      std::to_string(ParsePositive(args.positional.front(), "show: job id", 999999999999999999LL));
  Result job = conn.Query("show", R"sql(
    SELECT job_id, task, status, state, priority, attempts, max_retries, timeout, published_at,
           scheduled_at, started_at, expires_at, finished_at, worker_id, cancel_requested_at,
           tracebacks
    FROM jobs.job_overview WHERE job_id = $1::bigint)sql",
                          {id});
  if (job.Rows() == 0) {
    std::cerr << "jobs-ctl show: no job " << id << "\n";
    return 1;
  }
  std::optional<std::string> arguments;
  bool arguments_hidden = false;
  try {
    Result a = conn.Query("arguments", "SELECT jobs.job_arguments($1::bigint)", {id});
    if (!a.IsNull(0, 0)) arguments = std::string(a.Text(0, 0));
  } catch (const pgjobs::db::DbError& e) {
    if (!e.PermissionDenied()) throw;
    arguments_hidden = true;  // jobs_monitor: arguments may hold personal data
  }
  if (args.json) {
    std::cout << "{";
    for (int c = 0; c < job.Columns(); ++c) {
      std::cout << (c == 0 ? "" : ", ") << JsonQuote(job.ColumnName(c)) << ": "
                << JsonValue(job, 0, c);
    }
    std::cout << ", \"arguments\": "
              << (arguments_hidden ? "\"(hidden from this role)\"" : arguments.value_or("null"))
              << "}\n";
    return 0;
  }
  for (int c = 0; c + 1 < job.Columns(); ++c) {
    std::cout << job.ColumnName(c) << ": " << Cell(job, 0, c) << "\n";
  }
  std::cout << "arguments: "
            << (arguments_hidden ? "(hidden from this role)" : arguments.value_or("null")) << "\n";
  Result tb = conn.Query("tracebacks", R"sql(
    SELECT t ->> 'attempt', t ->> 'at', t ->> 'error'
    FROM jobs.job_overview o, jsonb_array_elements(coalesce(o.tracebacks, '[]')) AS t
    WHERE o.job_id = $1::bigint)sql",
                         {id});
  std::cout << "tracebacks: " << (tb.Rows() == 0 ? "none" : "") << "\n";
  for (int i = 0; i < tb.Rows(); ++i) {
    std::cout << "  attempt " << tb.Text(i, 0) << " at " << tb.Text(i, 1) << ":\n";
    std::istringstream lines{std::string(tb.Text(i, 2))};
    for (std::string line; std::getline(lines, line);) std::cout << "    " << line << "\n";
  }
  return 0;
}

int Retry(const Args& args, Connection& conn) {
  const std::string status = args.Get("--status").value_or("failure");
  OneOf(status, "--status", {"failure", "expired", "cancelled"});
  if (!args.positional.empty() && (args.Has("--status") || args.Has("--since"))) {
    throw UsageError{"retry: --status and --since select with --task, not with job ids"};
  }
  std::optional<std::string> since;
  if (auto s = args.Get("--since")) since = Duration(*s, "--since");
  size_t asked = 0;
  const std::string ids = Selected(args, conn, R"sql(
    SELECT job_id FROM jobs.job_overview
    WHERE task = $1 AND status = $2
      AND ($3::interval IS NULL OR finished_at >= clock_timestamp() - $3::interval)
    ORDER BY job_id)sql",
                                   {args.Get("--task"), status, since}, asked);
  PrintDone(args, "retried", conn.Query("retry", "SELECT jobs.retry($1::bigint[])", {ids}), asked);
  return 0;
}

int Cancel(const Args& args, Connection& conn) {
  size_t asked = 0;
  const std::string ids = Selected(args, conn, R"sql(
    SELECT job_id FROM jobs.job_overview
    WHERE task = $1 AND status IN ('pending', 'running') ORDER BY job_id)sql",
                                   {args.Get("--task")}, asked);
  PrintDone(args, "cancelled", conn.Query("cancel", "SELECT jobs.cancel($1::bigint[])", {ids}),
            asked);
  return 0;
}

int Reschedule(const Args& args, Connection& conn) {
  if (args.positional.empty()) throw UsageError{"reschedule: give job ids"};
  const auto at = args.Get("--at");
  if (!at) throw UsageError{"reschedule: give --at TIME"};
  const std::string ids = IdArray(args);
  try {
    conn.Query("check time", "SELECT $1::timestamptz", {*at});
  } catch (const pgjobs::db::DbError& e) {
    if (!e.BadValue()) throw;
    throw UsageError{"reschedule: --at: expected a time such as '2026-12-24 08:00+01', got '" +
                     *at + "'"};
  }
  PrintDone(
      args, "rescheduled",
      conn.Query("reschedule", "SELECT jobs.reschedule($1::bigint[], $2::timestamptz)", {ids, *at}),
      args.positional.size());
  return 0;
}

int PauseOrResume(const Args& args, Connection& conn) {
  if (args.positional.size() != 1) throw UsageError{args.command + ": expected one task name"};
  const std::string& task = args.positional.front();
  const bool changed =
      conn.Query(args.command, "SELECT jobs." + args.command + "($1)", {task}).Text(0, 0) == "t";
  const std::string done = args.command == "pause" ? "paused" : "resumed";
  if (args.json) {
    std::cout << "{\"task\": " << JsonQuote(task) << ", " << JsonQuote(done) << ": "
              << (changed ? "true" : "false") << "}\n";
  } else if (changed) {
    std::cout << done << " " << task << "\n";
  } else {
    std::cout << task << " was " << (args.command == "pause" ? "paused already" : "not paused")
              << "\n";
  }
  return 0;
}

int Prune(const Args& args, Connection& conn) {
  NoPositional(args);
  if (args.Has("--dry-run")) {
    Print(args, conn.Query("prune dry run", R"sql(
      SELECT r.status, r.keep::text AS keep, p.jobs
      FROM jobs.prunable() p JOIN jobs.retention r ON r.status = p.status
      ORDER BY r.status)sql"));
    return 0;
  }
  constexpr int kBatch = 10000;
  long long total = 0;
  for (;;) {  // a batch per transaction
    const long long n =
        conn.Query("prune", "SELECT jobs.prune($1::int)", {std::to_string(kBatch)}).Int(0, 0);
    total += n;
    if (n < kBatch) break;
  }
  if (args.json) {
    std::cout << "{\"pruned\": " << total << "}\n";
  } else {
    std::cout << "pruned " << total << " finished job" << (total == 1 ? "" : "s") << "\n";
  }
  return 0;
}

int Workers(const Args& args, Connection& conn) {
  NoPositional(args);
  Print(args, conn.Query("workers", R"sql(
    SELECT worker_id, name, host, pid, concurrency, state, running,
           date_trunc('second', started_at) AS started_at,
           date_trunc('second', heartbeat_at) AS heartbeat_at
    FROM jobs.worker_overview ORDER BY worker_id)sql"));
  return 0;
}

int Schedules(const Args& args, Connection& conn) {
  NoPositional(args);
  Print(args, conn.Query("schedules", R"sql(
    SELECT s.name, s.cron, s.timezone, s.task, s.missed,
           date_trunc('second', to_timestamp(s.last_enqueued_seconds)) AS last_run,
           date_trunc('second', to_timestamp(s.next_run_seconds)) AS next_run
    FROM jobs.stats_schedules s ORDER BY s.name)sql"));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  try {
    args = Parse(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << "jobs-ctl: " << e.message << "\n(see jobs-ctl --help)\n";
    return 2;
  }
  try {
    Connection conn(pgjobs::db::ConnectOptions{.dsn = args.dsn, .application_name = "jobs-ctl"});
    const std::string& c = args.command;
    if (c == "stats") return Stats(args, conn);
    if (c == "list") return List(args, conn);
    if (c == "show") return Show(args, conn);
    if (c == "retry") return Retry(args, conn);
    if (c == "cancel") return Cancel(args, conn);
    if (c == "reschedule") return Reschedule(args, conn);
    if (c == "pause" || c == "resume") return PauseOrResume(args, conn);
    if (c == "prune") return Prune(args, conn);
    if (c == "schedules") return Schedules(args, conn);
    return Workers(args, conn);
  } catch (const UsageError& e) {
    std::cerr << "jobs-ctl: " << e.message << "\n(see jobs-ctl --help)\n";
    return 2;
  } catch (const pgjobs::db::DbError& e) {
    std::cerr << "jobs-ctl " << args.command << ": " << e.what() << "\n";
    // The database's own refusal of an argument is a bad argument too.
    return e.BadValue() ? 2 : 1;
  } catch (const pgjobs::Error& e) {
    std::cerr << "jobs-ctl " << args.command << ": " << e.what() << "\n";
    return 1;
  }
}
