// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>

namespace pgjobs::http {

/// exporter-toolkit's tls_server_config: the server speaks HTTPS with it.
struct TlsConfig {
  /// PEM files; relative paths were resolved against the web config file's folder.
  std::string cert_file;
  std::string key_file;
  /// CA certificates that client certificates must chain to (the Verify* auth types).
  std::string client_ca_file;
  /// NoClientCert (default), RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven
  /// or RequireAndVerifyClientCert, as exporter-toolkit (and Go's crypto/tls) names them.
  std::string client_auth_type = "NoClientCert";
  /// TLS10, TLS11, TLS12 (default) or TLS13.
  std::string min_version = "TLS12";

  bool operator==(const TlsConfig&) const = default;
};

}  // namespace pgjobs::http
