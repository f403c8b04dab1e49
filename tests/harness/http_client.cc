// SPDX-License-Identifier: Apache-2.0
#include "tests/harness/http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <sstream>
#include <thread>

namespace pgjobs::testing {

HttpResponse HttpRaw(int port, const std::string& raw, int timeout_ms) {
  HttpResponse response;
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return response;
  }
  (void)!write(fd, raw.data(), raw.size());
  std::string data;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) break;
    pollfd pfd{fd, POLLIN, 0};
    if (poll(&pfd, 1, static_cast<int>(left)) <= 0) break;
    char buf[65536];
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  response.raw = data;
  const size_t header_end = data.find("\r\n\r\n");
  if (header_end == std::string::npos) return response;
  std::istringstream head(data.substr(0, header_end));
  std::string line;
  std::getline(head, line);
  if (line.size() > 12 && line.starts_with("HTTP/1.") && std::isdigit(line[9])) {
    response.status = std::stoi(line.substr(9, 3));
  }
  while (std::getline(head, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    response.headers[name] = line.substr(line.find_first_not_of(' ', colon + 1));
  }
  response.body = data.substr(header_end + 4);
  if (response.headers["transfer-encoding"] == "chunked") {
    std::string decoded;
    size_t pos = 0;
    while (pos < response.body.size()) {
      const size_t line_end = response.body.find("\r\n", pos);
      if (line_end == std::string::npos) break;
      const size_t size = std::stoul(response.body.substr(pos, line_end - pos), nullptr, 16);
      if (size == 0) break;
      decoded += response.body.substr(line_end + 2, size);
      pos = line_end + 2 + size + 2;
    }
    response.body = decoded;
  }
  return response;
}

HttpResponse HttpGet(int port, const std::string& path, const std::vector<std::string>& headers,
                     int timeout_ms) {
  std::string raw = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
  for (const std::string& h : headers) raw += h + "\r\n";
  raw += "\r\n";
  return HttpRaw(port, raw, timeout_ms);
}

std::string BasicAuthHeader(const std::string& user, const std::string& password) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const std::string in = user + ":" + password;
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(in[i]) << 16) |
                       (static_cast<unsigned char>(in[i + 1]) << 8) |
                       static_cast<unsigned char>(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += kAlphabet[(v >> s) & 63];
  }
  if (i < in.size()) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return "Authorization: Basic " + out;
}

namespace {

int ConnectLoopback(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

struct HostileClients::Impl {
  int port;
  std::vector<int> idle;
  std::vector<int> slow;
  std::atomic<bool> done{false};
  std::thread drip;
};

HostileClients::HostileClients(int port, int idle, int slow) : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.port = port;
  for (int i = 0; i < idle; ++i) s.idle.push_back(ConnectLoopback(port));
  for (int i = 0; i < slow; ++i) s.slow.push_back(ConnectLoopback(port));
  s.drip = std::thread([&s] {
    while (!s.done) {
      for (int& fd : s.slow) {
        if (fd >= 0 && send(fd, "G", 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1) continue;
        if (fd >= 0) close(fd);
        fd = ConnectLoopback(s.port);  // cut off by the server: come back, as an attacker would
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
}

HostileClients::~HostileClients() {
  impl_->done = true;
  impl_->drip.join();
  for (int fd : impl_->idle) {
    if (fd >= 0) close(fd);
  }
  for (int fd : impl_->slow) {
    if (fd >= 0) close(fd);
  }
}

}  // namespace pgjobs::testing
