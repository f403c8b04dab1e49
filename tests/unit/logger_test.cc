// SPDX-License-Identifier: Apache-2.0
#include "pgjobs/log/logger.h"

#include <gtest/gtest.h>

#include <sstream>

#include "pgjobs/error.h"
#include "pgjobs/log/failure_log.h"

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

TEST(FailureLog, LogsTheFirstFailureThenOneAMinuteThenTheRecovery) {
  FailureLog log;
  const FailureLog::Clock::time_point t0{};
  using std::chrono::seconds;
  EXPECT_EQ(log.Failed("queue", t0), 0);
  EXPECT_EQ(log.Failed("queue", t0 + seconds(1)), std::nullopt);
  EXPECT_EQ(log.Failed("queue", t0 + seconds(59)), std::nullopt);
  EXPECT_EQ(log.Failed("tables", t0 + seconds(59)), 0) << "each key on its own";
  EXPECT_EQ(log.Failed("queue", t0 + seconds(60)), 2) << "two were left out";
  EXPECT_EQ(log.Failed("queue", t0 + seconds(61)), std::nullopt);
  EXPECT_TRUE(log.Succeeded("queue"));
  EXPECT_FALSE(log.Succeeded("queue")) << "the recovery is logged once";
  EXPECT_EQ(log.Failed("queue", t0 + seconds(62)), 0) << "a new failure is logged at once";
}

}  // namespace
}  // namespace pgjobs::log
