#include <crypt.h>
#include <gtest/gtest.h>

#include "pgjobs/http/metrics.h"
#include "pgjobs/http/server.h"
#include "pgjobs/http/web_config.h"

namespace pgjobs::http {
namespace {

TEST(NormalizeListenAddress, AcceptsWhatPrometheusUsersWrite) {
  EXPECT_EQ(NormalizeListenAddress(":9467"), "0.0.0.0:9467");
  EXPECT_EQ(NormalizeListenAddress("127.0.0.1:0"), "127.0.0.1:0");
  EXPECT_EQ(NormalizeListenAddress("localhost:80"), "127.0.0.1:80");
}

TEST(NormalizeListenAddress, RefusesBadPortsAndIpv6) {
  auto message = [](const char* address) {
    try {
      NormalizeListenAddress(address);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_EQ(message("9467"), "listen address '9467': expected HOST:PORT or :PORT");
  EXPECT_EQ(message(":99999"),
            "listen address ':99999': expected a port from 0 to 65535, got '99999'");
  EXPECT_EQ(message("[::]:9467"),
            "listen address '[::]:9467': IPv6 is not supported; listen on "
            "an IPv4 address such as 0.0.0.0:PORT");
}

TEST(ParseBasicAuth, DecodesUserAndPassword) {
  EXPECT_EQ(ParseBasicAuth("Basic dXNlcjpwYTpzcw=="),
            std::make_pair(std::string("user"), std::string("pa:ss")));
  EXPECT_FALSE(ParseBasicAuth("Bearer abc").has_value());
  EXPECT_FALSE(ParseBasicAuth("Basic bm9jb2xvbg==").has_value());  // "nocolon"
  EXPECT_FALSE(ParseBasicAuth("Basic ###").has_value());
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

}  // namespace
}  // namespace pgjobs::http
