// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <vector>

namespace pgjobs::http {

/// The exporter-toolkit flags that both binaries take.
struct WebFlags {
  /// --web.listen-address, repeatable; empty: the binary's default.
  std::vector<std::string> listen_addresses;
  /// --web.telemetry-path; empty: the binary's default (/metrics).
  std::string telemetry_path;
  /// --web.config.file: basic auth users and response headers, re-read on SIGHUP.
  std::string config_file;
};

/// Takes argv[i] (and argv[i + 1] for "--flag value") when it is one of the --web.* flags, and
/// returns whether it did. Throws pgjobs::Error for a flag without its value.
bool TakeWebFlag(int argc, char** argv, int& i, WebFlags& flags);

/// Throws pgjobs::Error naming the flag for a malformed listen address or telemetry path.
void CheckWebFlags(const WebFlags& flags);

/// The usage lines of the flags above.
inline constexpr const char* kWebFlagsUsage =
    "  --web.listen-address=ADDR   address to listen on, repeatable: HOST:PORT, [IPv6]:PORT, or\n"
    "                              :PORT for every address of both families\n"
    "  --web.telemetry-path=PATH   path of the metrics (default /metrics)\n"
    "  --web.config.file=FILE      basic auth users and response headers (exporter-toolkit\n"
    "                              web config format), re-read on SIGHUP\n";

}  // namespace pgjobs::http
