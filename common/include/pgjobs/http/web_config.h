#pragma once

#include <map>
#include <string>

#include "pgjobs/config/yaml_reader.h"

namespace pgjobs::http {

/// The Prometheus exporter-toolkit web configuration file (--web.config.file).
struct WebConfig {
  /// user -> bcrypt hash.
  std::map<std::string, std::string> basic_auth_users;
};

/// Parses the web configuration in `text` (the contents of `file`). Throws config::ConfigError:
/// for unknown keys, hashes that are not bcrypt, and for `tls_server_config`, which is refused:
/// this server does not speak TLS, which belongs in a terminating proxy in front of it.
WebConfig ParseWebConfig(const std::string& text, const std::string& file);

}  // namespace pgjobs::http
