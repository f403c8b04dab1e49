// SPDX-License-Identifier: Apache-2.0
#pragma once

namespace pgjobs {

/// The release this binary was built from: CMake's project version, "MAJOR.MINOR.PATCH". A
/// release is tagged "v" followed by it (see CHANGELOG.md).
const char* BuildVersion();
/// The git commit this binary was built from (12 hex digits, "-dirty" with local changes), the
/// packager's PGJOBS_REVISION, or "unknown" when built outside a git checkout.
const char* BuildRevision();

}  // namespace pgjobs
