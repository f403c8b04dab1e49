// SPDX-License-Identifier: Apache-2.0
// Measures the queue's SQL API from a client on one connection: publish_bulk throughput, and
// consume + ack throughput at several batch sizes. Prints one markdown table row per figure.
//
// usage: queue_bench DSN [JOBS]       (the database must be migrated and its queue empty)
//        queue_bench DSN JOBS ack-only  (consume + ack in batches of 100, five runs)
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>

#include "pgjobs/db/connection.h"

namespace {

using Clock = std::chrono::steady_clock;
using pgjobs::db::Connection;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// One jobs.bulk_job as an element of an array literal: ("task","{""i"": n}",,,,).
std::string BulkElement(const std::string& task, int i) {
  // Composite field quoting doubles the quotes; array element quoting then escapes quotes and
  // backslashes with a backslash.
  const std::string composite = "(" + task + ",\"{\"\"i\"\": " + std::to_string(i) + "}\",,,,)";
  std::string element = "\"";
  for (char c : composite) {
    if (c == '"' || c == '\\') element += '\\';
    element += c;
  }
  return element + "\"";
}

std::string BulkArray(const std::string& task, int first, int count) {
  std::string out = "{";
  for (int i = 0; i < count; ++i) {
    if (i) out += ',';
    out += BulkElement(task, first + i);
  }
  return out + "}";
}

void Row(const std::string& what, long long jobs, double seconds) {
  std::printf("| %s | %lld | %.3f | %.0f |\n", what.c_str(), jobs, seconds, jobs / seconds);
  std::fflush(stdout);
}

void Reset(Connection& conn) {
  conn.Execute("reset", "TRUNCATE jobs.job_queue, jobs.job; CHECKPOINT");
}

void PublishBulk(Connection& conn, int jobs, int per_call) {
  Reset(conn);
  std::vector<std::string> arrays;
  for (int first = 0; first < jobs; first += per_call) {
    arrays.push_back(BulkArray("bench.noop", first, std::min(per_call, jobs - first)));
  }
  const auto start = Clock::now();
  for (const std::string& array : arrays) conn.QueryPrepared("publish_bulk", {array});
  Row("publish_bulk, " + std::to_string(per_call) + " jobs per call", jobs, Seconds(start));
}

void ConsumeAck(Connection& conn, int jobs, int batch) {
  Reset(conn);
  conn.Query("fill", "SELECT count(*) FROM jobs.publish_bulk($1::jobs.bulk_job[])",
             {BulkArray("bench.noop", 0, jobs)});
  conn.Execute("vacuum", "VACUUM ANALYZE jobs.job_queue");
  const auto start = Clock::now();
  long long done = 0;
  for (;;) {
    pgjobs::db::Result taken = conn.QueryPrepared("consume", {std::to_string(batch)});
    if (taken.Rows() == 0) break;
    std::string ids = "{";
    std::string attempts = "{";
    for (int i = 0; i < taken.Rows(); ++i) {
      if (i) {
        ids += ',';
        attempts += ',';
      }
      ids += taken.Text(i, 0);
      attempts += taken.Text(i, 1);
    }
    ids += '}';
    attempts += '}';
    done += conn.QueryPrepared("ack", {ids, attempts}).Rows();
  }
  Row("consume + ack, batches of " + std::to_string(batch), done, Seconds(start));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: queue_bench DSN [JOBS]\n";
    return 2;
  }
  const int jobs = argc > 2 ? std::stoi(argv[2]) : 100000;
  try {
    Connection conn(pgjobs::db::ConnectOptions{.dsn = argv[1], .application_name = "queue_bench"});
    conn.Prepare("publish_bulk", "SELECT count(*) FROM jobs.publish_bulk($1::jobs.bulk_job[])");
    conn.Prepare("consume", "SELECT job_id, attempts FROM jobs.consume($1::int)");
    conn.Prepare("ack", "SELECT job_id FROM jobs.ack($1::bigint[], $2::int[])");
    std::printf("| measurement | jobs | seconds | jobs/s |\n|---|---|---|---|\n");
    if (argc > 3 && std::string(argv[3]) == "ack-only") {
      for (int run = 0; run < 5; ++run) ConsumeAck(conn, jobs, 100);
      return 0;
    }
    PublishBulk(conn, jobs, jobs);
    PublishBulk(conn, jobs, 10000);
    PublishBulk(conn, jobs, 1000);
    PublishBulk(conn, jobs / 10, 1);
    for (int batch : {1, 10, 100, 1000}) ConsumeAck(conn, batch == 1 ? jobs / 10 : jobs, batch);
  } catch (const pgjobs::Error& e) {
    std::cerr << "queue_bench: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
