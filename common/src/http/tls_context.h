// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <openssl/ssl.h>

#include <memory>

#include "pgjobs/http/tls.h"

namespace pgjobs::http {

using TlsContext = std::shared_ptr<SSL_CTX>;

/// An OpenSSL server context for `config`: certificate chain and key (checked to match), client
/// certificate policy, minimum version, no renegotiation, no compression. Throws pgjobs::Error
/// naming the file and OpenSSL's reason.
TlsContext MakeTlsContext(const TlsConfig& config);

/// OpenSSL's queued errors as one line, and clears them.
std::string TlsErrors();

}  // namespace pgjobs::http
