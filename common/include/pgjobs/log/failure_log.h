// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>

namespace pgjobs::log {

/// Decides which of a repeating failure's occurrences are worth a log line, so that a failure
/// that lasts does not flood the log and its end is not missed: per key (a collector, a
/// connection), the first failure is logged, then at most one every `interval` while it goes on
/// (saying how many were left out), and the first success after a failure once. Pure: the caller
/// passes the time. Not thread-safe.
class FailureLog {
 public:
  using Clock = std::chrono::steady_clock;

  explicit FailureLog(Clock::duration interval = std::chrono::minutes(1)) : interval_(interval) {}

  /// A failure of `key` at `now`. Returns std::nullopt when it is not to be logged, else how
  /// many failures of the key were left out of the log since its last logged one.
  std::optional<long long> Failed(const std::string& key, Clock::time_point now);
  /// A success of `key`: true when it ends a failure (log it once), false otherwise.
  bool Succeeded(const std::string& key);

 private:
  struct State {
    Clock::time_point logged_at;
    long long left_out = 0;
  };
  Clock::duration interval_;
  std::map<std::string, State> failing_;
};

}  // namespace pgjobs::log
