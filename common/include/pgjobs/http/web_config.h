// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "pgjobs/config/yaml_reader.h"
#include "pgjobs/http/tls.h"

namespace pgjobs::http {

/// The Prometheus exporter-toolkit web configuration file (--web.config.file).
struct WebConfig {
  /// user -> bcrypt hash.
  std::map<std::string, std::string> basic_auth_users;
  /// http_server_config.headers: added to every response. Only the security headers that
  /// exporter-toolkit allows (Content-Security-Policy, Strict-Transport-Security,
  /// X-Content-Type-Options, X-Frame-Options, X-XSS-Protection).
  std::vector<std::pair<std::string, std::string>> headers;
  /// tls_server_config: serve HTTPS.
  std::optional<TlsConfig> tls;
};

/// Parses the web configuration in `text` (the contents of `file`): exporter-toolkit's
/// basic_auth_users, http_server_config.headers and tls_server_config (relative file names are
/// taken from the folder of `file`). Throws config::ConfigError for unknown keys, hashes that are
/// not bcrypt, headers that cannot be set, and a tls_server_config without cert_file or key_file.
WebConfig ParseWebConfig(const std::string& text, const std::string& file);

/// The web configuration in `file`, or the empty one when `file` is empty. Throws as above,
/// config::ConfigError when the file cannot be read, and pgjobs::Error when its TLS files cannot
/// be used (so that --config.check and a reload find out before serving).
WebConfig LoadWebConfig(const std::string& file);

}  // namespace pgjobs::http
