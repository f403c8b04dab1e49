// SPDX-License-Identifier: Apache-2.0
#include "tests/harness/metrics_text.h"

#include <sstream>

namespace pgjobs::testing {

std::map<std::string, double> ParseMetrics(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    out[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return out;
}

}  // namespace pgjobs::testing
