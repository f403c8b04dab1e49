// SPDX-License-Identifier: Apache-2.0
#include "pgjobs/http/web_flags.h"

#include "pgjobs/config/command_line.h"
#include "pgjobs/error.h"
#include "pgjobs/http/server.h"

namespace pgjobs::http {

bool TakeWebFlag(int argc, char** argv, int& i, WebFlags& flags) {
  std::string address;
  if (config::TakeFlagValue(argc, argv, i, "--web.listen-address", address)) {
    flags.listen_addresses.push_back(address);
    return true;
  }
  return config::TakeFlagValue(argc, argv, i, "--web.telemetry-path", flags.telemetry_path) ||
         config::TakeFlagValue(argc, argv, i, "--web.config.file", flags.config_file);
}

void CheckWebFlags(const WebFlags& flags) {
  for (const std::string& address : flags.listen_addresses) {
    try {
      NormalizeListenAddress(address);
    } catch (const Error& e) {
      throw Error(std::string("--web.listen-address: ") + e.what());
    }
  }
  const std::string& path = flags.telemetry_path;
  if (!path.empty() && (!path.starts_with("/") || path.starts_with("/-/") || path == "/")) {
    throw Error("--web.telemetry-path: expected a path such as /metrics, got '" + path + "'");
  }
}

}  // namespace pgjobs::http
