// SPDX-License-Identifier: Apache-2.0
#include "pgjobs/log/logger.h"

#include <ctime>

#include "pgjobs/error.h"
#include "pgjobs/json_quote.h"

namespace pgjobs::log {
namespace {

const char* LevelName(Level level) {
  switch (level) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
  }
  return "info";
}

std::string Timestamp(std::chrono::system_clock::time_point at) {
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(at.time_since_epoch()).count();
  const std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buf[40];
  const size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(ms % 1000));
  return buf;
}

// logfmt quotes values with spaces, quotes, '=' or control characters.
std::string LogfmtValue(std::string_view value) {
  bool quote = value.empty();
  for (char c : value) {
    if (c == ' ' || c == '"' || c == '=' || static_cast<unsigned char>(c) < 0x20) quote = true;
  }
  if (!quote) return std::string(value);
  std::string out = "\"";
  for (char c : value) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace

Level ParseLevel(std::string_view text) {
  for (Level l : {Level::kDebug, Level::kInfo, Level::kWarn, Level::kError}) {
    if (text == LevelName(l)) return l;
  }
  throw Error("--log.level: expected one of debug, info, warn, error; got '" + std::string(text) +
              "'");
}

Format ParseFormat(std::string_view text) {
  if (text == "logfmt") return Format::kLogfmt;
  if (text == "json") return Format::kJson;
  throw Error("--log.format: expected logfmt or json, got '" + std::string(text) + "'");
}

std::string FormatLine(Format format, std::chrono::system_clock::time_point at, Level level,
                       std::string_view message, const Fields& fields) {
  std::string line;
  if (format == Format::kJson) {
    line = "{\"ts\":" + JsonQuote(Timestamp(at)) + ",\"level\":" + JsonQuote(LevelName(level)) +
           ",\"msg\":" + JsonQuote(message);
    for (const auto& [key, value] : fields) line += "," + JsonQuote(key) + ":" + JsonQuote(value);
    return line + "}";
  }
  line = "ts=" + Timestamp(at) + " level=" + LevelName(level) + " msg=" + LogfmtValue(message);
  for (const auto& [key, value] : fields) line += " " + key + "=" + LogfmtValue(value);
  return line;
}

Logger::Logger(Level level, Format format, std::ostream& out)
    : level_(level), format_(format), out_(out) {}

void Logger::Log(Level level, std::string_view message, const Fields& fields) {
  if (level < level_) return;
  const std::string line =
      FormatLine(format_, std::chrono::system_clock::now(), level, message, fields);
  std::lock_guard<std::mutex> lock(mutex_);
  out_ << line << '\n';
  out_.flush();
}

}  // namespace pgjobs::log
