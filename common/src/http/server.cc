// SPDX-License-Identifier: Apache-2.0
#include "pgjobs/http/server.h"

#include <arpa/inet.h>
#include <crypt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include "request_head.h"
#include "tls_context.h"

namespace pgjobs::http {

ListenAddress ParseListenAddress(std::string_view address) {
  const std::string original(address);
  auto fail = [&original](const std::string& problem) -> Error {
    return Error("listen address '" + original + "': " + problem);
  };
  const size_t colon = address.rfind(':');
  if (colon == std::string_view::npos) throw fail("expected HOST:PORT, [IPv6]:PORT or :PORT");
  std::string host(address.substr(0, colon));
  const std::string port(address.substr(colon + 1));
  char* end = nullptr;
  errno = 0;
  const long number = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || errno != 0 || number < 0 || number > 65535 ||
      !std::isdigit(static_cast<unsigned char>(port[0]))) {
    throw fail("expected a port from 0 to 65535, got '" + port + "'");
  }
  if (host.starts_with("[") && host.ends_with("]")) {
    host = host.substr(1, host.size() - 2);
    in6_addr v6{};
    if (inet_pton(AF_INET6, host.c_str(), &v6) != 1) {
      throw fail("expected an IPv6 address in brackets, got '" + host + "'");
    }
  } else if (host == "localhost") {
    host = "127.0.0.1";
  } else if (!host.empty()) {
    in_addr v4{};
    if (host.find(':') != std::string::npos) {
      throw fail("write an IPv6 address in brackets, such as [::1]:PORT");
    }
    // inet_pton takes only the dotted quad, each part 0 to 255 (inet_aton would read
    // 999.1.1.1 as 231.1.1.1).
    if (inet_pton(AF_INET, host.c_str(), &v4) != 1) {
      throw fail("expected an IP address such as 127.0.0.1 or [::1], or localhost, got '" + host +
                 "'");
    }
  }
  return {host, static_cast<int>(number)};
}

std::string NormalizeListenAddress(std::string_view address) {
  const ListenAddress a = ParseListenAddress(address);
  const std::string port = std::to_string(a.port);
  if (a.host.empty()) return ":" + port;
  if (a.host.find(':') != std::string::npos) return "[" + a.host + "]:" + port;
  return a.host + ":" + port;
}

std::optional<std::pair<std::string, std::string>> ParseBasicAuth(std::string_view header) {
  constexpr std::string_view kPrefix = "Basic ";
  if (!header.starts_with(kPrefix)) return std::nullopt;
  std::string_view encoded = header.substr(kPrefix.size());
  // Canonical base64 only: whole quads, padding only at the end. Anything after the padding
  // would otherwise be ignored, and a header with junk appended would pass.
  if (encoded.empty() || encoded.size() % 4 != 0) return std::nullopt;
  std::string decoded;
  unsigned buffer = 0;
  int bits = 0;
  size_t padding = 0;
  for (size_t i = 0; i < encoded.size(); ++i) {
    const char c = encoded[i];
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
    } else if (c == '=' && i + 2 >= encoded.size()) {
      ++padding;
      continue;
    } else {
      return std::nullopt;
    }
    if (padding > 0) return std::nullopt;  // data after padding
    buffer = (buffer << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      decoded += static_cast<char>((buffer >> bits) & 0xff);
    }
  }
  // crypt(3) reads a C string: a NUL would end the password early, so that "secret\0junk"
  // would pass for "secret".
  if (decoded.find('\0') != std::string::npos) return std::nullopt;
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

namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMaxHead = size_t{16} * 1024;
// epoll ids below this are the wake-up eventfd (0) and the listeners (1..).
constexpr std::uint64_t kFirstConnectionId = 1 << 20;

const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Status";
  }
}

std::string Serialize(const Response& r, const HeaderList& extra, bool head_only, int minor,
                      bool keep_alive) {
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + Reason(r.status) + "\r\n";
  out += "Content-Type: " + r.content_type + "\r\n";
  out += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
  for (const auto& [name, value] : extra) out += name + ": " + value + "\r\n";
  for (const auto& [name, value] : r.headers) out += name + ": " + value + "\r\n";
  if (!keep_alive) {
    out += "Connection: close\r\n";
  } else if (minor == 0) {
    out += "Connection: keep-alive\r\n";
  }
  out += "\r\n";
  if (!head_only) out += r.body;
  return out;
}

Response Text(int status, const std::string& body) {
  return Response(status, "text/plain; charset=utf-8", body);
}

// One listening socket; for an empty host, IPv6 taking IPv4 too, or IPv4 where IPv6 is missing.
int Listen(const ListenAddress& a, const std::string& shown) {
  const bool any = a.host.empty();
  const bool v6 = any || a.host.find(':') != std::string::npos;
  int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  bool v4_fallback = false;
  if (fd < 0 && any && errno == EAFNOSUPPORT) {
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    v4_fallback = true;
  }
  if (fd < 0) throw Error("cannot listen on " + shown + ": socket: " + std::strerror(errno));
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  int rc;
  if (v6 && !v4_fallback) {
    const int only = a.host.empty() || a.host == "::" ? 0 : 1;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &only, sizeof only);
    sockaddr_in6 addr{};
    addr.sin6_family = AF_INET6;
    addr.sin6_port = htons(static_cast<uint16_t>(a.port));
    if (!any) inet_pton(AF_INET6, a.host.c_str(), &addr.sin6_addr);
    rc = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  } else {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(a.port));
    if (!any) inet_pton(AF_INET, a.host.c_str(), &addr.sin_addr);
    rc = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  }
  if (rc != 0 || listen(fd, 1024) != 0) {
    const std::string reason = std::strerror(errno);
    close(fd);
    throw Error("cannot listen on " + shown + ": " + reason);
  }
  return fd;
}

}  // namespace

struct Server::Impl {
  enum class State { kReading, kHandling, kWriting };

  struct Connection {
    int fd = -1;
    // The TLS session of an HTTPS connection (null for plain HTTP).
    std::unique_ptr<SSL, decltype(&SSL_free)> tls{nullptr, SSL_free};
    State state = State::kReading;
    std::string in;
    std::string out;
    size_t sent = 0;
    bool served = false;       // completed at least one request
    bool close_after = false;  // close once `out` is sent
    bool peer_done = false;    // the client shut down its sending side
    Clock::time_point since;   // waiting for a request since, or the current request's first byte
    Clock::time_point write_started;
  };

  struct Job {
    std::uint64_t id;
    Request request;
    int minor_version;
    bool keep_alive;
  };
  struct Done {
    std::uint64_t id;
    std::string bytes;
    bool close;
  };

  // Who may read and what every response carries; replaced whole by SetAccess.
  struct Access {
    std::map<std::string, std::string> users;
    HeaderList response_headers;
    TlsContext tls;  // null: plain HTTP
  };
  std::map<std::string, Handler> routes;
  mutable std::mutex access_mutex;
  std::shared_ptr<const Access> access;
  ServerOptions options;
  size_t max_connections = 0;

  std::vector<int> listeners;
  int epoll_fd = -1;
  int wake_fd = -1;
  std::unordered_map<std::uint64_t, Connection> connections;
  std::uint64_t next_id = kFirstConnectionId;
  Clock::time_point last_sweep;

  std::mutex mutex;  // guards jobs, done, stopping
  std::condition_variable jobs_cv;
  std::deque<Job> jobs;
  std::deque<Done> done;
  bool stopping = false;
  std::thread loop_thread;
  std::vector<std::thread> handler_threads;

  // bcrypt is deliberately slow; credentials that verified once are remembered (bounded).
  std::mutex verified_mutex;
  std::set<std::string> verified;

  ~Impl() {
    for (int fd : listeners) close(fd);
    for (auto& [id, c] : connections) close(c.fd);
    if (epoll_fd >= 0) close(epoll_fd);
    if (wake_fd >= 0) close(wake_fd);
  }

  void Wake() {
    const std::uint64_t one = 1;
    (void)!write(wake_fd, &one, sizeof one);
  }

  // ---- handler threads -------------------------------------------------------------------

  std::shared_ptr<const Access> CurrentAccess() const {
    std::lock_guard<std::mutex> lock(access_mutex);
    return access;
  }

  bool Authorized(const Request& request, const std::map<std::string, std::string>& users) {
    if (users.empty()) return true;
    auto header = request.headers.find("authorization");
    if (header == request.headers.end()) return false;
    auto credentials = ParseBasicAuth(header->second);
    if (!credentials) return false;
    auto user = users.find(credentials->first);
    if (user == users.end()) {
      // As slow as a known user with a wrong password, so that timing does not tell which user
      // names exist: the same bcrypt work against a configured hash, whose answer is ignored.
      CheckPassword(credentials->second, users.begin()->second);
      return false;
    }
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

  Response Handle(const Request& request, const Access& current) {
    if (request.path != "/-/healthy" && !Authorized(request, current.users)) {
      Response r = Text(401, "Unauthorized\n");
      r.headers.emplace_back("WWW-Authenticate", "Basic realm=\"pgjobs\"");
      return r;
    }
    auto route = routes.find(request.path);
    if (route == routes.end()) return Text(404, "Not Found: " + request.path + "\n");
    if (request.method != "GET" && request.method != "HEAD") {
      Response r = Text(405, "Method Not Allowed\n");
      r.headers.emplace_back("Allow", "GET, HEAD");
      return r;
    }
    try {
      return route->second(request);
    } catch (const std::exception& e) {
      return Text(500, "internal error serving " + request.path + ": " + e.what() + "\n");
    }
  }

  void HandlerThread() {
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> lock(mutex);
        jobs_cv.wait(lock, [this] { return stopping || !jobs.empty(); });
        if (stopping) return;
        job = std::move(jobs.front());
        jobs.pop_front();
      }
      const std::shared_ptr<const Access> current = CurrentAccess();
      const Response response = Handle(job.request, *current);
      Done d{job.id,
             Serialize(response, current->response_headers, job.request.method == "HEAD",
                       job.minor_version, job.keep_alive),
             !job.keep_alive};
      {
        std::lock_guard<std::mutex> lock(mutex);
        done.push_back(std::move(d));
      }
      Wake();
    }
  }

  // ---- the event loop ----------------------------------------------------------------------

  void Close(std::uint64_t id) {
    auto it = connections.find(id);
    if (it == connections.end()) return;
    if (it->second.tls) SSL_shutdown(it->second.tls.get());  // best effort, never waits
    close(it->second.fd);                                    // also leaves the epoll set
    connections.erase(it);
  }

  void Watch(std::uint64_t id, Connection& c, std::uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = id;
    epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c.fd, &ev);
  }

  // Starts sending `bytes` on the connection; closes it afterwards when `close_after`.
  void Respond(std::uint64_t id, Connection& c, std::string bytes, bool close_after) {
    c.state = State::kWriting;
    c.out = std::move(bytes);
    c.sent = 0;
    c.close_after = close_after;
    c.write_started = Clock::now();
    Write(id, c);
  }

  void RespondNow(std::uint64_t id, Connection& c, int status, const std::string& body) {
    Respond(id, c,
            Serialize(Text(status, body), CurrentAccess()->response_headers, false, 1, false),
            true);
  }

  // What a TLS call that could not finish waits for; false when the connection must close.
  bool WaitForTls(std::uint64_t id, Connection& c, int result) {
    const int error = SSL_get_error(c.tls.get(), result);
    if (error == SSL_ERROR_WANT_READ) {
      Watch(id, c, EPOLLIN | EPOLLRDHUP);
      return true;
    }
    if (error == SSL_ERROR_WANT_WRITE) {
      Watch(id, c, EPOLLIN | EPOLLOUT | EPOLLRDHUP);
      return true;
    }
    ERR_clear_error();  // a failed handshake (a plain-HTTP client, a refused certificate)
    return false;
  }

  void Write(std::uint64_t id, Connection& c) {
    while (c.tls && c.sent < c.out.size()) {
      const int n = SSL_write(c.tls.get(), c.out.data() + c.sent,
                              static_cast<int>(std::min<size_t>(c.out.size() - c.sent, 1 << 20)));
      if (n > 0) {
        c.sent += static_cast<size_t>(n);
        continue;
      }
      if (!WaitForTls(id, c, n)) Close(id);
      return;
    }
    while (c.sent < c.out.size()) {
      const ssize_t n =
          send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        c.sent += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        Watch(id, c, EPOLLOUT | EPOLLRDHUP);
        return;
      }
      if (n < 0 && errno == EINTR) continue;
      Close(id);
      return;
    }
    if (c.close_after) {
      Close(id);
      return;
    }
    c.state = State::kReading;
    c.served = true;
    c.out.clear();
    c.since = Clock::now();
    Watch(id, c, EPOLLIN | EPOLLRDHUP);
    if (!c.in.empty()) Parse(id, c);  // a pipelined request already arrived
  }

  // Reads what TLS has decrypted; true when the connection is still open.
  bool ReadTls(std::uint64_t id, Connection& c) {
    char buffer[8192];
    for (;;) {
      const int n = SSL_read(c.tls.get(), buffer, sizeof buffer);
      if (n > 0) {
        if (c.in.empty()) c.since = Clock::now();
        c.in.append(buffer, static_cast<size_t>(n));
        if (c.in.size() > kMaxHead) return true;
        continue;
      }
      const int error = SSL_get_error(c.tls.get(), n);
      if (error == SSL_ERROR_ZERO_RETURN) {
        c.peer_done = true;
        return true;
      }
      if (!WaitForTls(id, c, n)) {
        Close(id);
        return false;
      }
      return true;
    }
  }

  void Read(std::uint64_t id, Connection& c) {
    if (c.tls) {
      if (!ReadTls(id, c)) return;
      Parse(id, c);
      auto it = connections.find(id);
      if (it != connections.end() && it->second.peer_done && it->second.state == State::kReading) {
        Close(id);
      }
      return;
    }
    char buffer[8192];
    for (;;) {
      const ssize_t n = recv(c.fd, buffer, sizeof buffer, MSG_DONTWAIT);
      if (n > 0) {
        if (c.in.empty()) c.since = Clock::now();
        c.in.append(buffer, static_cast<size_t>(n));
        if (c.in.size() > kMaxHead) break;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n < 0) {
        Close(id);
        return;
      }
      // End of input: a request sent before it is still answered, then the connection closes.
      c.peer_done = true;
      break;
    }
    Parse(id, c);
    // Parse may have answered and closed the connection, freeing `c`: look it up again.
    auto it = connections.find(id);
    if (it != connections.end() && it->second.peer_done && it->second.state == State::kReading) {
      Close(id);
    }
  }

  void Parse(std::uint64_t id, Connection& c) {
    HeadParse parsed = ParseRequestHead(c.in, kMaxHead);
    if (parsed.status == HeadParse::Status::kIncomplete) return;
    if (parsed.status == HeadParse::Status::kBad) {
      RespondNow(id, c, parsed.error_status, parsed.error + "\n");
      return;
    }
    c.in.erase(0, parsed.length);
    RequestHead& head = parsed.head;
    if (head.has_body) {
      RespondNow(id, c, 413, "request bodies are not accepted\n");
      return;
    }
    auto query = ParseQuery(head.query);
    if (!query) {
      RespondNow(id, c, 400, "malformed query string\n");
      return;
    }
    Job job{id, Request{head.method, head.path, std::move(*query), std::move(head.headers)},
            head.minor_version, head.keep_alive && !c.peer_done};
    bool queued = false;
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (jobs.size() < options.max_queued_requests) {
        jobs.push_back(std::move(job));
        queued = true;
      }
    }
    if (!queued) {
      // Every handler is busy and the queue is full: say so now rather than hold the client.
      RespondNow(id, c, 503, "too many requests in progress; try again\n");
      return;
    }
    c.state = State::kHandling;
    jobs_cv.notify_one();
    // Nothing is read while the request is handled (a pipelined one waits in the socket);
    // a reset connection still reports EPOLLERR or EPOLLHUP.
    Watch(id, c, 0);
  }

  void Accept(int listener) {
    for (;;) {
      const int fd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;  // EAGAIN, or out of descriptors: the next round tries again
      }
      TlsContext tls = CurrentAccess()->tls;
      if (connections.size() >= max_connections && !EvictOne()) {
        if (tls) {  // a plain-text answer means nothing to a TLS client
          close(fd);
          continue;
        }
        static constexpr char kBusy[] =
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        (void)!send(fd, kBusy, sizeof kBusy - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        close(fd);
        continue;
      }
      const int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      const std::uint64_t id = next_id++;
      Connection& c = connections[id];
      c.fd = fd;
      c.since = Clock::now();  // the handshake counts against request_timeout
      if (tls) {
        c.tls.reset(SSL_new(tls.get()));
        if (!c.tls || SSL_set_fd(c.tls.get(), fd) != 1) {
          ERR_clear_error();
          close(fd);
          connections.erase(id);
          continue;
        }
        SSL_set_accept_state(c.tls.get());
      }
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP;
      ev.data.u64 = id;
      epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev);
    }
  }

  // At the cap: closes the connection that has waited longest without a complete request (a
  // silent or slow client, or an idle keep-alive one). False when every connection is being
  // served.
  bool EvictOne() {
    std::uint64_t oldest = 0;
    Clock::time_point oldest_since = Clock::time_point::max();
    for (const auto& [id, c] : connections) {
      if (c.state == State::kReading && c.since < oldest_since) {
        oldest = id;
        oldest_since = c.since;
      }
    }
    if (oldest == 0) return false;
    Close(oldest);
    return true;
  }

  void Sweep(Clock::time_point now) {
    std::vector<std::uint64_t> expired;
    for (const auto& [id, c] : connections) {
      bool late = false;
      if (c.state == State::kReading) {
        const auto limit =
            !c.in.empty() || !c.served ? options.request_timeout : options.idle_timeout;
        late = now - c.since > limit;
      } else if (c.state == State::kWriting) {
        late = now - c.write_started > options.write_timeout;
      }
      if (late) expired.push_back(id);
    }
    for (std::uint64_t id : expired) Close(id);
  }

  void Loop() {
    epoll_event events[256];
    for (;;) {
      const int n = epoll_wait(epoll_fd, events, 256, 100);
      for (int i = 0; i < n; ++i) {
        const std::uint64_t id = events[i].data.u64;
        if (id == 0) {
          std::uint64_t count;
          (void)!read(wake_fd, &count, sizeof count);
          continue;
        }
        if (id < kFirstConnectionId) {
          Accept(listeners[id - 1]);
          continue;
        }
        auto it = connections.find(id);
        if (it == connections.end()) continue;
        Connection& c = it->second;
        const std::uint32_t e = events[i].events;
        // A TLS connection may wait for the other direction (a handshake, a key update).
        if (c.state == State::kReading &&
            (e & (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
          Read(id, c);
        } else if (c.state == State::kWriting && (e & (EPOLLOUT | EPOLLIN | EPOLLHUP | EPOLLERR))) {
          Write(id, c);
        } else if (e & (EPOLLHUP | EPOLLERR)) {
          Close(id);  // gone while its request is handled: the response is dropped
        }
      }
      std::deque<Done> finished;
      bool stop = false;
      {
        std::lock_guard<std::mutex> lock(mutex);
        finished.swap(done);
        stop = stopping;
      }
      if (stop) return;
      for (Done& d : finished) {
        auto it = connections.find(d.id);
        if (it == connections.end()) continue;
        Respond(d.id, it->second, std::move(d.bytes), d.close);
      }
      const auto now = Clock::now();
      if (now - last_sweep >= std::chrono::milliseconds(100)) {
        last_sweep = now;
        Sweep(now);
      }
    }
  }
};

Server::Server(const ServerOptions& options, std::map<std::string, Handler> routes)
    : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.routes = std::move(routes);
  s.access = std::make_shared<const Impl::Access>(
      Impl::Access{options.basic_auth_users, options.response_headers,
                   options.tls ? MakeTlsContext(*options.tls) : nullptr});
  s.options = options;
  if (options.listen_addresses.empty()) throw Error("no listen address given");
  // Leave room under the descriptor limit for the process's other files and connections.
  rlimit limit{};
  s.max_connections = options.max_connections;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
    const size_t room = limit.rlim_cur > 128 ? limit.rlim_cur - 64 : limit.rlim_cur / 2;
    s.max_connections = std::max<size_t>(1, std::min(s.max_connections, room));
  }
  s.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  s.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s.epoll_fd < 0 || s.wake_fd < 0) {
    throw Error(std::string("cannot start the HTTP server: ") + std::strerror(errno));
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;
  epoll_ctl(s.epoll_fd, EPOLL_CTL_ADD, s.wake_fd, &ev);
  for (const std::string& address : options.listen_addresses) {
    const int fd = Listen(ParseListenAddress(address), address);
    s.listeners.push_back(fd);
    ev.events = EPOLLIN;
    ev.data.u64 = s.listeners.size();
    epoll_ctl(s.epoll_fd, EPOLL_CTL_ADD, fd, &ev);
  }
  s.last_sweep = Clock::now();
  for (int i = 0; i < std::max(1, options.handler_threads); ++i) {
    s.handler_threads.emplace_back([&s] { s.HandlerThread(); });
  }
  s.loop_thread = std::thread([&s] { s.Loop(); });
}

void Server::SetAccess(std::map<std::string, std::string> basic_auth_users,
                       HeaderList response_headers, std::optional<TlsConfig> tls) {
  auto next = std::make_shared<const Impl::Access>(
      Impl::Access{std::move(basic_auth_users), std::move(response_headers),
                   tls ? MakeTlsContext(*tls) : nullptr});
  {
    std::lock_guard<std::mutex> lock(impl_->access_mutex);
    impl_->access = std::move(next);
  }
  // Credentials verified against the old users must be verified again.
  std::lock_guard<std::mutex> lock(impl_->verified_mutex);
  impl_->verified.clear();
}

Server::~Server() {
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->jobs_cv.notify_all();
  impl_->Wake();
  impl_->loop_thread.join();
  for (auto& t : impl_->handler_threads) t.join();
}

std::vector<int> Server::Ports() const {
  std::vector<int> out;
  for (int fd : impl_->listeners) {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    out.push_back(addr.ss_family == AF_INET6
                      ? ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port)
                      : ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port));
  }
  return out;
}

}  // namespace pgjobs::http
