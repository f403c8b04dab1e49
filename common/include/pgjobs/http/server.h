#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pgjobs/error.h"

namespace pgjobs::http {

/// What a handler sees of a request.
struct Request {
  std::string method;
  std::string path;
  /// Header values by lower-case name.
  std::map<std::string, std::string> headers;
};

struct Response {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

/// Handlers run on the server's worker threads, concurrently; they must not throw (the server
/// turns an escaped exception into a 500 with its message, but a handler should say more).
using Handler = std::function<Response(const Request&)>;

struct ServerOptions {
  /// host:port pairs as Prometheus users write them (":9467" means all IPv4 interfaces); port 0
  /// picks a free one (see Server::Ports()).
  std::vector<std::string> listen_addresses;
  /// user -> bcrypt hash. When not empty, every path but /-/healthy requires basic auth.
  std::map<std::string, std::string> basic_auth_users;
  int threads = 8;
  /// Reading a request slower than this drops the connection.
  std::chrono::milliseconds request_timeout{10000};
};

/// Normalises a listen address: ":9467" -> "0.0.0.0:9467", "localhost:9467" ->
/// "127.0.0.1:9467"; pure. Throws pgjobs::Error for a missing or bad port, or an IPv6 address
/// (CivetWeb as packaged listens on IPv4 only).
std::string NormalizeListenAddress(std::string_view address);

/// Decodes "Basic base64(user:password)"; std::nullopt when malformed. Pure.
std::optional<std::pair<std::string, std::string>> ParseBasicAuth(std::string_view header);

/// Whether `password` matches a crypt(3) hash (bcrypt $2y$/$2b$/$2a$); thread-safe.
bool CheckPassword(const std::string& password, const std::string& hash);

/// An HTTP server (CivetWeb) serving exact paths. Starts in the constructor and stops in the
/// destructor; thread-safe.
class Server {
 public:
  /// Throws pgjobs::Error naming the address when it cannot listen.
  Server(const ServerOptions& options, std::map<std::string, Handler> routes);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  /// The ports actually listened on, in the order of listen_addresses.
  std::vector<int> Ports() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace pgjobs::http
