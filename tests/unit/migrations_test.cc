#include <gtest/gtest.h>

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
  EXPECT_EQ(migrations[0].name, "queue");
  EXPECT_EQ(migrations[1].name, "stats");
  EXPECT_EQ(migrations[2].name, "workers");
  EXPECT_EQ(migrations[3].name, "next_due");
  EXPECT_EQ(migrations[4].name, "lean_hot_path");
  EXPECT_EQ(migrations[5].name, "leaner_consume_and_ack");
  EXPECT_EQ(migrations[6].name, "indexed_expiry_check");
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
