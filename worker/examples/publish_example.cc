// SPDX-License-Identifier: Apache-2.0
// Publishing jobs from C++: link pgjobs::client.
//
//   find_package(pgjobs REQUIRED)
//   target_link_libraries(my_publisher PRIVATE pgjobs::client)
//
// usage: publish_example DSN [JOBS] [TASK]
// Publishes one job with Publish, then JOBS jobs (default 100,000) of TASK (default
// "bench.noop") with PublishBulk, and prints how long that took.
#include <chrono>
#include <iostream>
#include <string>

#include "pgjobs/client/client.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: publish_example DSN [JOBS] [TASK]\n";
    return 2;
  }
  const int count = argc > 2 ? std::stoi(argv[2]) : 100000;
  const std::string task = argc > 3 ? argv[3] : "bench.noop";
  try {
    pgjobs::client::Client client({.dsn = argv[1]});
    const long long first = client.Publish(task, R"({"hello": "world"})", {.priority = 1});
    std::vector<pgjobs::client::NewJob> jobs;
    jobs.reserve(static_cast<size_t>(count));
    for (int i = 0; i < count; ++i) {
      jobs.push_back({task, "{\"i\": " + std::to_string(i) + "}", {}});
    }
    const auto start = std::chrono::steady_clock::now();
    const std::vector<long long> ids = client.PublishBulk(jobs);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cout << "published job " << first << ", then " << ids.size() << " jobs in " << seconds
              << " s: " << static_cast<long long>(static_cast<double>(ids.size()) / seconds)
              << " jobs/s\n";
  } catch (const std::exception& e) {
    std::cerr << "publish_example: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
