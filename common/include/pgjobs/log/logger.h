// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <mutex>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgjobs::log {

enum class Level { kDebug, kInfo, kWarn, kError };
enum class Format { kLogfmt, kJson };

/// Parses "debug", "info", "warn" or "error"; throws pgjobs::Error naming the bad value.
Level ParseLevel(std::string_view text);
/// Parses "logfmt" or "json"; throws pgjobs::Error naming the bad value.
Format ParseFormat(std::string_view text);

using Fields = std::vector<std::pair<std::string, std::string>>;

/// One log line, without the newline, in the given format. Pure.
/// logfmt: ts=2026-01-02T03:04:05.678Z level=info msg="text" key=value
/// json:   {"ts":"...","level":"info","msg":"text","key":"value"}
std::string FormatLine(Format format, std::chrono::system_clock::time_point at, Level level,
                       std::string_view message, const Fields& fields);

/// Writes log lines to a stream. Thread-safe; lines below the level are dropped.
class Logger {
 public:
  /// `out` must outlive the logger.
  Logger(Level level, Format format, std::ostream& out);
  void Log(Level level, std::string_view message, const Fields& fields = {});
  void Debug(std::string_view message, const Fields& fields = {}) {
    Log(Level::kDebug, message, fields);
  }
  void Info(std::string_view message, const Fields& fields = {}) {
    Log(Level::kInfo, message, fields);
  }
  void Warn(std::string_view message, const Fields& fields = {}) {
    Log(Level::kWarn, message, fields);
  }
  void Error(std::string_view message, const Fields& fields = {}) {
    Log(Level::kError, message, fields);
  }

 private:
  Level level_;
  Format format_;
  std::ostream& out_;
  std::mutex mutex_;
};

}  // namespace pgjobs::log
