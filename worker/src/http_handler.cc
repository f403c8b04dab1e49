// SPDX-License-Identifier: Apache-2.0
#include "http_handler.h"

#include <curl/curl.h>

#include "pgjobs/json_quote.h"
#include "pgjobs/log/logger.h"
#include "safe_text.h"

namespace pgjobs::worker {
namespace {

using Clock = std::chrono::steady_clock;

struct Transfer {
  const Job* job;
  const Shutdown* shutdown;
  std::string response;
  bool cut_by_shutdown = false;
};

size_t Collect(char* data, size_t size, size_t count, void* out) {
  std::string& response = static_cast<Transfer*>(out)->response;
  response.append(data, size * count);
  if (response.size() > size_t{64} * 1024) response.erase(0, response.size() - size_t{32} * 1024);
  return size * count;
}

// Aborts the transfer when the shutdown's grace ends before the job's own deadline.
int Progress(void* data, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(data);
  if (Clock::now() < t->shutdown->For(t->job->deadline)) return 0;
  t->cut_by_shutdown = true;
  return 1;
}

Outcome Post(const std::string& url, const std::vector<std::string>& headers, const Job& job,
             const Shutdown& shutdown) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                        shutdown.For(job.deadline) - Clock::now())
                        .count();
  if (left <= 0) return Outcome::Timeout("timeout: no time left to POST to " + url);
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return Outcome::Failure("cannot create an HTTP client");
  const std::string body =
      "{\"job_id\":" + std::to_string(job.id) + ",\"task\":" + JsonQuote(job.task) +
      ",\"attempt\":" + std::to_string(job.attempt) + ",\"arguments\":" + job.arguments + "}";
  curl_slist* list = curl_slist_append(nullptr, "Content-Type: application/json");
  for (const std::string& h : headers) list = curl_slist_append(list, h.c_str());
  Transfer transfer{&job, &shutdown, {}, false};
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(left));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &Collect);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &transfer);
  curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, &Progress);
  curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &transfer);
  curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  const CURLcode rc = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(list);
  curl_easy_cleanup(curl);
  if (rc == CURLE_OPERATION_TIMEDOUT ||
      (rc == CURLE_ABORTED_BY_CALLBACK && transfer.cut_by_shutdown)) {
    return Outcome::Timeout("timeout: POST " + url + " did not answer before the job's timeout");
  }
  if (rc != CURLE_OK) return Outcome::Failure("POST " + url + ": " + curl_easy_strerror(rc));
  if (status >= 200 && status < 300) return Outcome::Success();
  return Outcome::Failure(
      "POST " + url + ": HTTP " + std::to_string(status) +
      (transfer.response.empty() ? "" : ": " + SafeTail(transfer.response, 1000)));
}

}  // namespace

Handler HttpHandler(std::string url, std::vector<std::string> headers, const Shutdown& shutdown) {
  return [url = std::move(url), headers = std::move(headers), &shutdown](const Job& job) {
    return Post(url, headers, job, shutdown);
  };
}

}  // namespace pgjobs::worker
