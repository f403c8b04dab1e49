// SPDX-License-Identifier: Apache-2.0
#include <crypt.h>
#include <gtest/gtest.h>

#include "common/src/http/request_head.h"
#include "pgjobs/http/metrics.h"
#include "pgjobs/http/server.h"
#include "pgjobs/http/web_config.h"

namespace pgjobs::http {
namespace {

TEST(NormalizeListenAddress, AcceptsWhatPrometheusUsersWrite) {
  EXPECT_EQ(NormalizeListenAddress(":9467"), ":9467");
  EXPECT_EQ(NormalizeListenAddress("127.0.0.1:0"), "127.0.0.1:0");
  EXPECT_EQ(NormalizeListenAddress("localhost:80"), "127.0.0.1:80");
  EXPECT_EQ(NormalizeListenAddress("[::]:9467"), "[::]:9467");
  EXPECT_EQ(NormalizeListenAddress("[::1]:9467"), "[::1]:9467");
}

std::string ListenError(const char* address) {
  try {
    NormalizeListenAddress(address);
  } catch (const Error& e) {
    return e.what();
  }
  return "accepted";
}

TEST(NormalizeListenAddress, RefusesWhatCannotBeAnAddressToListenOn) {
  EXPECT_EQ(ListenError("9467"), "listen address '9467': expected HOST:PORT, [IPv6]:PORT or :PORT");
  EXPECT_EQ(ListenError(":99999"),
            "listen address ':99999': expected a port from 0 to 65535, got '99999'");
  EXPECT_EQ(ListenError(":-1"), "listen address ':-1': expected a port from 0 to 65535, got '-1'");
  EXPECT_EQ(ListenError("999.1.1.1:19476"),
            "listen address '999.1.1.1:19476': expected an IP address such as 127.0.0.1 or "
            "[::1], or localhost, got '999.1.1.1'");
  EXPECT_EQ(ListenError("db.example.com:9467"),
            "listen address 'db.example.com:9467': expected an IP address such as 127.0.0.1 or "
            "[::1], or localhost, got 'db.example.com'");
  EXPECT_EQ(ListenError("::1:9467"),
            "listen address '::1:9467': write an IPv6 address in brackets, such as [::1]:PORT");
  EXPECT_EQ(ListenError("[nonsense]:9467"),
            "listen address '[nonsense]:9467': expected an IPv6 address in brackets, got "
            "'nonsense'");
}

TEST(ParseBasicAuth, DecodesUserAndPassword) {
  EXPECT_EQ(ParseBasicAuth("Basic dXNlcjpwYTpzcw=="),
            std::make_pair(std::string("user"), std::string("pa:ss")));
  EXPECT_EQ(ParseBasicAuth("Basic dTpw"), std::make_pair(std::string("u"), std::string("p")));
  EXPECT_FALSE(ParseBasicAuth("Bearer abc").has_value());
  EXPECT_FALSE(ParseBasicAuth("Basic bm9jb2xvbg==").has_value());  // "nocolon"
  EXPECT_FALSE(ParseBasicAuth("Basic ###").has_value());
}

// The whole header value counts: what follows the padding, a truncated quad, or a NUL inside
// the password (which crypt(3) would stop at) makes it malformed.
TEST(ParseBasicAuth, RefusesAnythingButTheWholeCanonicalValue) {
  EXPECT_FALSE(ParseBasicAuth("Basic dXNlcjpwYTpzcw==junk").has_value());
  EXPECT_FALSE(ParseBasicAuth("Basic dXNlcjpwYTpzcw=").has_value());
  EXPECT_FALSE(ParseBasicAuth("Basic dXNlcjpwYTpzc").has_value());
  EXPECT_FALSE(ParseBasicAuth("Basic dXNl=cjpw").has_value());
  // "user:secret\0junk"
  EXPECT_FALSE(ParseBasicAuth("Basic dXNlcjpzZWNyZXQAanVuaw==").has_value());
}

TEST(CheckPassword, VerifiesBcrypt) {
  char salt[64];
  ASSERT_NE(crypt_gensalt_rn("$2b$", 4, nullptr, 0, salt, sizeof salt), nullptr);
  crypt_data data{};
  const std::string hash = crypt_r("hunter2", salt, &data);
  EXPECT_TRUE(CheckPassword("hunter2", hash));
  EXPECT_FALSE(CheckPassword("hunter3", hash));
  EXPECT_FALSE(CheckPassword("hunter2", "not a hash"));
}

TEST(ParseWebConfig, ReadsUsersAndRefusesPlainPasswords) {
  const std::string hash = "$2y$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234";
  ASSERT_EQ(hash.size(), 60u);
  WebConfig c = ParseWebConfig("basic_auth_users:\n  alice: " + hash + "\n", "web.yml");
  EXPECT_EQ(c.basic_auth_users.at("alice"), hash);
  try {
    ParseWebConfig("basic_auth_users:\n  bob: password123\n", "web.yml");
    FAIL();
  } catch (const config::ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "web.yml:2:8: basic_auth_users.bob: expected a bcrypt hash ($2y$ and "
                 "56 more characters); plain passwords are not accepted");
  }
}

TEST(ParseWebConfig, TakesTheSecurityHeadersExporterToolkitAllowsAndNoOther) {
  WebConfig c = ParseWebConfig(
      "http_server_config:\n  headers:\n    x-frame-options: deny\n"
      "    Strict-Transport-Security: max-age=31536000\n",
      "web.yml");
  ASSERT_EQ(c.headers.size(), 2u);
  EXPECT_EQ(c.headers[0], (std::pair<std::string, std::string>{"X-Frame-Options", "deny"}));
  EXPECT_EQ(c.headers[1].first, "Strict-Transport-Security");
  try {
    ParseWebConfig("http_server_config:\n  headers:\n    Set-Cookie: a=b\n", "web.yml");
    FAIL();
  } catch (const config::ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "web.yml:3:17: http_server_config.headers.Set-Cookie: this header cannot be set; "
                 "allowed: Content-Security-Policy, Strict-Transport-Security, "
                 "X-Content-Type-Options, X-Frame-Options, X-XSS-Protection");
  }
  EXPECT_THROW(ParseWebConfig("http_server_config:\n  http2: true\n", "web.yml"),
               config::ConfigError);
}

TEST(Serialize, WritesHistogramsCumulatively) {
  auto family = Family("x_seconds", "Help.", prometheus::MetricType::Histogram);
  AddHistogram(family, {{"task", "a"}}, {0.1, 1}, {2, 0, 1}, 5.5);
  const std::string text = Serialize({family});
  EXPECT_NE(text.find("x_seconds_bucket{task=\"a\",le=\"0.1\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("x_seconds_bucket{task=\"a\",le=\"1\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("x_seconds_bucket{task=\"a\",le=\"+Inf\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("x_seconds_count{task=\"a\"} 3\n"), std::string::npos) << text;
}

TEST(ProcessMetrics, ReportsThisProcess) {
  Families families = ProcessMetrics();
  std::set<std::string> names;
  for (const auto& f : families) names.insert(f.name);
  for (const char* name : {"process_cpu_seconds_total", "process_resident_memory_bytes",
                           "process_virtual_memory_bytes", "process_start_time_seconds",
                           "process_open_fds", "process_max_fds"}) {
    EXPECT_TRUE(names.contains(name)) << name;
  }
}

TEST(ParseRequestHead, ReadsTheRequestLineHeadersAndWhatFollows) {
  const std::string raw =
      "GET /probe?target=db%201&x=a+b HTTP/1.1\r\nHost: h\r\nX-Prometheus-Scrape-Timeout-"
      "Seconds: 10\r\nAccept: a\r\nAccept: b\r\n\r\nGET /next";
  HeadParse p = ParseRequestHead(raw, 4096);
  ASSERT_EQ(p.status, HeadParse::Status::kComplete) << p.error;
  EXPECT_EQ(p.head.method, "GET");
  EXPECT_EQ(p.head.path, "/probe");
  EXPECT_EQ(p.head.minor_version, 1);
  EXPECT_TRUE(p.head.keep_alive);
  EXPECT_FALSE(p.head.has_body);
  EXPECT_EQ(p.head.headers.at("x-prometheus-scrape-timeout-seconds"), "10");
  EXPECT_EQ(p.head.headers.at("accept"), "a, b");
  EXPECT_EQ(raw.substr(p.length), "GET /next");
  auto query = ParseQuery(p.head.query);
  ASSERT_TRUE(query.has_value());
  EXPECT_EQ(query->at("target"), "db 1");
  EXPECT_EQ(query->at("x"), "a b");
  EXPECT_FALSE(ParseQuery("target=%zz").has_value());
  EXPECT_FALSE(ParseQuery("target=%2").has_value());
}

TEST(ParseRequestHead, WaitsForTheWholeHead) {
  for (const char* part : {"", "GET / HTTP/1.1", "GET / HTTP/1.1\r\nHost: x\r\n"}) {
    EXPECT_EQ(ParseRequestHead(part, 4096).status, HeadParse::Status::kIncomplete) << part;
  }
  EXPECT_EQ(ParseRequestHead("GET / HTTP/1.1\n\n", 4096).status, HeadParse::Status::kComplete)
      << "bare LF line ends are accepted";
}

TEST(ParseRequestHead, KnowsWhenTheConnectionStaysOpen) {
  EXPECT_FALSE(ParseRequestHead("GET / HTTP/1.0\r\n\r\n", 4096).head.keep_alive);
  EXPECT_TRUE(
      ParseRequestHead("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 4096).head.keep_alive);
  EXPECT_FALSE(
      ParseRequestHead("GET / HTTP/1.1\r\nConnection: te, close\r\n\r\n", 4096).head.keep_alive);
  EXPECT_TRUE(
      ParseRequestHead("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 4096).head.has_body);
  EXPECT_TRUE(ParseRequestHead("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 4096)
                  .head.has_body);
}

TEST(ParseRequestHead, RefusesMalformedHeads) {
  struct Case {
    std::string raw;
    int status;
  };
  const std::vector<Case> cases = {
      {"GET\r\n\r\n", 400},
      {"GET /  HTTP/1.1\r\n\r\n", 400},
      {"GET metrics HTTP/1.1\r\n\r\n", 400},
      {"G(T / HTTP/1.1\r\n\r\n", 400},
      {"GET / HTTP/2.0\r\n\r\n", 505},
      {"GET / FTP/1.1\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nNo colon\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nA: b\x01\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
      {"GET /" + std::string(5000, 'a') + " HTTP/1.1\r\n\r\n", 431},
      {"GET /" + std::string(5000, 'a'), 431},
  };
  for (const Case& c : cases) {
    HeadParse p = ParseRequestHead(c.raw, 4096);
    EXPECT_EQ(p.status, HeadParse::Status::kBad) << c.raw.substr(0, 60);
    EXPECT_EQ(p.error_status, c.status) << c.raw.substr(0, 60);
  }
  std::string many = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 101; ++i) many += "H" + std::to_string(i) + ": v\r\n";
  EXPECT_EQ(ParseRequestHead(many + "\r\n", 1 << 20).error_status, 431);
}

}  // namespace
}  // namespace pgjobs::http
