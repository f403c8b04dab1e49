// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace pgjobs::worker {

/// `text` made safe to store as PostgreSQL text, whatever a handler produced: valid UTF-8 (each
/// invalid byte, and a character cut by a buffer, becomes U+FFFD), without NUL (removed), and
/// at most `max_bytes` bytes. When longer, the end is kept (the end of a traceback says most),
/// behind "...", cut on a character boundary. Pure.
std::string SafeTail(std::string_view text, size_t max_bytes);

}  // namespace pgjobs::worker
