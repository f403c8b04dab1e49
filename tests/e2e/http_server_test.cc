// SPDX-License-Identifier: Apache-2.0
// pgjobs::http::Server over real sockets: what idle, slow and hostile clients cannot do to the
// requests of everyone else.
#include <arpa/inet.h>
#include <crypt.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "pgjobs/http/server.h"
#include "tests/harness/http_client.h"

namespace pgjobs::testing {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// A connected socket to the server, or -1.
int Connect(int port, bool v6 = false) {
  const int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
  int rc;
  if (v6) {
    sockaddr_in6 addr{};
    addr.sin6_family = AF_INET6;
    addr.sin6_port = htons(static_cast<uint16_t>(port));
    addr.sin6_addr = in6addr_loopback;
    rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  } else {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  }
  if (rc != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Reads until the peer closes or `timeout_ms` passes; what arrived.
std::string ReadAll(int fd, int timeout_ms) {
  std::string out;
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    char buf[4096];
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// Whether the server closed `fd` within `timeout_ms`.
bool ClosedWithin(int fd, int timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 20) > 0) {
      char buf[256];
      if (read(fd, buf, sizeof buf) <= 0) return true;
    }
  }
  return false;
}

http::Response Ok(const http::Request&) {
  return http::Response(200, "text/plain; charset=utf-8", "ok\n");
}

class ServerTest : public ::testing::Test {
 protected:
  void StartServer(http::ServerOptions options) {
    if (options.listen_addresses.empty()) options.listen_addresses = {"127.0.0.1:0"};
    std::map<std::string, http::Handler> routes = {{"/ok", Ok}, {"/-/healthy", Ok}};
    routes["/block"] = [this](const http::Request&) {
      while (!release_) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      return http::Response(200, "text/plain", "released\n");
    };
    server_ = std::make_unique<http::Server>(options, routes);
    port_ = server_->Ports().at(0);
  }
  void TearDown() override {
    release_ = true;
    for (int fd : fds_) close(fd);
    server_.reset();
  }
  int Open() {
    const int fd = Connect(port_);
    if (fd >= 0) fds_.push_back(fd);
    return fd;
  }

  std::unique_ptr<http::Server> server_;
  int port_ = 0;
  std::atomic<bool> release_{false};
  std::vector<int> fds_;
};

// The target: 500 idle connections and 100 slowloris clients (a header byte every
// 100 ms, never finishing) do not keep real requests waiting.
TEST_F(ServerTest, IdleAndSlowConnectionsDoNotStarveRealRequests) {
  StartServer({});
  for (int i = 0; i < 500; ++i) ASSERT_GE(Open(), 0) << i;
  std::vector<int> slow;
  for (int i = 0; i < 100; ++i) {
    const int fd = Open();
    ASSERT_GE(fd, 0);
    (void)!write(fd, "GET /ok HTTP/1.1\r\nX-Slow: ", 26);
    slow.push_back(fd);
  }
  std::atomic<bool> done{false};
  std::thread drip([&] {
    while (!done) {
      for (int fd : slow) (void)!send(fd, "a", 1, MSG_NOSIGNAL);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  double worst = 0;
  for (int i = 0; i < 8; ++i) {
    const auto start = Clock::now();
    HttpResponse r = HttpGet(port_, "/ok", {}, 5000);
    worst = std::max(worst, SecondsSince(start));
    EXPECT_EQ(r.status, 200) << i;
  }
  done = true;
  drip.join();
  EXPECT_LT(worst, 1.0);
}

// A client that dribbles its request head is cut off at request_timeout, and one that never
// sends anything too; neither holds its connection for ever.
TEST_F(ServerTest, SlowAndSilentClientsAreCutOffAtTheRequestTimeout) {
  http::ServerOptions options;
  options.request_timeout = std::chrono::milliseconds(300);
  StartServer(options);
  const int silent = Open();
  const int slow = Open();
  (void)!write(slow, "GET /ok HTTP/1.1\r\n", 18);
  const auto start = Clock::now();
  std::atomic<bool> done{false};
  std::thread drip([&] {
    while (!done) {
      (void)!send(slow, "X: y\r\n", 6, MSG_NOSIGNAL);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  EXPECT_TRUE(ClosedWithin(slow, 2000));
  EXPECT_TRUE(ClosedWithin(silent, 2000));
  done = true;
  drip.join();
  EXPECT_LT(SecondsSince(start), 1.5);
}

// At the cap, the connection that has waited longest without a request makes room; when every
// connection is being served, a new one is refused at once with a 503.
TEST_F(ServerTest, AtTheCapStaleConnectionsMakeRoomAndTheExcessIsRefusedQuickly) {
  http::ServerOptions options;
  options.max_connections = 20;
  options.handler_threads = 20;
  StartServer(options);
  for (int i = 0; i < 20; ++i) ASSERT_GE(Open(), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(HttpGet(port_, "/ok", {}, 2000).status, 200);
  EXPECT_TRUE(ClosedWithin(fds_.front(), 1000)) << "the oldest idle connection was closed";

  // Fill the cap with requests in progress.
  std::vector<int> busy;
  for (int i = 0; i < 20; ++i) {
    const int fd = Open();
    (void)!write(fd, "GET /block HTTP/1.1\r\n\r\n", 23);
    busy.push_back(fd);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const auto start = Clock::now();
  HttpResponse refused = HttpGet(port_, "/ok", {}, 3000);
  EXPECT_EQ(refused.status, 503);
  EXPECT_LT(SecondsSince(start), 0.5);
  release_ = true;
  for (int fd : busy) {
    EXPECT_NE(ReadAll(fd, 2000).find("released"), std::string::npos);
    break;  // the responses keep their connections open: one is enough to show they finish
  }
}

TEST_F(ServerTest, KeepAliveAndPipelinedRequestsAreAnsweredInOrder) {
  StartServer({});
  const int fd = Open();
  const std::string two =
      "GET /ok HTTP/1.1\r\nHost: x\r\n\r\nHEAD /ok HTTP/1.1\r\nHost: x\r\nConnection: "
      "close\r\n\r\n";
  ASSERT_EQ(write(fd, two.data(), two.size()), static_cast<ssize_t>(two.size()));
  const std::string out = ReadAll(fd, 3000);
  EXPECT_EQ(
      out,
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\r\n"
      "ok\nHTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "
      "3\r\nConnection: close\r\n\r\n");
}

// ":PORT" listens on every address of both families.
TEST_F(ServerTest, AnEmptyHostListensOnIpv4AndIpv6) {
  http::ServerOptions options;
  options.listen_addresses = {":0"};
  StartServer(options);
  const int v6 = Connect(port_, true);
  if (v6 < 0) GTEST_SKIP() << "no IPv6 loopback on this machine";
  fds_.push_back(v6);
  const std::string request = "GET /ok HTTP/1.1\r\nConnection: close\r\n\r\n";
  ASSERT_EQ(write(v6, request.data(), request.size()), static_cast<ssize_t>(request.size()));
  EXPECT_NE(ReadAll(v6, 2000).find(" 200 OK"), std::string::npos);
  EXPECT_EQ(HttpGet(port_, "/ok").status, 200) << "IPv4 too";
}

// Basic auth: an unknown user costs the same bcrypt work as a wrong password, so response times
// do not tell which user names exist; the whole header value counts.
TEST_F(ServerTest, BasicAuthDoesNotTellUnknownUsersByTimeAndReadsTheWholeValue) {
  char salt[64];
  ASSERT_NE(crypt_gensalt_rn("$2b$", 8, nullptr, 0, salt, sizeof salt), nullptr);
  crypt_data data{};
  const std::string hash = crypt_r("secret", salt, &data);
  http::ServerOptions options;
  options.basic_auth_users = {{"alice", hash}};
  StartServer(options);
  auto timed = [this](const std::string& user, const std::string& password) {
    std::vector<double> times;
    for (int i = 0; i < 5; ++i) {
      const auto start = Clock::now();
      EXPECT_EQ(HttpGet(port_, "/ok", {BasicAuthHeader(user, password)}).status, 401);
      times.push_back(SecondsSince(start));
    }
    std::sort(times.begin(), times.end());
    return times[2];
  };
  const double known = timed("alice", "wrong");
  const double unknown = timed("mallory", "wrong");
  EXPECT_GT(unknown, known / 2) << "known " << known << " s, unknown " << unknown << " s";
  EXPECT_LT(unknown, known * 2) << "known " << known << " s, unknown " << unknown << " s";
  EXPECT_EQ(HttpGet(port_, "/ok", {BasicAuthHeader("alice", "secret")}).status, 200);
  EXPECT_EQ(
      HttpGet(port_, "/ok", {BasicAuthHeader("alice", std::string("secret\0junk", 11))}).status,
      401);
  EXPECT_EQ(HttpGet(port_, "/ok", {BasicAuthHeader("alice", "secret") + "junk"}).status, 401);
  EXPECT_EQ(HttpGet(port_, "/-/healthy").status, 200) << "health needs no credentials";
}

}  // namespace
}  // namespace pgjobs::testing
