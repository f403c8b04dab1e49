// SPDX-License-Identifier: Apache-2.0
// The worker, composed from its parts; worker/README.md says which file decides what.
#include "pgjobs/worker/worker.h"

#include <condition_variable>
#include <mutex>
#include <thread>

#include "command_handler.h"
#include "completer.h"
#include "dispatcher.h"
#include "executor.h"
#include "heartbeat.h"
#include "http_handler.h"
#include "maintenance.h"
#include "metrics.h"
#include "pgjobs/http/server.h"
#include "pgjobs/http/web_config.h"
#include "routes.h"
#include "run_queue.h"
#include "schedules.h"
#include "shutdown.h"
#include "sql_handler.h"
#include "status.h"

namespace pgjobs::worker {

struct Worker::Impl {
  WorkerConfig config;
  log::Logger& logger;
  std::string version;
  // Every task's handler, but sql tasks', which the sql handler runs (unless a C++ handler was
  // registered over one).
  std::map<std::string, Handler> handlers;
  std::map<std::string, std::string> sql_statements;
  Shutdown shutdown;
  Status status;

  // What Stop() must wake, while Run() runs.
  std::mutex running_mutex;
  RunQueue* queue = nullptr;
  Dispatcher* dispatcher = nullptr;
  http::Server* server = nullptr;
  std::vector<int> ports;

  Impl(WorkerConfig c, log::Logger& l, std::string v)
      : config(std::move(c)), logger(l), version(std::move(v)) {}

  db::ConnectOptions Options(const char* role) const {
    return {.dsn = config.dsn,
            .application_name = std::string("jobs-worker ") + role,
            .connect_timeout = config.connect_timeout,
            .call_timeout = config.call_timeout,
            .pooling = config.pooling};
  }

  // Maintenance's leader holds a session lock: behind a transaction pooler it takes the direct
  // notify_dsn when there is one (else RunMaintenance locks each statement).
  db::ConnectOptions MaintenanceOptions() const {
    db::ConnectOptions options = Options("maintenance");
    if (!config.notify_dsn.empty()) {
      options.dsn = config.notify_dsn;
      options.pooling = db::Pooling::kSession;
    }
    return options;
  }

  std::vector<std::string> Tasks() const {
    std::vector<std::string> tasks;
    for (const auto& [task, unused] : handlers) tasks.push_back(task);
    for (const auto& [task, unused] : sql_statements) tasks.push_back(task);
    return tasks;
  }

  std::map<std::string, int> SqlBatches() const {
    std::map<std::string, int> batches;
    for (const auto& [task, unused] : sql_statements) {
      const int batch = config.tasks.at(task).sql_batch;
      batches[task] = batch == 0 ? RunPolicy::kAdaptive : batch;
    }
    return batches;
  }
};

Worker::Worker(WorkerConfig config, log::Logger& logger, std::string version)
    : impl_(std::make_unique<Impl>(std::move(config), logger, std::move(version))) {
  for (const auto& [task, t] : impl_->config.tasks) {
    if (!t.command.empty()) {
      impl_->handlers[task] = CommandHandler(t.command, t.environment, impl_->shutdown);
    } else if (!t.http_url.empty()) {
      std::vector<std::string> lines;
      for (const auto& [name, value] : t.http_headers) lines.push_back(name + ": " + value);
      impl_->handlers[task] = HttpHandler(t.http_url, lines, impl_->shutdown);
    } else {
      impl_->sql_statements[task] = t.sql;
    }
  }
}

Worker::~Worker() = default;

void Worker::Handle(const std::string& task, Handler handler) {
  impl_->handlers[task] = std::move(handler);
  impl_->sql_statements.erase(task);
}

std::vector<int> Worker::Ports() const {
  std::lock_guard<std::mutex> lock(impl_->running_mutex);
  return impl_->ports;
}

void Worker::ReloadWebConfig() {
  Impl& w = *impl_;
  http::WebConfig web = http::LoadWebConfig(w.config.web_config_file);
  std::lock_guard<std::mutex> lock(w.running_mutex);
  if (w.server != nullptr) {
    w.server->SetAccess(std::move(web.basic_auth_users), std::move(web.headers),
                        std::move(web.tls));
  }
}

void Worker::Stop() {
  Impl& w = *impl_;
  if (!w.shutdown.Begin(w.config.shutdown_grace)) return;
  std::lock_guard<std::mutex> lock(w.running_mutex);
  if (w.queue != nullptr) w.queue->WakeAll();
  if (w.dispatcher != nullptr) w.dispatcher->Wake();
}

void Worker::Run() {
  Impl& w = *impl_;
  const std::vector<std::string> tasks = w.Tasks();
  if (tasks.empty()) {
    throw Error(
        "no tasks to run: configure tasks in the configuration file, or register "
        "handlers with Worker::Handle()");
  }
  WorkerMetrics metrics(w.config, tasks, w.version);
  http::ServerOptions server_options;
  server_options.listen_addresses = w.config.listen_addresses;
  const http::WebConfig web = http::LoadWebConfig(w.config.web_config_file);
  server_options.basic_auth_users = web.basic_auth_users;
  server_options.response_headers = web.headers;
  server_options.tls = web.tls;
  http::Server server(server_options,
                      Routes(metrics, w.status, w.shutdown,
                             w.config.metrics_enabled ? w.config.telemetry_path : ""));
  // SetAccess reaches the server only while it exists.
  struct Unpublish {
    Impl& w;
    ~Unpublish() {
      std::lock_guard<std::mutex> lock(w.running_mutex);
      w.server = nullptr;
    }
  } unpublish{w};
  std::string ports;
  {
    std::lock_guard<std::mutex> lock(w.running_mutex);
    w.server = &server;
    w.ports = server.Ports();
    for (int port : w.ports) ports += (ports.empty() ? "" : ",") + std::to_string(port);
  }
  std::string names;
  for (const auto& t : tasks) names += (names.empty() ? "" : ",") + t;
  w.logger.Info(
      "listening",
      {{"ports", ports}, {"tasks", names}, {"concurrency", std::to_string(w.config.concurrency)}});

  SetSchedules(w.Options("schedules"), w.config.schedules, w.logger, w.shutdown);

  RunQueue queue(RunPolicy(w.config.concurrency,
                           w.config.prefetch < 0 ? RunPolicy::kAdaptive : w.config.prefetch,
                           w.config.batch_size, tasks, w.SqlBatches()),
                 w.shutdown);
  Dispatcher dispatcher(w.config, tasks, queue, metrics, w.logger, w.status, w.shutdown);
  Completer completer(w.Options("completer"), metrics, w.logger, w.status, w.shutdown,
                      [&dispatcher] { dispatcher.Wake(); });
  SqlCancels cancels;
  Cancellations cancellations(w.config.concurrency);
  {
    std::lock_guard<std::mutex> lock(w.running_mutex);
    w.queue = &queue;
    w.dispatcher = &dispatcher;
  }
  if (w.shutdown.Stopping()) queue.WakeAll();  // Stop() came before Run()

  std::thread watchdog([&queue] { queue.Watch(); });
  std::vector<std::thread> executors;
  for (int i = 0; i < w.config.concurrency; ++i) {
    executors.emplace_back([&, i] {
      Executor(queue, w.handlers, w.sql_statements,
               SqlHandler(w.Options("sql"), w.logger, w.shutdown, cancels), completer,
               cancellations, i, metrics, w.shutdown)
          .Run();
    });
  }
  std::thread completer_thread([&completer] { completer.Run(); });
  std::thread heartbeat([&] {
    RunHeartbeat(w.Options("heartbeat"), w.config.heartbeat_interval, metrics, w.logger, w.status,
                 cancellations, cancels, w.shutdown);
  });
  std::thread maintenance([&] {
    RunMaintenance(w.MaintenanceOptions(), w.config.maintenance, metrics, w.logger, w.shutdown);
  });
  dispatcher.Run();  // returns when the shutdown begins

  w.logger.Info("stopping: draining jobs in flight",
                {{"grace", std::to_string(w.config.shutdown_grace.count()) + "ms"}});
  // Commands and http requests end themselves at the grace's end; a sql statement's timeout was
  // fixed when it started, so the statements still running then are cancelled.
  std::mutex drained_mutex;
  std::condition_variable drained_cv;
  bool drained = false;
  std::thread grace_keeper([&] {
    std::unique_lock<std::mutex> lock(drained_mutex);
    if (!drained_cv.wait_until(lock, w.shutdown.Deadline(), [&] { return drained; })) {
      cancels.CancelAll();
    }
  });
  for (auto& t : executors) t.join();
  {
    std::lock_guard<std::mutex> lock(drained_mutex);
    drained = true;
  }
  drained_cv.notify_all();
  grace_keeper.join();
  watchdog.join();
  completer.ExecutorsFinished();
  completer_thread.join();
  heartbeat.join();
  maintenance.join();
  {
    std::lock_guard<std::mutex> lock(w.running_mutex);
    w.queue = nullptr;
    w.dispatcher = nullptr;
  }
  w.logger.Info("stopped");
}

}  // namespace pgjobs::worker
