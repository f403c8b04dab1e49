// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <algorithm>
#include <chrono>

namespace pgjobs::worker {

/// Delays between retries of a failing call: doubling from `first`, capped at `cap`, back to
/// `first` after a success. Pure.
class Backoff {
 public:
  Backoff(std::chrono::milliseconds first, std::chrono::milliseconds cap)
      : first_(first), cap_(cap), next_(first) {}
  /// The delay before the next retry; each call doubles the one after.
  std::chrono::milliseconds Next() {
    const auto delay = next_;
    next_ = std::min(next_ * 2, cap_);
    return delay;
  }
  void Reset() { next_ = first_; }

 private:
  std::chrono::milliseconds first_;
  std::chrono::milliseconds cap_;
  std::chrono::milliseconds next_;
};

}  // namespace pgjobs::worker
