// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>

namespace pgjobs::worker {

/// What the worker's threads share about the database: shown by /-/ready and the
/// pgjobs_worker_database_up gauge, and the id the dispatcher registered (0 before).
struct Status {
  std::atomic<bool> database_up{false};
  std::atomic<long long> worker_id{0};
};

}  // namespace pgjobs::worker
