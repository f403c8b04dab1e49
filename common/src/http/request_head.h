// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace pgjobs::http {

/// The head of an HTTP/1.x request: request line and headers.
struct RequestHead {
  std::string method;
  /// The path of the target, without the query string (not percent-decoded: routes are exact).
  std::string path;
  /// The query string after '?', raw; see ParseQuery.
  std::string query;
  /// 0 for HTTP/1.0, 1 for HTTP/1.1.
  int minor_version = 1;
  /// Header values by lower-case name; repeated headers joined with ", ".
  std::map<std::string, std::string> headers;
  /// Whether the connection may serve another request after this one.
  bool keep_alive = true;
  /// Whether a body follows (Content-Length > 0 or Transfer-Encoding): this server takes none.
  bool has_body = false;
};

/// What ParseRequestHead found at the start of a buffer.
struct HeadParse {
  enum class Status {
    kIncomplete,  ///< more bytes are needed
    kComplete,    ///< `head` is filled and `length` bytes were its
    kBad,         ///< malformed: answer 400 (or `status`) and close
  };
  Status status = Status::kIncomplete;
  RequestHead head;
  size_t length = 0;
  /// For kBad: 400, 431 (head too large) or 505 (HTTP version).
  int error_status = 400;
  /// For kBad: what was wrong, for the response body.
  std::string error;
};

/// Parses the request head at the start of `buffer`, which may hold more (a pipelined request)
/// or less (the rest has not arrived). A head longer than `max_length` bytes is kBad with 431.
/// Pure.
HeadParse ParseRequestHead(std::string_view buffer, size_t max_length);

/// The parameters of a query string ("a=1&target=x%20y"), percent-decoded, '+' read as a space;
/// for a repeated name the first value. std::nullopt when a percent-escape is malformed. Pure.
std::optional<std::map<std::string, std::string>> ParseQuery(std::string_view query);

}  // namespace pgjobs::http
