// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>

#include "pgjobs/migrate/migrator.h"

namespace pgjobs::migrate {
namespace {

TEST(BundledMigrations, AreNumberedFromOneWithoutGaps) {
  const auto& migrations = BundledMigrations();
  ASSERT_GE(migrations.size(), 2u);
  for (size_t i = 0; i < migrations.size(); ++i) {
    EXPECT_EQ(migrations[i].version, static_cast<int>(i + 1));
    EXPECT_FALSE(migrations[i].name.empty());
    EXPECT_FALSE(migrations[i].sql.empty());
  }
}

// Every sql/NNN_name.sql is bundled, in order: a file left out of common/CMakeLists.txt would
// otherwise never reach a database.
TEST(BundledMigrations, AreEveryFileOfTheSqlFolder) {
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(PGJOBS_SOURCE_DIR "/sql")) {
    const std::string name = entry.path().filename().string();
    if (name.size() > 4 && std::isdigit(static_cast<unsigned char>(name[0])) &&
        name.ends_with(".sql")) {
      files.push_back(name);
    }
  }
  std::sort(files.begin(), files.end());
  std::vector<std::string> bundled;
  for (const auto& m : BundledMigrations()) {
    char prefix[8];
    std::snprintf(prefix, sizeof prefix, "%03d_", m.version);
    bundled.push_back(prefix + m.name + ".sql");
  }
  EXPECT_EQ(bundled, files);
}

TEST(BundledMigrations, NeverManageTheirOwnTransaction) {
  // Apply() wraps all pending migrations in one transaction; a COMMIT inside a file would break
  // the all-or-nothing upgrade.
  for (const auto& m : BundledMigrations()) {
    EXPECT_EQ(m.sql.find("\nCOMMIT"), std::string::npos) << m.name;
    EXPECT_EQ(m.sql.find("\nBEGIN;"), std::string::npos) << m.name;
  }
}

}  // namespace
}  // namespace pgjobs::migrate
