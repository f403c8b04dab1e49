// SPDX-License-Identifier: Apache-2.0
#include "pgjobs/config/command_line.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "pgjobs/error.h"

namespace pgjobs::config {

bool TakeFlagValue(int argc, char** argv, int& i, const std::string& name, std::string& out) {
  const std::string arg = argv[i];
  if (arg == name) {
    if (i + 1 >= argc) throw Error(name + " needs a value");
    out = argv[++i];
    return true;
  }
  if (arg.starts_with(name + "=")) {
    out = arg.substr(name.size() + 1);
    return true;
  }
  return false;
}

std::string ReadConfigFile(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) throw Error(path + ": cannot read: " + std::strerror(errno));
  // A directory opens and reads as empty, which would pass for a valid, empty configuration.
  if (!S_ISREG(st.st_mode)) throw Error(path + ": cannot read: not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot read: " + std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error(path + ": cannot read: " + std::strerror(errno));
  return ss.str();
}

std::optional<std::string> ProcessEnv(const std::string& name) {
  const char* value = std::getenv(name.c_str());
  return value != nullptr ? std::optional<std::string>(value) : std::nullopt;
}

}  // namespace pgjobs::config
