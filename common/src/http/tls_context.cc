// SPDX-License-Identifier: Apache-2.0
#include "tls_context.h"

#include <openssl/err.h>

#include "pgjobs/error.h"

namespace pgjobs::http {
namespace {

// RequestClientCert and RequireAnyClientCert take any certificate, as Go's crypto/tls does.
int AcceptAnyCertificate(int, X509_STORE_CTX*) { return 1; }

int VersionOf(const std::string& name) {
  if (name == "TLS10") return TLS1_VERSION;
  if (name == "TLS11") return TLS1_1_VERSION;
  if (name == "TLS12") return TLS1_2_VERSION;
  if (name == "TLS13") return TLS1_3_VERSION;
  throw Error("tls_server_config.min_version: expected TLS10, TLS11, TLS12 or TLS13, got '" + name +
              "'");
}

}  // namespace

std::string TlsErrors() {
  std::string out;
  for (unsigned long e = ERR_get_error(); e != 0; e = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(e, buffer, sizeof buffer);
    out += (out.empty() ? "" : "; ") + std::string(buffer);
  }
  return out.empty() ? "unknown TLS error" : out;
}

TlsContext MakeTlsContext(const TlsConfig& config) {
  ERR_clear_error();
  TlsContext ctx(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
  if (!ctx) throw Error("cannot create a TLS context: " + TlsErrors());
  SSL_CTX_set_min_proto_version(ctx.get(), VersionOf(config.min_version));
  SSL_CTX_set_options(
      ctx.get(), SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // Writes may be partial and resumed from a moved buffer (the response string may grow).
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), config.cert_file.c_str()) != 1) {
    throw Error("tls_server_config.cert_file: cannot use " + config.cert_file + ": " + TlsErrors());
  }
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), config.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    throw Error("tls_server_config.key_file: cannot use " + config.key_file + ": " + TlsErrors());
  }
  if (SSL_CTX_check_private_key(ctx.get()) != 1) {
    throw Error("tls_server_config: the key in " + config.key_file +
                " does not match the certificate in " + config.cert_file);
  }
  const std::string& auth = config.client_auth_type;
  const bool verify = auth == "VerifyClientCertIfGiven" || auth == "RequireAndVerifyClientCert";
  const bool require = auth == "RequireAnyClientCert" || auth == "RequireAndVerifyClientCert";
  if (auth != "NoClientCert" && auth != "RequestClientCert" && !verify && !require) {
    throw Error(
        "tls_server_config.client_auth_type: expected NoClientCert, RequestClientCert, "
        "RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert, got '" +
        auth + "'");
  }
  if (verify && config.client_ca_file.empty()) {
    throw Error("tls_server_config.client_auth_type: " + auth + " needs client_ca_file");
  }
  if (!config.client_ca_file.empty()) {
    if (auth == "NoClientCert") {
      throw Error(
          "tls_server_config.client_ca_file: set client_auth_type too (such as "
          "RequireAndVerifyClientCert), or the CA would not be used");
    }
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(config.client_ca_file.c_str());
    if (names == nullptr ||
        SSL_CTX_load_verify_locations(ctx.get(), config.client_ca_file.c_str(), nullptr) != 1) {
      if (names != nullptr) sk_X509_NAME_pop_free(names, X509_NAME_free);
      throw Error("tls_server_config.client_ca_file: cannot use " + config.client_ca_file + ": " +
                  TlsErrors());
    }
    SSL_CTX_set_client_CA_list(ctx.get(), names);
  }
  if (auth != "NoClientCert") {
    const int mode = SSL_VERIFY_PEER | (require ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0);
    SSL_CTX_set_verify(ctx.get(), mode, verify ? nullptr : AcceptAnyCertificate);
  }
  return ctx;
}

}  // namespace pgjobs::http
