// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pgjobs/error.h"

namespace pgjobs::client {

/// How a job is published; every field optional, as in jobs.publish.
struct PublishOptions {
  /// When it becomes runnable; now when absent.
  std::optional<std::chrono::system_clock::time_point> scheduled_at = std::nullopt;
  /// Seconds, 0.01 to 99999.99 (whole seconds in PublishBulk, as jobs.publish_bulk takes them);
  /// 60 when absent.
  std::optional<double> timeout_seconds = std::nullopt;
  /// Greater runs first; 0 when absent.
  std::optional<int> priority = std::nullopt;
  /// At most max_retries + 1 runs; 3 when absent.
  std::optional<int> max_retries = std::nullopt;
};

/// One job for PublishBulk.
struct NewJob {
  std::string task;
  /// JSON text, or "null".
  std::string arguments = "null";
  PublishOptions options = {};
};

struct ClientOptions {
  /// A libpq connection string or postgresql:// URI of a role in jobs_publisher.
  std::string dsn;
  std::chrono::milliseconds connect_timeout{5000};
  /// Each call returns within this long whatever the database does.
  std::chrono::milliseconds call_timeout{60000};
  /// PublishBulk sends its chunks over this many connections at once.
  int bulk_connections = 2;
  /// PublishBulk's jobs per jobs.publish_bulk call.
  int bulk_chunk = 10000;
};

/// PublishBulk's error when some chunks were published and one failed: the ids published so far
/// (those of whole chunks, in the order of the jobs given) and the first failure.
class BulkError : public Error {
 public:
  BulkError(const std::string& message, std::vector<long long> published)
      : Error(message), published_(std::move(published)) {}
  /// Job ids that were published (their chunks committed) before or besides the failure.
  const std::vector<long long>& Published() const { return published_; }

 private:
  std::vector<long long> published_;
};

/// Publishes jobs from C++: the SQL API's jobs.publish and jobs.publish_bulk, on connections of
/// its own (opened on first use, reopened after they broke). Not thread-safe: one Client per
/// thread, or a lock around it.
///
///   pgjobs::client::Client client({.dsn = "postgresql://app@db/app"});
///   long long id = client.Publish("email.send", R"({"to": "a@example.com"})");
///   std::vector<long long> ids = client.PublishBulk(jobs);
class Client {
 public:
  explicit Client(ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  /// Publishes one job and returns its id. Throws db::DbError (a refused value: 22023 with the
  /// argument named) or pgjobs::Error.
  long long Publish(const std::string& task, const std::string& arguments = "null",
                    const PublishOptions& options = {});

  /// Publishes `jobs` and returns their ids in the same order. The jobs go in chunks of
  /// bulk_chunk, each one call of jobs.publish_bulk and one transaction, over bulk_connections
  /// connections at once: a chunk commits whole or not at all, and a failure after some chunks
  /// committed throws BulkError with the ids that were published. Every job is checked on this
  /// side first (a blank or over-long task, a fractional or out-of-range timeout): then nothing
  /// is published and pgjobs::Error names the job.
  std::vector<long long> PublishBulk(const std::vector<NewJob>& jobs);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pgjobs::client
