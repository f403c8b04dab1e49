// SPDX-License-Identifier: Apache-2.0
// pgjobs::client::Client against a real server: what it publishes is what jobs.publish and
// jobs.publish_bulk would, in order, and a failure says what was published.
#include "pgjobs/client/client.h"
#include "tests/pg/fixture.h"

namespace pgjobs::testing {
namespace {

using ClientTest = PgTest;

TEST_F(ClientTest, PublishTakesEveryOption) {
  client::Client c({.dsn = dsn_});
  const auto when = std::chrono::system_clock::now() + std::chrono::hours(2);
  const long long id =
      c.Publish("email.send", R"({"to": "a@example.com"})",
                {.scheduled_at = when, .timeout_seconds = 12.5, .priority = 7, .max_retries = 0});
  EXPECT_EQ(Value("SELECT task || ' ' || (arguments->>'to') || ' ' || timeout || ' ' || priority "
                  "|| ' ' || max_retries || ' ' || state FROM jobs.all WHERE job_id = " +
                  std::to_string(id)),
            "email.send a@example.com 12.50 7 0 scheduled");
  EXPECT_EQ(Int("SELECT round(extract(epoch FROM scheduled_at - clock_timestamp()) / 60) FROM "
                "jobs.all WHERE job_id = " +
                std::to_string(id)),
            120);
  const long long plain = c.Publish("t");
  EXPECT_EQ(Value("SELECT timeout || ' ' || priority || ' ' || max_retries || ' ' || "
                  "coalesce(arguments::text, 'null') FROM jobs.all WHERE job_id = " +
                  std::to_string(plain)),
            "60.00 0 3 null");
  try {
    c.Publish("t", "null", {.timeout_seconds = 0.001});
    ADD_FAILURE() << "expected the timeout to be refused";
  } catch (const db::DbError& e) {
    EXPECT_EQ(e.SqlState(), "22023");
  }
}

TEST_F(ClientTest, PublishBulkReturnsTheIdsInOrderOverSeveralConnections) {
  client::Client c({.dsn = dsn_, .bulk_connections = 3, .bulk_chunk = 7});
  std::vector<client::NewJob> jobs;
  for (int i = 0; i < 50; ++i) {
    jobs.push_back({i % 2 ? "odd" : "even",
                    "{\"i\": " + std::to_string(i) + "}",
                    {.timeout_seconds = 30, .priority = i % 3}});
  }
  jobs[5].options.scheduled_at = std::chrono::system_clock::now() + std::chrono::hours(1);
  const std::vector<long long> ids = c.PublishBulk(jobs);
  ASSERT_EQ(ids.size(), 50u);
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(Value("SELECT task || (arguments->>'i') || ' ' || priority || ' ' || timeout FROM "
                    "jobs.all WHERE job_id = " +
                    std::to_string(ids[i])),
              std::string(i % 2 ? "odd" : "even") + std::to_string(i) + " " +
                  std::to_string(i % 3) + " 30.00");
  }
  EXPECT_EQ(Value("SELECT state FROM jobs.all WHERE job_id = " + std::to_string(ids[5])),
            "scheduled");
  EXPECT_TRUE(c.PublishBulk({}).empty());
}

TEST_F(ClientTest, PublishBulkChecksEveryJobBeforePublishingAny) {
  client::Client c({.dsn = dsn_});
  std::vector<client::NewJob> jobs(3, client::NewJob{"t", "null", {}});
  jobs[2].options.timeout_seconds = 1.5;
  try {
    c.PublishBulk(jobs);
    ADD_FAILURE() << "expected a fractional timeout to be refused";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "PublishBulk: job 3: timeout must be a whole number of seconds from 1 to 99999, "
                 "got 1.50 (use Publish for fractions of a second)");
  }
  jobs[2] = {" ", "null", {}};
  EXPECT_THROW(c.PublishBulk(jobs), Error);
  EXPECT_EQ(Int("SELECT count(*) FROM jobs.job_queue"), 0);
}

// A chunk the database refuses costs that chunk: the others commit, and the error lists them.
TEST_F(ClientTest, AFailedChunkSaysWhatWasPublished) {
  client::Client c({.dsn = dsn_, .bulk_connections = 1, .bulk_chunk = 2});
  std::vector<client::NewJob> jobs = {
      {"a", "1", {}}, {"a", "2", {}}, {"a", "{bad json", {}}, {"a", "4", {}}, {"a", "5", {}}};
  try {
    c.PublishBulk(jobs);
    ADD_FAILURE() << "expected the chunk with bad JSON to fail";
  } catch (const client::BulkError& e) {
    EXPECT_EQ(e.Published().size(), 3u) << e.what();
    EXPECT_TRUE(std::string(e.what()).starts_with(
        "PublishBulk: jobs 3 to 4 were not published: publish_bulk: invalid input syntax for "
        "type json"))
        << e.what();
  }
  EXPECT_EQ(Value("SELECT string_agg(arguments::text, ',' ORDER BY job_id) FROM jobs.job_queue"),
            "1,2,5");
}

}  // namespace
}  // namespace pgjobs::testing
