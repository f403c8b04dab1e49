// SPDX-License-Identifier: Apache-2.0
#include "pgjobs/http/web_config.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <filesystem>

#include "pgjobs/config/command_line.h"
#include "tls_context.h"

namespace pgjobs::http {

WebConfig ParseWebConfig(const std::string& text, const std::string& file) {
  config::MapReader root = config::MapReader::Parse(text, file, nullptr);
  WebConfig out;
  if (auto tls = root.Map("tls_server_config")) {
    const std::string folder = std::filesystem::path(file).parent_path().string();
    auto path = [&](const std::string& key) -> std::string {
      std::string value = tls->String(key).value_or("");
      if (value.empty() || value.starts_with("/") || folder.empty()) return value;
      return folder + "/" + value;
    };
    TlsConfig t;
    t.cert_file = path("cert_file");
    t.key_file = path("key_file");
    t.client_ca_file = path("client_ca_file");
    t.client_auth_type = tls->String("client_auth_type").value_or(t.client_auth_type);
    t.min_version = tls->String("min_version").value_or(t.min_version);
    if (t.cert_file.empty()) tls->FailHere("cert_file is required");
    if (t.key_file.empty()) tls->FailHere("key_file is required");
    tls->Finish();
    out.tls = t;
  }
  if (auto users = root.Map("basic_auth_users")) {
    for (const std::string& user : users->Keys()) {
      const std::string hash = users->String(user).value_or("");
      const bool bcrypt =
          hash.size() == 60 &&
          (hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$"));
      // The value is not echoed: it may be a password written where its hash belongs.
      if (!bcrypt) {
        users->Fail(user,
                    "expected a bcrypt hash ($2y$ and 56 more characters); plain "
                    "passwords are not accepted");
      }
      out.basic_auth_users[user] = hash;
    }
  }
  if (auto server = root.Map("http_server_config")) {
    static const std::array<std::string, 5> kAllowed{
        "Content-Security-Policy", "Strict-Transport-Security", "X-Content-Type-Options",
        "X-Frame-Options", "X-XSS-Protection"};
    if (auto headers = server->Map("headers")) {
      for (const std::string& name : headers->Keys()) {
        auto allowed = std::find_if(kAllowed.begin(), kAllowed.end(), [&](const std::string& a) {
          return std::equal(a.begin(), a.end(), name.begin(), name.end(), [](char x, char y) {
            return std::tolower(static_cast<unsigned char>(x)) ==
                   std::tolower(static_cast<unsigned char>(y));
          });
        });
        if (allowed == kAllowed.end()) {
          headers->Fail(name,
                        "this header cannot be set; allowed: Content-Security-Policy, "
                        "Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, "
                        "X-XSS-Protection");
        }
        const std::string value = headers->String(name).value_or("");
        if (value.find_first_of("\r\n") != std::string::npos) {
          headers->Fail(name, "a header value cannot hold a line break");
        }
        out.headers.emplace_back(*allowed, value);
      }
    }
    server->Finish();
  }
  root.Finish();
  return out;
}

WebConfig LoadWebConfig(const std::string& file) {
  if (file.empty()) return {};
  WebConfig web = ParseWebConfig(config::ReadConfigFile(file), file);
  if (web.tls) {
    try {
      MakeTlsContext(*web.tls);
    } catch (const Error& e) {
      throw Error(file + ": " + e.what());
    }
  }
  return web;
}

}  // namespace pgjobs::http
