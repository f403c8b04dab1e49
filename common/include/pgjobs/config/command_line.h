// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <optional>
#include <string>

namespace pgjobs::config {

/// Reads the value of flag `name` at argv[i], written "--name=value" or "--name value" (then i
/// advances past the value). Returns false when argv[i] is another flag; throws pgjobs::Error
/// when the value is missing.
bool TakeFlagValue(int argc, char** argv, int& i, const std::string& name, std::string& out);

/// The whole of a configuration file; throws pgjobs::Error naming the file and the reason.
std::string ReadConfigFile(const std::string& path);

/// The process environment's value of `name`, for ${VAR} expansion and PGJOBS_DSN; only `main`
/// calls it (through config::EnvLookup).
std::optional<std::string> ProcessEnv(const std::string& name);

}  // namespace pgjobs::config
