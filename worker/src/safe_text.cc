// SPDX-License-Identifier: Apache-2.0
#include "safe_text.h"

namespace pgjobs::worker {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
constexpr std::string_view kCut = "...";

// The length of the valid UTF-8 sequence at the start of `s`, or 0 when it is not one (RFC 3629:
// no overlong forms, no surrogates, nothing above U+10FFFF).
size_t ValidSequence(std::string_view s) {
  const auto byte = [&s](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char b0 = byte(0);
  if (b0 < 0x80) return 1;
  size_t length;
  unsigned char low = 0x80;
  unsigned char high = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    length = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    length = 3;
    if (b0 == 0xE0) low = 0xA0;
    if (b0 == 0xED) high = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    length = 4;
    if (b0 == 0xF0) low = 0x90;
    if (b0 == 0xF4) high = 0x8F;
  } else {
    return 0;
  }
  if (s.size() < length) return 0;
  if (byte(1) < low || byte(1) > high) return 0;
  for (size_t i = 2; i < length; ++i) {
    if (byte(i) < 0x80 || byte(i) > 0xBF) return 0;
  }
  return length;
}

}  // namespace

std::string SafeTail(std::string_view text, size_t max_bytes) {
  std::string clean;
  clean.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (text[i] == '\0') {
      ++i;
      continue;
    }
    const size_t n = ValidSequence(text.substr(i));
    if (n == 0) {
      clean += kReplacement;
      ++i;
    } else {
      clean.append(text.substr(i, n));
      i += n;
    }
  }
  if (clean.size() <= max_bytes) return clean;
  if (max_bytes <= kCut.size()) return std::string(kCut.substr(0, max_bytes));
  // Keep the last bytes that fit, starting on a character boundary (not a continuation byte).
  size_t start = clean.size() - (max_bytes - kCut.size());
  while (start < clean.size() && (static_cast<unsigned char>(clean[start]) & 0xC0) == 0x80) {
    ++start;
  }
  return std::string(kCut) + clean.substr(start);
}

}  // namespace pgjobs::worker
