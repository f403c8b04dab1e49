// SPDX-License-Identifier: Apache-2.0
#include "tests/harness/tls_certificates.h"

#include <fstream>
#include <stdexcept>

#include "tests/harness/process.h"

namespace pgjobs::testing {
namespace {

void OpenSsl(const std::vector<std::string>& args) {
  std::vector<std::string> argv{"/usr/bin/openssl"};
  argv.insert(argv.end(), args.begin(), args.end());
  ProcessResult r = RunProcess(argv);
  if (r.exit_code != 0) throw std::runtime_error("openssl " + args[0] + ": " + r.out + r.err);
}

// A key and a certificate for `subject`, signed by the CA in `dir`, with `extensions`.
void Issue(const std::string& dir, const std::string& name, const std::string& subject,
           const std::string& extensions) {
  std::ofstream(dir + "/" + name + ".ext") << extensions;
  OpenSsl({"req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
           "-keyout", dir + "/" + name + ".key", "-out", dir + "/" + name + ".csr", "-subj",
           subject});
  OpenSsl({"x509", "-req", "-in", dir + "/" + name + ".csr", "-CA", dir + "/ca.crt", "-CAkey",
           dir + "/ca.key", "-CAcreateserial", "-days", "2", "-out", dir + "/" + name + ".crt",
           "-extfile", dir + "/" + name + ".ext"});
}

}  // namespace

TestCertificates MakeTestCertificates(const std::string& dir) {
  OpenSsl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
           "-keyout", dir + "/ca.key", "-out", dir + "/ca.crt", "-days", "2", "-subj",
           "/CN=pgjobs test CA"});
  Issue(dir, "server", "/CN=localhost",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  Issue(dir, "client", "/CN=prometheus", "extendedKeyUsage=clientAuth\n");
  return {dir + "/ca.crt", dir + "/server.crt", dir + "/server.key", dir + "/client.crt",
          dir + "/client.key"};
}

}  // namespace pgjobs::testing
