// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pgjobs/error.h"
#include "pgjobs/http/tls.h"

namespace pgjobs::http {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

/// What a handler sees of a request.
struct Request {
  std::string method;
  /// The path, without the query string.
  std::string path;
  /// The query string's parameters, percent-decoded (the first value of a repeated name).
  std::map<std::string, std::string> query;
  /// Header values by lower-case name.
  std::map<std::string, std::string> headers;
};

struct Response {
  Response() = default;
  Response(int status_code, std::string type, std::string text, HeaderList extra = {})
      : status(status_code),
        content_type(std::move(type)),
        body(std::move(text)),
        headers(std::move(extra)) {}

  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  /// Further headers of this response.
  HeaderList headers;
};

/// Handlers run on the server's handler threads, concurrently; they must not throw (the server
/// turns an escaped exception into a 500 with its message, but a handler should say more).
using Handler = std::function<Response(const Request&)>;

/// Where to listen. `host` is an IPv4 or IPv6 address, or empty for every address of both
/// families (":9467", as Prometheus users write it).
struct ListenAddress {
  std::string host;
  int port = 0;
};

/// Parses "host:port", "[v6]:port" or ":port"; "localhost" means 127.0.0.1. Throws pgjobs::Error
/// naming the address for anything else (a host name, an octet over 255, a bad port). Pure.
ListenAddress ParseListenAddress(std::string_view address);
/// ParseListenAddress, written back canonically: "0.0.0.0:9467", "[::1]:9467", ":9467". Pure.
std::string NormalizeListenAddress(std::string_view address);

struct ServerOptions {
  /// host:port pairs (see ParseListenAddress); port 0 picks a free one (see Server::Ports()).
  std::vector<std::string> listen_addresses;
  /// user -> bcrypt hash. When not empty, every path but /-/healthy requires basic auth.
  std::map<std::string, std::string> basic_auth_users;
  /// Added to every response (exporter-toolkit's http_server_config.headers).
  HeaderList response_headers;
  /// When set, every listener speaks HTTPS only.
  std::optional<TlsConfig> tls;
  /// Threads that run handlers; requests beyond them wait in a queue of max_queued_requests,
  /// and beyond that get a 503 at once.
  int handler_threads = 4;
  size_t max_queued_requests = 64;
  /// Open connections at most (lowered to fit the process's file descriptor limit). At the cap a
  /// new connection closes the one that has waited longest without a complete request, or, when
  /// every connection is being served, is refused at once with a 503.
  size_t max_connections = 1024;
  /// A request's head must arrive within this long of its first byte, and a new connection's
  /// first request within this long of its opening: a slow or silent client cannot hold on.
  std::chrono::milliseconds request_timeout{5000};
  /// A kept-alive connection with no request in progress is closed after this long.
  std::chrono::milliseconds idle_timeout{120000};
  /// A response must be taken by the client within this long.
  std::chrono::milliseconds write_timeout{30000};
};

/// Decodes "Basic base64(user:password)"; std::nullopt when malformed: anything but canonical
/// base64 with its padding, no colon, or a NUL anywhere. Pure.
std::optional<std::pair<std::string, std::string>> ParseBasicAuth(std::string_view header);

/// Whether `password` matches a crypt(3) hash (bcrypt $2y$/$2b$/$2a$); thread-safe.
bool CheckPassword(const std::string& password, const std::string& hash);

/// An HTTP/1.1 server serving exact paths with GET and HEAD. One thread reads and writes every
/// connection (epoll), so idle or slow connections cost a socket, not a thread; complete requests
/// go to the handler threads. Starts in the constructor and stops in the destructor (after the
/// handlers in progress return); thread-safe.
class Server {
 public:
  /// Throws pgjobs::Error naming the address when it cannot listen.
  Server(const ServerOptions& options, std::map<std::string, Handler> routes);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  /// The ports actually listened on, in the order of listen_addresses.
  std::vector<int> Ports() const;
  /// Replaces the basic auth users, the response headers and the TLS configuration (a reloaded
  /// web configuration): requests read after this call use the new users and headers, and
  /// connections accepted after it the new TLS. Throws pgjobs::Error, changing nothing, when the
  /// TLS files cannot be used.
  void SetAccess(std::map<std::string, std::string> basic_auth_users, HeaderList response_headers,
                 std::optional<TlsConfig> tls);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace pgjobs::http
