// SPDX-License-Identifier: Apache-2.0
#include "pgjobs/config/yaml_reader.h"

#include <gtest/gtest.h>

namespace pgjobs::config {
namespace {

using std::chrono::milliseconds;

TEST(ParseDuration, AcceptsPrometheusStyleDurations) {
  EXPECT_EQ(ParseDuration("500ms"), milliseconds(500));
  EXPECT_EQ(ParseDuration("30s"), milliseconds(30000));
  EXPECT_EQ(ParseDuration("1m30s"), milliseconds(90000));
  EXPECT_EQ(ParseDuration("2h"), milliseconds(7200000));
  EXPECT_EQ(ParseDuration("1.5s"), milliseconds(1500));
  EXPECT_EQ(ParseDuration("1d"), milliseconds(86400000));
}

TEST(ParseDuration, RefusesWhatIsNotADuration) {
  for (const char* bad : {"", "30", "s", "10 s", "5x", "-1s", "soon"}) {
    EXPECT_FALSE(ParseDuration(bad).has_value()) << bad;
  }
}

TEST(NearestWord, SuggestsOnlyCloseWords) {
  const std::vector<std::string> keys = {"timeout", "timeout_offset", "lock_timeout"};
  EXPECT_EQ(NearestWord("timout", keys), "timeout");
  EXPECT_EQ(NearestWord("lock_timout", keys), "lock_timeout");
  EXPECT_EQ(NearestWord("colour", keys), std::nullopt);
}

TEST(ExpandEnv, ReplacesReferencesAndRefusesUnsetOnes) {
  EnvLookup env = [](const std::string& name) -> std::optional<std::string> {
    if (name == "HOST") return "db";
    return std::nullopt;
  };
  EXPECT_EQ(ExpandEnv("postgresql://${HOST}/x", env, ""), "postgresql://db/x");
  EXPECT_EQ(ExpandEnv("cost $$5 and $HOST", env, ""), "cost $5 and $HOST");
  try {
    ExpandEnv("${NOPE}", env, "f.yaml:1:2: dsn: ");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "f.yaml:1:2: dsn: environment variable NOPE is not set");
  }
  EXPECT_THROW(ExpandEnv("${HOST", env, ""), ConfigError);
}

TEST(MapReader, ReportsFileLineColumnAndPath) {
  MapReader root = MapReader::Parse("a:\n  b: [1, 2]\n  n: x\n", "c.yaml", nullptr);
  auto a = root.Map("a");
  ASSERT_TRUE(a.has_value());
  try {
    a->String("b");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "c.yaml:2:6: a.b: expected a string, got a list");
  }
  try {
    a->Integer("n", 0, 10);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "c.yaml:3:6: a.n: expected an integer, got 'x'");
  }
}

TEST(MapReader, RefusesUnknownKeysWithASuggestion) {
  MapReader root = MapReader::Parse("name: x\nvalu: 3\n", "c.yaml", nullptr);
  root.String("name");
  root.String("value");
  try {
    root.Finish();
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "c.yaml:2:1: valu: unknown key (did you mean 'value'?)");
  }
}

TEST(MapReader, EmptyDocumentIsAnEmptyMapButAListIsNot) {
  EXPECT_NO_THROW(MapReader::Parse("", "e.yaml", nullptr).Finish());
  try {
    MapReader::Parse("- 1\n", "l.yaml", nullptr);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "l.yaml:1:1: expected a map at the top level, got a list");
  }
}

}  // namespace
}  // namespace pgjobs::config
