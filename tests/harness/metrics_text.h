// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <map>
#include <string>

namespace pgjobs::testing {

/// Samples of a text exposition: "name{labels}" (as written) -> value. Comments are skipped.
std::map<std::string, double> ParseMetrics(const std::string& text);

}  // namespace pgjobs::testing
