// SPDX-License-Identifier: Apache-2.0
// Pickup latency as users feel it: from the moment publish's commit returns to the publisher, to
// the moment the handler starts, both on this process's monotonic clock. A worker with a no-op
// handler runs in-process (the C++ API); the publisher uses its own connection.
//
// usage: pickup_bench DSN [JOBS [POOLING [NOTIFY_DSN]]]   (the database must be migrated)
//   POOLING: session (default) or transaction (behind PgBouncer's transaction pooling, with
//   NOTIFY_DSN the direct connection the worker listens on).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "pgjobs/db/connection.h"
#include "pgjobs/worker/worker.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: pickup_bench DSN [JOBS [POOLING [NOTIFY_DSN]]]\n");
    return 2;
  }
  using Clock = std::chrono::steady_clock;
  const int jobs = argc > 2 ? std::stoi(argv[2]) : 200;
  std::mutex mutex;
  std::map<long long, Clock::time_point> started;

  pgjobs::worker::WorkerConfig config;
  config.dsn = argv[1];
  config.concurrency = 8;
  if (argc > 3 && std::string(argv[3]) == "transaction") {
    config.pooling = pgjobs::db::Pooling::kTransaction;
  }
  if (argc > 4) config.notify_dsn = argv[4];
  config.listen_addresses = {"127.0.0.1:0"};
  std::ostringstream quiet;
  pgjobs::log::Logger logger(pgjobs::log::Level::kError, pgjobs::log::Format::kLogfmt, quiet);
  pgjobs::worker::Worker worker(config, logger);
  worker.Handle("bench.pickup", [&](const pgjobs::worker::Job& job) {
    const auto now = Clock::now();
    std::lock_guard<std::mutex> lock(mutex);
    started[job.id] = now;
    return pgjobs::worker::Outcome::Success();
  });
  std::thread runner([&] { worker.Run(); });
  std::this_thread::sleep_for(std::chrono::seconds(1));  // registered and idle on LISTEN

  pgjobs::db::Connection conn(
      pgjobs::db::ConnectOptions{.dsn = argv[1], .pooling = config.pooling});
  conn.Prepare("publish", "SELECT job_id FROM jobs.publish('bench.pickup')");
  conn.QueryPrepared("publish");  // warm the session's plans; not measured
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::map<long long, Clock::time_point> committed;
  for (int i = 0; i < jobs; ++i) {
    const long long id =
        conn.QueryPrepared("publish").Int(0, 0);  // autocommit: returns after commit
    committed[id] = Clock::now();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  worker.Stop();
  runner.join();

  std::vector<double> ms;
  for (const auto& [id, at] : committed) {
    auto it = started.find(id);
    if (it != started.end())
      ms.push_back(std::chrono::duration<double, std::milli>(it->second - at).count());
  }
  std::sort(ms.begin(), ms.end());
  if (ms.size() != committed.size()) {
    std::fprintf(stderr, "pickup_bench: %zu of %zu jobs started\n", ms.size(), committed.size());
    return 1;
  }
  auto p = [&](double q) {
    return ms[std::min(ms.size() - 1, static_cast<size_t>(q * static_cast<double>(ms.size())))];
  };
  std::printf(
      "| pickup latency, publish commit → handler start, %zu single jobs | p50 %.2f ms, p99 %.2f "
      "ms | max %.2f ms |\n",
      ms.size(), p(0.5), p(0.99), ms.back());
  return 0;
}
