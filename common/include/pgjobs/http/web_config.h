#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "pgjobs/config/yaml_reader.h"

namespace pgjobs::http {

/// The Prometheus exporter-toolkit web configuration file (--web.config.file).
struct WebConfig {
  /// user -> bcrypt hash.
  std::map<std::string, std::string> basic_auth_users;
  /// http_server_config.headers: added to every response. Only the security headers that
  /// exporter-toolkit allows (Content-Security-Policy, Strict-Transport-Security,
  /// X-Content-Type-Options, X-Frame-Options, X-XSS-Protection).
  std::vector<std::pair<std::string, std::string>> headers;
};

/// Parses the web configuration in `text` (the contents of `file`). Throws config::ConfigError:
/// for unknown keys, hashes that are not bcrypt, and for `tls_server_config`, which is refused:
/// this server does not speak TLS, which belongs in a terminating proxy in front of it.
WebConfig ParseWebConfig(const std::string& text, const std::string& file);

/// The web configuration in `file`, or the empty one when `file` is empty. Throws as above, or
/// config::ConfigError when the file cannot be read.
WebConfig LoadWebConfig(const std::string& file);

}  // namespace pgjobs::http
