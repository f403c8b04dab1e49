// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace pgjobs::testing {

/// A child process running in the background, its stdout and stderr captured to a file. Killed
/// (SIGKILL) in the destructor if still running.
class BackgroundProcess {
 public:
  BackgroundProcess(const std::vector<std::string>& argv, const std::vector<std::string>& env);
  ~BackgroundProcess();
  BackgroundProcess(const BackgroundProcess&) = delete;
  BackgroundProcess& operator=(const BackgroundProcess&) = delete;

  /// Everything the process wrote so far.
  std::string Output() const;
  /// Waits until the output contains `text`; false after `timeout_ms` or if the process exited.
  bool WaitForOutput(const std::string& text, int timeout_ms = 10000) const;
  /// The number after `key=` in the first log line that has it (e.g. "ports"), or -1.
  int LoggedInt(const std::string& key) const;
  void Signal(int signal_number) const;
  /// Waits for the exit; returns the exit code, or -signal when killed, or -1000 on timeout.
  int Wait(int timeout_ms = 10000);
  pid_t Pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  std::string log_path_;
  bool exited_ = false;
};

}  // namespace pgjobs::testing
