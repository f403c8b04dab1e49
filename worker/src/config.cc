// SPDX-License-Identifier: Apache-2.0
#include "pgjobs/worker/config.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>

#include "pgjobs/http/server.h"

namespace pgjobs::worker {

std::vector<std::string> CommandEnvironment(const config::EnvLookup& env,
                                            const std::vector<std::string>& pass_env,
                                            const std::map<std::string, std::string>& values) {
  std::map<std::string, std::string> chosen;
  auto pass = [&](const std::string& name) {
    if (auto value = env ? env(name) : std::nullopt) chosen[name] = *value;
  };
  for (const std::string& name : kCommandEnvironment) pass(name);
  for (const std::string& name : pass_env) pass(name);
  for (const auto& [name, value] : values) chosen[name] = value;
  std::vector<std::string> out;
  for (const auto& [name, value] : chosen) out.push_back(name + "=" + value);
  return out;
}

namespace {

// `key`: "auto" (which reads as `auto_value`) or an integer from min to max.
int AutoOrInteger(config::MapReader& m, const std::string& key, long long min, long long max,
                  int auto_value) {
  const std::string text = m.String(key).value_or("");
  if (text == "auto") return auto_value;
  char* end = nullptr;
  errno = 0;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE || value < min || value > max) {
    m.Fail(key, "expected auto or an integer from " + std::to_string(min) + " to " +
                    std::to_string(max) + ", got '" + text + "'");
  }
  return static_cast<int>(value);
}

bool ValidEnvName(const std::string& name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

TaskConfig ParseTask(config::MapReader& m, const config::EnvLookup& env) {
  TaskConfig t;
  int kinds = 0;
  if (auto command = m.StringList("command")) {
    if (command->empty() || (*command)[0].empty()) {
      m.Fail("command", "expected a program and its arguments, got an empty list");
    }
    t.command = *command;
    ++kinds;
  }
  std::vector<std::string> pass_env;
  std::map<std::string, std::string> values;
  if (auto names = m.StringList("pass_env")) {
    if (t.command.empty()) m.Fail("pass_env", "only command tasks have an environment");
    for (const std::string& name : *names) {
      if (!ValidEnvName(name)) m.Fail("pass_env", "expected variable names, got '" + name + "'");
    }
    pass_env = *names;
  }
  if (auto extra = m.Map("env")) {
    if (t.command.empty()) m.Fail("env", "only command tasks have an environment");
    for (const std::string& name : extra->Keys()) {
      if (!ValidEnvName(name)) extra->Fail(name, "expected a variable name, got '" + name + "'");
      values[name] = extra->String(name).value_or("");
    }
    extra->Finish();
  }
  if (!t.command.empty()) t.environment = CommandEnvironment(env, pass_env, values);
  if (auto sql = m.String("sql")) {
    if (sql->empty()) m.Fail("sql", "expected a statement, got ''");
    t.sql = *sql;
    ++kinds;
  }
  if (auto http = m.Map("http")) {
    auto url = http->String("url");
    if (!url) http->Fail("url", "missing: the http handler needs a url");
    if (!url->starts_with("http://") && !url->starts_with("https://")) {
      http->Fail("url", "expected an http:// or https:// URL, got '" + *url + "'");
    }
    t.http_url = *url;
    if (auto headers = http->Map("headers")) {
      for (const std::string& name : headers->Keys()) {
        t.http_headers[name] = headers->String(name).value_or("");
      }
      headers->Finish();
    }
    http->Finish();
    ++kinds;
  }
  if (m.Has("batch")) {
    if (t.sql.empty()) m.Fail("batch", "only sql tasks run in batches; remove it or give sql");
    t.sql_batch = AutoOrInteger(m, "batch", 1, 1000, 0);
  }
  if (auto buckets = m.Map("buckets")) {
    t.duration_buckets = buckets->AscendingNumbers("duration_seconds").value_or(t.duration_buckets);
    buckets->Finish();
  }
  m.Finish();
  if (kinds == 0) m.FailHere("missing handler: give one of command, sql or http");
  if (kinds > 1) m.FailHere("give only one of command, sql or http");
  return t;
}

}  // namespace

WorkerConfig ParseWorkerConfig(const std::string& text, const std::string& file,
                               const config::EnvLookup& env) {
  config::MapReader root = config::MapReader::Parse(text, file, env);
  WorkerConfig c;
  if (auto db = root.Map("database")) {
    c.dsn = db->String("dsn").value_or("");
    if (db->Choice("pooling", {"session", "transaction"}).value_or("session") == "transaction") {
      c.pooling = db::Pooling::kTransaction;
    }
    c.notify_dsn = db->String("notify_dsn").value_or("");
    if (!c.notify_dsn.empty()) {
      if (c.pooling != db::Pooling::kTransaction) {
        db->Fail("notify_dsn",
                 "only used with pooling: transaction (a session connection listens "
                 "on dsn itself)");
      }
      try {
        db::CheckDsn(c.notify_dsn);
      } catch (const db::DbError& e) {
        db->Fail("notify_dsn", e.what());
      }
    }
    c.connect_timeout = db->Duration("connect_timeout").value_or(c.connect_timeout);
    c.call_timeout = db->Duration("call_timeout").value_or(c.call_timeout);
    if (c.call_timeout.count() <= 0) db->Fail("call_timeout", "expected a positive duration");
    db->Finish();
  }
  if (auto w = root.Map("worker")) {
    c.name = w->String("name").value_or(c.name);
    c.concurrency = static_cast<int>(w->Integer("concurrency", 1, 10000).value_or(c.concurrency));
    c.batch_size = static_cast<int>(w->Integer("batch_size", 0, 10000).value_or(c.batch_size));
    if (w->Has("prefetch")) c.prefetch = AutoOrInteger(*w, "prefetch", 0, 100000, -1);
    c.shutdown_grace = w->Duration("shutdown_grace").value_or(c.shutdown_grace);
    c.poll_interval = w->Duration("poll_interval").value_or(c.poll_interval);
    c.heartbeat_interval = w->Duration("heartbeat_interval").value_or(c.heartbeat_interval);
    if (c.poll_interval.count() <= 0) w->Fail("poll_interval", "expected a positive duration");
    if (c.heartbeat_interval.count() <= 0) {
      w->Fail("heartbeat_interval", "expected a positive duration");
    }
    w->Finish();
  }
  if (auto m = root.Map("metrics")) {
    if (auto listen = m->String("listen")) {
      try {
        http::NormalizeListenAddress(*listen);
      } catch (const Error& e) {
        m->Fail("listen", e.what());
      }
      c.listen_addresses = {*listen};
    }
    c.metrics_enabled = m->Bool("enabled").value_or(c.metrics_enabled);
    if (auto b = m->Map("buckets")) {
      c.duration_buckets = b->AscendingNumbers("duration_seconds").value_or(c.duration_buckets);
      c.wait_buckets = b->AscendingNumbers("wait_seconds").value_or(c.wait_buckets);
      c.end_to_end_buckets =
          b->AscendingNumbers("end_to_end_seconds").value_or(c.end_to_end_buckets);
      b->Finish();
    }
    m->Finish();
  }
  if (auto tasks = root.Map("tasks")) {
    for (auto& [name, task] : tasks->Entries()) c.tasks[name] = ParseTask(task, env);
  }
  if (auto m = root.Map("maintenance")) {
    WorkerConfig::Maintenance& mc = c.maintenance;
    mc.enabled = m->Bool("enabled").value_or(mc.enabled);
    mc.interval = m->Duration("interval").value_or(mc.interval);
    mc.takeover = m->Duration("takeover").value_or(mc.takeover);
    mc.worker_retention = m->Duration("worker_retention").value_or(mc.worker_retention);
    mc.prune_batch =
        static_cast<int>(m->Integer("prune_batch", 1, 1000000).value_or(mc.prune_batch));
    if (m->Has("prune_share")) {
      mc.prune_share = m->Number("prune_share").value_or(mc.prune_share);
      if (!(mc.prune_share > 0 && mc.prune_share <= 1)) {
        m->Fail("prune_share", "expected a number above 0 and at most 1");
      }
    }
    if (mc.interval.count() <= 0) m->Fail("interval", "expected a positive duration");
    if (mc.takeover.count() <= 0) m->Fail("takeover", "expected a positive duration");
    if (mc.worker_retention.count() < 0) {
      m->Fail("worker_retention", "expected a duration of 0 or more");
    }
    m->Finish();
  }
  if (auto schedules = root.Map("schedules")) {
    for (auto& [name, m] : schedules->Entries()) {
      WorkerConfig::Schedule sc;
      sc.name = name;
      sc.where = schedules->Locate(name);
      if (!m.Has("cron")) m.FailHere("missing cron: give a cron expression such as \"0 3 * * *\"");
      if (!m.Has("task")) m.FailHere("missing task: the task of the jobs it publishes");
      sc.cron = *m.String("cron");
      sc.task = *m.String("task");
      sc.timezone = m.String("timezone").value_or(sc.timezone);
      sc.arguments_json = m.Json("arguments").value_or("");
      sc.missed = m.String("missed").value_or(sc.missed);
      if (sc.missed != "skip" && sc.missed != "run_once" && sc.missed != "run_all") {
        m.Fail("missed", "expected skip, run_once or run_all, got '" + sc.missed + "'");
      }
      m.Finish();
      c.schedules.push_back(std::move(sc));
    }
  }
  root.Finish();
  return c;
}

}  // namespace pgjobs::worker
