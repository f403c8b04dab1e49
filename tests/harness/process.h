// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace pgjobs::testing {

/// What a finished child process left behind.
struct ProcessResult {
  int exit_code = -1;  // -1 when killed by a signal
  std::string out;
  std::string err;
};

/// Runs argv to completion with `env` added to this process's environment (entries NAME=value;
/// a NAME= entry sets it empty) and `unset` names removed.
ProcessResult RunProcess(const std::vector<std::string>& argv,
                         const std::vector<std::string>& env = {},
                         const std::vector<std::string>& unset = {});

}  // namespace pgjobs::testing
