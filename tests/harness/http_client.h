// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace pgjobs::testing {

struct HttpResponse {
  int status = 0;                              // 0 when no response arrived
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string raw;  // everything received
};

/// Sends `raw` to 127.0.0.1:port and reads the response until the server closes or `timeout_ms`
/// passes.
HttpResponse HttpRaw(int port, const std::string& raw, int timeout_ms = 15000);

/// GET path with the given extra header lines ("Name: value"), Connection: close.
HttpResponse HttpGet(int port, const std::string& path,
                     const std::vector<std::string>& headers = {}, int timeout_ms = 15000);

/// Clients that hold connections without finishing a request, to show they starve nobody:
/// `idle` connections that send nothing, and `slow` ones (slowloris) that send a request head a
/// byte every 100 ms, reconnecting when the server closes them. All closed in the destructor.
class HostileClients {
 public:
  HostileClients(int port, int idle, int slow);
  ~HostileClients();
  HostileClients(const HostileClients&) = delete;
  HostileClients& operator=(const HostileClients&) = delete;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// "Authorization: Basic base64(user:password)".
std::string BasicAuthHeader(const std::string& user, const std::string& password);

}  // namespace pgjobs::testing
