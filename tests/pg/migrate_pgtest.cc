// SPDX-License-Identifier: Apache-2.0
// The migrator against real databases: fresh installs, upgrades, failures and races.
#include <thread>

#include "pgjobs/migrate/migrator.h"
#include "tests/pg/fixture.h"

namespace pgjobs::testing {
namespace {

class MigrateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dsn_ = PgCluster::Shared().EmptyDatabase();
    conn_.emplace(db::ConnectOptions{.dsn = dsn_});
  }
  std::string Value(const std::string& sql) {
    return std::string(conn_->Query("value", sql).Text(0, 0));
  }
  std::string dsn_;
  std::optional<db::Connection> conn_;
};

const std::vector<migrate::Migration>& All() { return migrate::BundledMigrations(); }

// The bundled versions from `first` on, as Apply() reports them.
std::vector<int> VersionsFrom(int first) {
  std::vector<int> versions;
  for (const auto& m : All()) {
    if (m.version >= first) versions.push_back(m.version);
  }
  return versions;
}

// "1queue,2stats,...", as jobs.schema_migrations lists the bundled versions.
std::string History() {
  std::string out;
  for (const auto& m : All()) out += (out.empty() ? "" : ",") + std::to_string(m.version) + m.name;
  return out;
}

TEST_F(MigrateTest, InstallsEveryVersionThenIsANoOp) {
  EXPECT_EQ(migrate::Apply(*conn_, All()), VersionsFrom(1));
  EXPECT_EQ(Value("SELECT string_agg(version || name, ',' ORDER BY version) FROM "
                  "jobs.schema_migrations"),
            History());
  EXPECT_TRUE(migrate::Apply(*conn_, All()).empty());
  const auto status = migrate::Status(*conn_, All());
  ASSERT_EQ(status.size(), All().size());
  for (const auto& v : status) EXPECT_TRUE(v.applied_at.has_value()) << v.version;
}

TEST_F(MigrateTest, StatusListsPendingVersionsWithoutChangingAnything) {
  const auto status = migrate::Status(*conn_, All());
  ASSERT_EQ(status.size(), All().size());
  EXPECT_FALSE(status[0].applied_at.has_value());
  EXPECT_EQ(status[1].name, "stats");
  EXPECT_EQ(Value("SELECT count(*) FROM pg_namespace WHERE nspname = 'jobs'"), "0");
}

TEST_F(MigrateTest, UpgradesAFirstVersionInstallInPlace) {
  EXPECT_EQ(migrate::Apply(*conn_, All(), 1), (std::vector<int>{1}));
  conn_->Execute("work on version 1", R"sql(
    SELECT jobs.publish('a') FROM generate_series(1, 5);
    SELECT jobs.publish('b');
    SELECT jobs.ack(job_id) FROM jobs.consume(2, ARRAY['a']) LIMIT 1;
  )sql");
  EXPECT_EQ(migrate::Apply(*conn_, All()), VersionsFrom(2));
  // The counters start from the rows already queued; history from before has no watermark.
  EXPECT_EQ(Value("SELECT string_agg(task || ready || '/' || running, ',' ORDER BY task) FROM "
                  "jobs.stats_queue"),
            "a3/1,b1/0");
  EXPECT_EQ(Value("SELECT count(*) || '/' || count(finished_xid) FROM jobs.job"), "1/0");
  conn_->Execute("work on version 2", "SELECT jobs.ack(job_id) FROM jobs.consume(1)");
  EXPECT_EQ(Value("SELECT count(*) || '/' || count(finished_xid) FROM jobs.job"), "2/1");
}

// Jobs that version 7 accepted and that version 8 refuses: none is dropped silently, and none
// may stop the queue after the upgrade.
TEST_F(MigrateTest, UpgradingToVersion8RepairsOrFinishesPoisonJobs) {
  migrate::Apply(*conn_, All(), 7);
  conn_->Execute("poison accepted by version 7", R"sql(
    SELECT jobs.publish('nan', i_timeout => 'NaN');
    SELECT jobs.publish('soon', i_scheduled_at => '-infinity');
    SELECT jobs.publish('never', i_scheduled_at => 'infinity');
    SELECT jobs.publish(' ');
    SELECT jobs.publish('fine');
  )sql");
  EXPECT_EQ(migrate::Apply(*conn_, All()), VersionsFrom(8));
  EXPECT_EQ(
      Value("SELECT string_agg(task || ' ' || timeout || ' ' || (scheduled_at = published_at), "
            "', ' ORDER BY job_id) FROM jobs.job_queue"),
      "nan 60.00 true, soon 60.00 true, fine 60.00 true");
  EXPECT_EQ(Value("SELECT string_agg(quote_literal(task) || ' ' || status || ': ' || "
                  "(tracebacks->-1->>'error'), '; ' ORDER BY job_id) FROM jobs.job"),
            "'never' failure: refused by pgjobs migration 8: scheduled_at was infinity, so the "
            "job could never run; ' ' failure: refused by pgjobs migration 8: the task name was "
            "blank, so the job could never run");
  EXPECT_EQ(Value("SELECT string_agg(task || ready, ',' ORDER BY task) FROM jobs.stats_queue"),
            "fine1,nan1,soon1");
  EXPECT_EQ(Value("SELECT count(*) FROM jobs.consume(10)"), "3");
}

// Version 14 partitions jobs.job: the jobs finished before stay, in one partition for all time
// before the upgrade, and are pruned row by row; the next ones go to the day's partitions.
TEST_F(MigrateTest, UpgradingToVersion14KeepsTheHistoryInAPartitionOfItsOwn) {
  migrate::Apply(*conn_, All(), 13);
  conn_->Execute("history of version 13", R"sql(
    SELECT jobs.publish('a') FROM generate_series(1, 3);
    SELECT jobs.ack(job_id) FROM jobs.consume(3);
    UPDATE jobs.job SET finished_at = now() - interval '8 days' WHERE job_id = 1;
  )sql");
  EXPECT_EQ(migrate::Apply(*conn_, All(), 14), (std::vector<int>{14}));
  EXPECT_EQ(Value("SELECT string_agg(job_id || ':' || tableoid::regclass::text, ',' "
                  "ORDER BY job_id) FROM jobs.job"),
            "1:jobs.job_before_14,2:jobs.job_before_14,3:jobs.job_before_14");
  conn_->Execute("work on version 14", R"sql(
    SELECT jobs.publish('a');
    SELECT jobs.ack(job_id) FROM jobs.consume(1);
  )sql");
  EXPECT_EQ(
      Value("SELECT tableoid::regclass::text FROM jobs.job WHERE job_id = 4"),
      "jobs.job_day_" + Value("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD')") + "_success");
  EXPECT_EQ(Value("SELECT jobs.prune()"), "1");
  EXPECT_EQ(Value("SELECT string_agg(job_id::text, ',' ORDER BY job_id) FROM jobs.job"), "2,3,4");
  // Its size is that of all its partitions (the partitioned table itself has none).
  EXPECT_EQ(Value("SELECT total_bytes = (SELECT sum(pg_total_relation_size(relid)) FROM "
                  "pg_partition_tree('jobs.job')) AND total_bytes > 0 FROM jobs.stats_tables "
                  "WHERE table_name = 'job'"),
            "t");
}

TEST_F(MigrateTest, AFailingMigrationLeavesTheDatabaseAsItWas) {
  std::vector<migrate::Migration> broken = All();
  const int latest = static_cast<int>(All().size());
  broken.push_back(
      {latest + 1, "broken", "CREATE TABLE jobs.half_done (x int);\nSELECT no_such_function();"});
  try {
    migrate::Apply(*conn_, broken);
    FAIL() << "expected the broken migration to fail";
  } catch (const db::DbError& e) {
    EXPECT_EQ(std::string(e.what()),
              "migration " + std::to_string(latest + 1) +
                  " (broken): function no_such_function() does not exist hint: No "
                  "function matches the given name and argument types. You might need to add "
                  "explicit type casts. [SQLSTATE 42883]");
  }
  // All or nothing: every earlier version, applied in the same run, is rolled back too.
  EXPECT_EQ(Value("SELECT count(*) FROM pg_namespace WHERE nspname = 'jobs'"), "0");
  EXPECT_EQ(migrate::Apply(*conn_, All()), VersionsFrom(1));
  EXPECT_THROW(migrate::Apply(*conn_, broken), db::DbError);
  EXPECT_EQ(Value("SELECT to_regclass('jobs.half_done') IS NULL"), "t");
  EXPECT_EQ(Value("SELECT max(version) FROM jobs.schema_migrations"), std::to_string(latest));
}

TEST_F(MigrateTest, RefusesAMigrationEditedAfterItWasApplied) {
  migrate::Apply(*conn_, All());
  std::vector<migrate::Migration> edited = All();
  edited[1].sql += "\n-- edited";
  try {
    migrate::Status(*conn_, edited);
    FAIL() << "expected the edited migration to be refused";
  } catch (const Error& e) {
    EXPECT_TRUE(std::string(e.what()).starts_with(
        "migration 2 (stats) was changed after it was applied (checksum "))
        << e.what();
  }
  EXPECT_THROW(migrate::Apply(*conn_, edited), Error);
}

TEST_F(MigrateTest, RefusesADatabaseNewerThanItKnows) {
  migrate::Apply(*conn_, All());
  std::vector<migrate::Migration> older(All().begin(), All().begin() + 1);
  try {
    migrate::Apply(*conn_, older);
    FAIL() << "expected a newer database to be refused";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "database is at version " + std::to_string(All().size()) +
                                         ", newer than this jobs-migrate knows (1)");
  }
}

TEST_F(MigrateTest, ConcurrentRunsApplyEachVersionOnce) {
  std::vector<std::vector<int>> applied(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([this, i, &applied] {
      db::Connection conn(db::ConnectOptions{.dsn = dsn_});
      applied[i] = migrate::Apply(conn, All());
    });
  }
  for (auto& t : threads) t.join();
  int runs_that_applied = 0;
  for (const auto& a : applied) {
    if (!a.empty()) {
      ++runs_that_applied;
      EXPECT_EQ(a, VersionsFrom(1));
    }
  }
  EXPECT_EQ(runs_that_applied, 1);
}

}  // namespace
}  // namespace pgjobs::testing
