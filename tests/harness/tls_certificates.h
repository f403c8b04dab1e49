// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>

namespace pgjobs::testing {

/// A throwaway certificate authority, a server certificate for 127.0.0.1 and localhost, and a
/// client certificate, all signed by that CA, made with the openssl command line in `dir`.
struct TestCertificates {
  std::string ca_cert;
  std::string server_cert, server_key;
  std::string client_cert, client_key;
};

/// Throws std::runtime_error with openssl's output when a step fails.
TestCertificates MakeTestCertificates(const std::string& dir);

}  // namespace pgjobs::testing
