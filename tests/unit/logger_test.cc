#include "pgjobs/log/logger.h"

#include <gtest/gtest.h>

#include <sstream>

#include "pgjobs/error.h"

namespace pgjobs::log {
namespace {

const auto kAt = std::chrono::system_clock::time_point(std::chrono::milliseconds(1767323045678));

TEST(FormatLine, Logfmt) {
  EXPECT_EQ(FormatLine(Format::kLogfmt, kAt, Level::kInfo, "scrape failed",
                       {{"err", "a \"b\"=c"}, {"port", "9467"}}),
            "ts=2026-01-02T03:04:05.678Z level=info msg=\"scrape failed\" err=\"a \\\"b\\\"=c\" "
            "port=9467");
}

TEST(FormatLine, Json) {
  EXPECT_EQ(FormatLine(Format::kJson, kAt, Level::kWarn, "x\ny", {{"k", "v\""}}),
            "{\"ts\":\"2026-01-02T03:04:05.678Z\",\"level\":\"warn\",\"msg\":\"x\\ny\","
            "\"k\":\"v\\\"\"}");
}

TEST(Logger, DropsLinesBelowItsLevel) {
  std::ostringstream out;
  Logger logger(Level::kWarn, Format::kLogfmt, out);
  logger.Info("quiet");
  logger.Error("loud");
  EXPECT_EQ(out.str().find("quiet"), std::string::npos);
  EXPECT_NE(out.str().find("msg=loud"), std::string::npos);
}

TEST(ParseLevelAndFormat, NameTheBadValue) {
  EXPECT_EQ(ParseLevel("debug"), Level::kDebug);
  EXPECT_EQ(ParseFormat("json"), Format::kJson);
  try {
    ParseLevel("verbose");
    FAIL();
  } catch (const pgjobs::Error& e) {
    EXPECT_STREQ(e.what(), "--log.level: expected one of debug, info, warn, error; got 'verbose'");
  }
}

}  // namespace
}  // namespace pgjobs::log
