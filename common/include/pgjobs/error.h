// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <stdexcept>

namespace pgjobs {

/// The base of every exception pgjobs throws. what() says what failed, where, and the bad value,
/// so that it can be shown to a user as it is.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace pgjobs
