// SPDX-License-Identifier: Apache-2.0
#include "pgjobs/log/failure_log.h"

namespace pgjobs::log {

std::optional<long long> FailureLog::Failed(const std::string& key, Clock::time_point now) {
  auto [it, first] = failing_.try_emplace(key, State{now, 0});
  if (first) return 0;
  State& state = it->second;
  if (now - state.logged_at < interval_) {
    ++state.left_out;
    return std::nullopt;
  }
  const long long left_out = state.left_out;
  state = State{now, 0};
  return left_out;
}

bool FailureLog::Succeeded(const std::string& key) { return failing_.erase(key) > 0; }

}  // namespace pgjobs::log
