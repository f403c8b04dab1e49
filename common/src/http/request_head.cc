// SPDX-License-Identifier: Apache-2.0
#include "request_head.h"

#include <cctype>
#include <charconv>

namespace pgjobs::http {
namespace {

constexpr size_t kMaxHeaders = 100;

// RFC 9110 token characters, for methods and header names.
bool IsTokenChar(char c) {
  if (std::isalnum(static_cast<unsigned char>(c))) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsTokenChar(c)) return false;
  }
  return true;
}

std::string_view TrimSpaces(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Whether a comma-separated header value lists `token` (case-insensitive).
bool ListsToken(std::string_view value, std::string_view token) {
  const std::string lower = Lower(value);
  size_t start = 0;
  while (start <= lower.size()) {
    size_t end = lower.find(',', start);
    if (end == std::string::npos) end = lower.size();
    if (TrimSpaces(std::string_view(lower).substr(start, end - start)) == token) return true;
    start = end + 1;
  }
  return false;
}

HeadParse Bad(int status, std::string error) {
  HeadParse out;
  out.status = HeadParse::Status::kBad;
  out.error_status = status;
  out.error = std::move(error);
  return out;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> Decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      const int high = HexValue(s[i + 1]);
      const int low = HexValue(s[i + 2]);
      if (high < 0 || low < 0) return std::nullopt;
      out += static_cast<char>(high * 16 + low);
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace

HeadParse ParseRequestHead(std::string_view buffer, size_t max_length) {
  // Clients may end lines with a bare LF (RFC 9112 2.2); the head ends at the first empty line.
  size_t end = std::string_view::npos;
  size_t length = 0;
  for (size_t i = 0; i < buffer.size(); ++i) {
    if (buffer[i] != '\n') continue;
    if (i >= 1 && buffer[i - 1] == '\n') {
      end = i - 1;
      length = i + 1;
      break;
    }
    if (i >= 2 && buffer[i - 1] == '\r' && buffer[i - 2] == '\n') {
      end = i - 2;
      length = i + 1;
      break;
    }
  }
  if (end == std::string_view::npos) {
    if (buffer.size() > max_length) return Bad(431, "request head larger than the server takes");
    // Leading empty lines before a request line are allowed and skipped by the full parse.
    return {};
  }
  if (length > max_length) return Bad(431, "request head larger than the server takes");

  HeadParse out;
  out.length = length;
  RequestHead& head = out.head;
  std::string_view rest = buffer.substr(0, end + 1);
  auto next_line = [&rest]() {
    const size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    return line;
  };
  std::string_view line = next_line();
  while (line.empty() && !rest.empty()) line = next_line();  // RFC 9112 2.2: skip empty lines

  // Request line: METHOD SP target SP HTTP/1.x
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    return Bad(400, "malformed request line");
  }
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (!IsToken(method)) return Bad(400, "malformed method");
  if (!version.starts_with("HTTP/")) return Bad(400, "malformed HTTP version");
  if (version == "HTTP/1.1") {
    head.minor_version = 1;
  } else if (version == "HTTP/1.0") {
    head.minor_version = 0;
  } else {
    return Bad(505, "HTTP version not supported; this server speaks HTTP/1.0 and HTTP/1.1");
  }
  if (target.empty() || target.front() != '/')
    return Bad(400, "expected a target such as /metrics");
  for (char c : target) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return Bad(400, "malformed target");
  }
  head.method = std::string(method);
  const size_t question = target.find('?');
  head.path = std::string(target.substr(0, question));
  if (question != std::string_view::npos) head.query = std::string(target.substr(question + 1));

  size_t count = 0;
  while (!rest.empty()) {
    line = next_line();
    if (line.empty()) break;
    if (line.front() == ' ' || line.front() == '\t') {
      return Bad(400, "obsolete line folding in headers");
    }
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || !IsToken(line.substr(0, colon))) {
      return Bad(400, "malformed header line");
    }
    if (++count > kMaxHeaders) return Bad(431, "too many headers");
    const std::string name = Lower(line.substr(0, colon));
    const std::string_view value = TrimSpaces(line.substr(colon + 1));
    for (char c : value) {
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) {
        return Bad(400, "control character in header " + name);
      }
    }
    auto [it, fresh] = head.headers.try_emplace(name, value);
    if (!fresh) it->second += ", " + std::string(value);
  }

  auto header = [&head](const char* name) -> const std::string* {
    auto it = head.headers.find(name);
    return it == head.headers.end() ? nullptr : &it->second;
  };
  if (header("transfer-encoding") != nullptr) head.has_body = true;
  if (const std::string* cl = header("content-length")) {
    unsigned long long n = 0;
    auto [ptr, ec] = std::from_chars(cl->data(), cl->data() + cl->size(), n);
    if (ec != std::errc() || ptr != cl->data() + cl->size()) {
      return Bad(400, "malformed Content-Length");
    }
    if (n > 0) head.has_body = true;
  }
  const std::string* connection = header("connection");
  if (head.minor_version == 0) {
    head.keep_alive = connection != nullptr && ListsToken(*connection, "keep-alive");
  } else {
    head.keep_alive = connection == nullptr || !ListsToken(*connection, "close");
  }
  out.status = HeadParse::Status::kComplete;
  return out;
}

std::optional<std::map<std::string, std::string>> ParseQuery(std::string_view query) {
  std::map<std::string, std::string> out;
  size_t start = 0;
  while (start < query.size()) {
    size_t end = query.find('&', start);
    if (end == std::string_view::npos) end = query.size();
    const std::string_view pair = query.substr(start, end - start);
    start = end + 1;
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    auto name = Decode(pair.substr(0, eq));
    auto value = Decode(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1));
    if (!name || !value) return std::nullopt;
    out.try_emplace(std::move(*name), std::move(*value));
  }
  return out;
}

}  // namespace pgjobs::http
