// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <string_view>

namespace pgjobs::db {

/// Returns `dsn` with any password replaced by "***", for logs and error messages. Handles URIs
/// (postgresql://user:secret@host/db, and ?password=secret) and keyword/value strings
/// (password=secret, password='a b'). Pure.
std::string RedactDsn(std::string_view dsn);

}  // namespace pgjobs::db
