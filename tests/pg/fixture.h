// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "pgjobs/db/connection.h"
#include "tests/harness/pg_cluster.h"

namespace pgjobs::testing {

/// Each test gets its own database, copied from the migrated template, and a connection to it.
class PgTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dsn_ = PgCluster::Shared().FreshDatabase();
    conn_.emplace(db::ConnectOptions{.dsn = dsn_});
  }

  db::Connection& Conn() { return *conn_; }
  db::Connection Connect() { return db::Connection(db::ConnectOptions{.dsn = dsn_}); }

  /// The single value `sql` returns, as text.
  std::string Value(const std::string& sql, const db::Params& params = {}) {
    db::Result r = Conn().Query("test value", sql, params);
    EXPECT_EQ(r.Rows(), 1) << sql;
    return r.Rows() == 1 ? std::string(r.Text(0, 0)) : std::string();
  }
  long long Int(const std::string& sql, const db::Params& params = {}) {
    return std::stoll(Value(sql, params));
  }
  /// Publishes with the given extra named arguments (SQL text) and returns the job id.
  long long Publish(const std::string& task, const std::string& extra = "") {
    return Int("SELECT job_id FROM jobs.publish(i_task => $1" +
                   (extra.empty() ? std::string() : ", " + extra) + ")",
               {task});
  }
  /// Publishes `n` jobs of task "t" with a timeout of `timeout` (SQL; NULL: the default) and
  /// finishes them all, each leaving dead row versions and index entries in jobs.job_queue.
  void FinishJobs(int n, const std::string& timeout = "NULL") {
    Conn().Execute("publish", "SELECT jobs.publish_bulk(ARRAY(SELECT ('t', NULL, NULL, " + timeout +
                                  ", NULL, NULL)::jobs.bulk_job FROM generate_series(1, " +
                                  std::to_string(n) + ")))");
    Conn().Execute("take and finish them all",
                   "SELECT count(*) FROM jobs.ack(ARRAY(SELECT job_id FROM jobs.consume(" +
                       std::to_string(n) + ")), NULL)");
  }
  /// The index entries of jobs.job_queue this session's transaction has read so far.
  static constexpr const char* kQueueIndexEntriesRead =
      "SELECT sum(pg_stat_get_xact_tuples_returned(indexrelid)) FROM pg_index "
      "WHERE indrelid = 'jobs.job_queue'::regclass";
  /// The DbError `sql` raises; fails the test when it succeeds.
  db::DbError Refusal(const std::string& sql, const db::Params& params = {}) {
    try {
      Conn().Query("test refusal", sql, params);
    } catch (const db::DbError& e) {
      return e;
    }
    ADD_FAILURE() << "expected an error from: " << sql;
    return db::DbError("no error", "", "", false);
  }
  /// A new connection to the test database as `user` (a login role the test created).
  db::Connection As(const std::string& user) {
    return db::Connection(db::ConnectOptions{.dsn = dsn_ + " user=" + user});
  }
  /// "allowed" when `sql` runs on `conn`, else the SQLSTATE it raised.
  static std::string Denied(db::Connection& conn, const std::string& sql) {
    try {
      conn.Query("probe", sql);
    } catch (const db::DbError& e) {
      return e.SqlState();
    }
    return "allowed";
  }
  /// Moves a pending job's runnable time into the past, standing in for waiting out a backoff.
  void MakeRunnable(long long job_id) {
    Conn().Query("shift time",
                 "UPDATE jobs.job_queue SET scheduled_at = clock_timestamp() - interval '1 ms' "
                 "WHERE job_id = $1",
                 {std::to_string(job_id)});
  }

  std::string dsn_;
  std::optional<db::Connection> conn_;
};

}  // namespace pgjobs::testing
