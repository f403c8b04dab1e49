#include "pgjobs/http/web_config.h"

namespace pgjobs::http {

WebConfig ParseWebConfig(const std::string& text, const std::string& file) {
  config::MapReader root = config::MapReader::Parse(text, file, nullptr);
  WebConfig out;
  if (root.Has("tls_server_config")) {
    root.Fail("tls_server_config",
              "TLS is not supported: terminate TLS in a proxy in front of the exporter (nginx, "
              "haproxy, stunnel) and keep the exporter on a loopback address");
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
  root.Finish();
  return out;
}

}  // namespace pgjobs::http
