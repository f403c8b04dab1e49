// SPDX-License-Identifier: Apache-2.0
// The fixture of the jobs-worker suites: a fresh database, a temporary directory, and the real
// binary started with a YAML configuration.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "pgjobs/db/connection.h"
#include "tests/harness/background_process.h"
#include "tests/harness/http_client.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/pg_cluster.h"

namespace pgjobs::testing {

inline const std::string kBin = PGJOBS_WORKER_BIN;
inline const std::string kTestdata = PGJOBS_TESTDATA_DIR;
using Clock = std::chrono::steady_clock;

class WorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dsn_ = PgCluster::Shared().FreshDatabase();
    conn_.emplace(db::ConnectOptions{.dsn = dsn_});
    char tmpl[] = "/tmp/pgjobs-worker-test-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override {
    worker_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Starts jobs-worker with `body` (YAML after the database section).
  // `dsn` replaces the test database's superuser DSN; `env` is added to the worker's environment.
  // `flags` are added to the command line.
  void Start(const std::string& body, const std::string& dsn = "",
             const std::vector<std::string>& env = {}, const std::vector<std::string>& flags = {}) {
    std::ofstream(dir_ + "/worker.yaml")
        << "database: {dsn: \"${TEST_DSN}\"" << database_options_ << "}\n"
        << body;
    std::vector<std::string> environment = {"TEST_DSN=" + (dsn.empty() ? dsn_ : dsn),
                                            "OUT=" + dir_};
    environment.insert(environment.end(), env.begin(), env.end());
    std::vector<std::string> command{kBin, "--config.file=" + dir_ + "/worker.yaml",
                                     "--web.listen-address=127.0.0.1:0"};
    command.insert(command.end(), flags.begin(), flags.end());
    worker_ = std::make_unique<BackgroundProcess>(command, environment);
    ASSERT_TRUE(worker_->WaitForOutput("msg=registered")) << worker_->Output();
    port_ = worker_->LoggedInt("ports");
  }
  std::map<std::string, double> Metrics() {
    HttpResponse r = HttpGet(port_, "/metrics");
    EXPECT_EQ(r.status, 200);
    return ParseMetrics(r.body);
  }
  long long Int(const std::string& sql) { return conn_->Query("int", sql).Int(0, 0); }
  std::string Text(const std::string& sql) {
    return std::string(conn_->Query("text", sql).Text(0, 0));
  }
  void Sql(const std::string& sql) { conn_->Execute("sql", sql); }
  // Waits until `sql` returns `expected`, or fails after `seconds`.
  void WaitFor(const std::string& sql, long long expected, double seconds = 20) {
    const auto deadline =
        Clock::now() + std::chrono::milliseconds(static_cast<int>(seconds * 1000));
    long long got = -1;
    while (Clock::now() < deadline) {
      got = Int(sql);
      if (got == expected) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL() << sql << ": expected " << expected << ", got " << got << "\n"
           << (worker_ ? worker_->Output() : "");
  }

  std::string dsn_;
  // Added to the database section by Start(): ", pooling: transaction", say.
  std::string database_options_;
  std::optional<db::Connection> conn_;
  std::string dir_;
  std::unique_ptr<BackgroundProcess> worker_;
  int port_ = 0;
};

}  // namespace pgjobs::testing
