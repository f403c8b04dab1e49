#include "pgjobs/http/server.h"

#include <civetweb.h>
#include <crypt.h>

#include <cstring>
#include <mutex>
#include <set>

namespace pgjobs::http {

std::string NormalizeListenAddress(std::string_view address) {
  const std::string original(address);
  if (address.starts_with("[")) {
    throw Error("listen address '" + original +
                "': IPv6 is not supported; listen on an IPv4 address such as 0.0.0.0:PORT");
  }
  const size_t colon = address.rfind(':');
  if (colon == std::string_view::npos) {
    throw Error("listen address '" + original + "': expected HOST:PORT or :PORT");
  }
  std::string host(address.substr(0, colon));
  const std::string port(address.substr(colon + 1));
  if (host.find(':') != std::string::npos) {
    throw Error("listen address '" + original +
                "': IPv6 is not supported; listen on an IPv4 address such as 0.0.0.0:PORT");
  }
  char* end = nullptr;
  const long number = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || number < 0 || number > 65535) {
    throw Error("listen address '" + original + "': expected a port from 0 to 65535, got '" + port +
                "'");
  }
  if (host.empty()) host = "0.0.0.0";
  if (host == "localhost") host = "127.0.0.1";
  return host + ":" + std::to_string(number);
}

std::optional<std::pair<std::string, std::string>> ParseBasicAuth(std::string_view header) {
  constexpr std::string_view kPrefix = "Basic ";
  if (!header.starts_with(kPrefix)) return std::nullopt;
  std::string_view encoded = header.substr(kPrefix.size());
  std::string decoded;
  unsigned buffer = 0;
  int bits = 0;
  for (char c : encoded) {
    int v;
    if (c >= 'A' && c <= 'Z') {
      v = c - 'A';
    } else if (c >= 'a' && c <= 'z') {
      v = c - 'a' + 26;
    } else if (c >= '0' && c <= '9') {
      v = c - '0' + 52;
    } else if (c == '+') {
      v = 62;
    } else if (c == '/') {
      v = 63;
    } else if (c == '=') {
      break;
    } else {
      return std::nullopt;
    }
    buffer = (buffer << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      decoded += static_cast<char>((buffer >> bits) & 0xff);
    }
  }
  const size_t colon = decoded.find(':');
  if (colon == std::string::npos) return std::nullopt;
  return std::make_pair(decoded.substr(0, colon), decoded.substr(colon + 1));
}

bool CheckPassword(const std::string& password, const std::string& hash) {
  crypt_data data{};
  const char* result = crypt_r(password.c_str(), hash.c_str(), &data);
  // crypt_r signals failure with NULL or a string starting with '*'.
  return result != nullptr && result[0] != '*' && hash.size() == std::strlen(result) &&
         std::memcmp(result, hash.c_str(), hash.size()) == 0;
}

struct Server::Impl {
  std::map<std::string, Handler> routes;
  std::map<std::string, std::string> users;
  mg_context* ctx = nullptr;
  // bcrypt is deliberately slow; credentials that verified once are remembered (bounded).
  std::mutex verified_mutex;
  std::set<std::string> verified;

  bool Authorized(const Request& request) {
    if (users.empty()) return true;
    auto header = request.headers.find("authorization");
    if (header == request.headers.end()) return false;
    auto credentials = ParseBasicAuth(header->second);
    if (!credentials) return false;
    auto user = users.find(credentials->first);
    if (user == users.end()) return false;
    const std::string key = credentials->first + '\0' + credentials->second;
    {
      std::lock_guard<std::mutex> lock(verified_mutex);
      if (verified.contains(key)) return true;
    }
    if (!CheckPassword(credentials->second, user->second)) return false;
    std::lock_guard<std::mutex> lock(verified_mutex);
    if (verified.size() < 64) verified.insert(key);
    return true;
  }

  static void Send(mg_connection* conn, const Response& r, bool challenge) {
    mg_response_header_start(conn, r.status);
    mg_response_header_add(conn, "Content-Type", r.content_type.c_str(), -1);
    mg_response_header_add(conn, "Content-Length", std::to_string(r.body.size()).c_str(), -1);
    if (challenge) mg_response_header_add(conn, "WWW-Authenticate", "Basic realm=\"pgjobs\"", -1);
    mg_response_header_send(conn);
    const mg_request_info* info = mg_get_request_info(conn);
    if (std::strcmp(info->request_method, "HEAD") != 0) {
      mg_write(conn, r.body.data(), r.body.size());
    }
  }

  static int BeginRequest(mg_connection* conn) {
    auto* self = static_cast<Impl*>(mg_get_user_data(mg_get_context(conn)));
    const mg_request_info* info = mg_get_request_info(conn);
    Request request;
    request.method = info->request_method != nullptr ? info->request_method : "";
    request.path = info->local_uri != nullptr ? info->local_uri : "";
    for (int i = 0; i < info->num_headers; ++i) {
      std::string name = info->http_headers[i].name;
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      request.headers[name] = info->http_headers[i].value;
    }
    if (request.path != "/-/healthy" && !self->Authorized(request)) {
      Send(conn, {401, "text/plain; charset=utf-8", "Unauthorized\n"}, true);
      return 401;
    }
    auto route = self->routes.find(request.path);
    if (route == self->routes.end()) {
      Send(conn, {404, "text/plain; charset=utf-8", "Not Found: " + request.path + "\n"}, false);
      return 404;
    }
    if (request.method != "GET" && request.method != "HEAD") {
      Send(conn, {405, "text/plain; charset=utf-8", "Method Not Allowed\n"}, false);
      return 405;
    }
    Response response;
    try {
      response = route->second(request);
    } catch (const std::exception& e) {
      response = {500, "text/plain; charset=utf-8",
                  std::string("internal error serving ") + request.path + ": " + e.what() + "\n"};
    }
    Send(conn, response, false);
    return response.status;
  }

  // CivetWeb's own messages (bad requests, socket errors) are not errors of ours; drop them.
  static int LogMessage(const mg_connection*, const char*) { return 1; }
};

Server::Server(const ServerOptions& options, std::map<std::string, Handler> routes)
    : impl_(std::make_unique<Impl>()) {
  impl_->routes = std::move(routes);
  impl_->users = options.basic_auth_users;
  std::string ports;
  for (const std::string& address : options.listen_addresses) {
    if (!ports.empty()) ports += ',';
    ports += NormalizeListenAddress(address);
  }
  if (ports.empty()) throw Error("no listen address given");
  const std::string threads = std::to_string(options.threads);
  const std::string timeout = std::to_string(options.request_timeout.count());
  const char* civet_options[] = {
      "listening_ports", ports.c_str(),       "num_threads", threads.c_str(), "request_timeout_ms",
      timeout.c_str(),   "enable_keep_alive", "yes",         nullptr};
  mg_callbacks callbacks{};
  callbacks.begin_request = &Impl::BeginRequest;
  callbacks.log_message = &Impl::LogMessage;
  mg_init_library(0);
  mg_init_data init{};
  init.callbacks = &callbacks;
  init.user_data = impl_.get();
  init.configuration_options = civet_options;
  mg_error_data error{};
  char error_text[256] = {0};
  error.text = error_text;
  error.text_buffer_size = sizeof error_text;
  impl_->ctx = mg_start2(&init, &error);
  if (impl_->ctx == nullptr) {
    throw Error("cannot listen on " + ports + ": " +
                (error_text[0] != '\0' ? std::string(error_text) : "unknown error"));
  }
}

Server::~Server() {
  if (impl_->ctx != nullptr) mg_stop(impl_->ctx);
}

std::vector<int> Server::Ports() const {
  mg_server_port ports[16];
  const int n = mg_get_server_ports(impl_->ctx, 16, ports);
  std::vector<int> out;
  for (int i = 0; i < n; ++i) out.push_back(ports[i].port);
  return out;
}

}  // namespace pgjobs::http
