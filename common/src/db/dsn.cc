// SPDX-License-Identifier: Apache-2.0
#include "pgjobs/db/dsn.h"

#include <cctype>

namespace pgjobs::db {
namespace {

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// Masks `password=` values in a URI query string.
std::string RedactQuery(std::string_view query) {
  std::string out;
  size_t pos = 0;
  while (pos <= query.size()) {
    size_t end = query.find('&', pos);
    if (end == std::string_view::npos) end = query.size();
    std::string_view pair = query.substr(pos, end - pos);
    if (StartsWith(pair, "password=")) {
      out += "password=***";
    } else {
      out += pair;
    }
    if (end < query.size()) out += '&';
    pos = end + 1;
  }
  return out;
}

std::string RedactUri(std::string_view dsn) {
  const size_t scheme_end = dsn.find("://");
  std::string out(dsn.substr(0, scheme_end + 3));
  std::string_view rest = dsn.substr(scheme_end + 3);
  const size_t query_start = rest.find('?');
  std::string_view before_query = rest.substr(0, query_start);
  // The userinfo ends at the last '@' before the path.
  const size_t path_start = before_query.find('/');
  const size_t at = before_query.substr(0, path_start).rfind('@');
  if (at != std::string_view::npos) {
    std::string_view userinfo = before_query.substr(0, at);
    const size_t colon = userinfo.find(':');
    out += userinfo.substr(0, colon);
    if (colon != std::string_view::npos) out += ":***";
    out += before_query.substr(at);
  } else {
    out += before_query;
  }
  if (query_start != std::string_view::npos) {
    out += '?';
    out += RedactQuery(rest.substr(query_start + 1));
  }
  return out;
}

std::string RedactKeywordValue(std::string_view dsn) {
  std::string out;
  size_t i = 0;
  while (i < dsn.size()) {
    const size_t key_start = i;
    while (i < dsn.size() && dsn[i] != '=' && !std::isspace(static_cast<unsigned char>(dsn[i]))) {
      ++i;
    }
    std::string_view key = dsn.substr(key_start, i - key_start);
    out += key;
    while (i < dsn.size() && std::isspace(static_cast<unsigned char>(dsn[i]))) out += dsn[i++];
    if (i < dsn.size() && dsn[i] == '=') {
      out += dsn[i++];
      while (i < dsn.size() && std::isspace(static_cast<unsigned char>(dsn[i]))) out += dsn[i++];
      const size_t value_start = i;
      if (i < dsn.size() && dsn[i] == '\'') {
        for (++i; i < dsn.size() && dsn[i] != '\''; ++i) {
          if (dsn[i] == '\\') ++i;
        }
        if (i < dsn.size()) ++i;
      } else {
        while (i < dsn.size() && !std::isspace(static_cast<unsigned char>(dsn[i]))) ++i;
      }
      out += key == "password" ? std::string_view("***") : dsn.substr(value_start, i - value_start);
    }
    while (i < dsn.size() && std::isspace(static_cast<unsigned char>(dsn[i]))) out += dsn[i++];
  }
  return out;
}

}  // namespace

std::string RedactDsn(std::string_view dsn) {
  if (StartsWith(dsn, "postgresql://") || StartsWith(dsn, "postgres://")) return RedactUri(dsn);
  return RedactKeywordValue(dsn);
}

}  // namespace pgjobs::db
