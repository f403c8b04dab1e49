// SPDX-License-Identifier: Apache-2.0
// jobs-migrate: installs or upgrades the jobs schema in a database.
#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>

#include "pgjobs/build_info.h"
#include "pgjobs/db/connection.h"
#include "pgjobs/db/dsn.h"
#include "pgjobs/migrate/migrator.h"

namespace {

constexpr const char* kUsage =
    "usage: jobs-migrate [--status] [--target VERSION] [DSN]\n"
    "\n"
    "Installs or upgrades the jobs schema. DSN is a postgresql:// URI or libpq connection\n"
    "string; without it, the environment variable PGJOBS_DSN is used.\n"
    "\n"
    "  --status           list applied and pending versions, change nothing\n"
    "  --target VERSION   upgrade no further than VERSION\n"
    "  --version          print the version and the newest schema version, then exit\n"
    "  -h, --help         show this help\n";

struct Options {
  bool status = false;
  std::optional<int> target;
  std::string dsn;
};

// Parses argv; returns std::nullopt after printing the reason when the arguments are wrong, and
// exits for --help and --version.
std::optional<Options> Parse(int argc, char** argv) {
  Options options;
  bool have_dsn = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else if (arg == "--version") {
      const auto& migrations = pgjobs::migrate::BundledMigrations();
      std::cout << "jobs-migrate " << pgjobs::BuildVersion() << " (revision "
                << pgjobs::BuildRevision() << ", schema version "
                << (migrations.empty() ? 0 : migrations.back().version) << ")\n";
      std::exit(0);
    } else if (arg == "--status") {
      options.status = true;
    } else if (arg == "--target" || arg.starts_with("--target=")) {
      std::string value;
      if (arg == "--target") {
        if (i + 1 >= argc) {
          std::cerr << "jobs-migrate: --target needs a version number\n";
          return std::nullopt;
        }
        value = argv[++i];
      } else {
        value = std::string(arg.substr(9));
      }
      char* end = nullptr;
      const long version = std::strtol(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || version < 1) {
        std::cerr << "jobs-migrate: --target: expected a version number of 1 or more, got '"
                  << value << "'\n";
        return std::nullopt;
      }
      options.target = static_cast<int>(version);
    } else if (arg.starts_with("-")) {
      std::cerr << "jobs-migrate: unknown option '" << arg << "'\n" << kUsage;
      return std::nullopt;
    } else if (have_dsn) {
      std::cerr << "jobs-migrate: expected one DSN, got a second argument '"
                << pgjobs::db::RedactDsn(arg) << "'\n";
      return std::nullopt;
    } else {
      options.dsn = arg;
      have_dsn = true;
    }
  }
  if (!have_dsn) {
    const char* env = std::getenv("PGJOBS_DSN");
    if (env == nullptr || *env == '\0') {
      std::cerr << "jobs-migrate: no database given: pass a DSN "
                   "(postgresql://user:password@host:5432/db) or set PGJOBS_DSN\n";
      return std::nullopt;
    }
    options.dsn = env;
  }
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  const std::optional<Options> options = Parse(argc, argv);
  if (!options) return 2;
  const auto& migrations = pgjobs::migrate::BundledMigrations();
  try {
    pgjobs::db::Connection conn(
        pgjobs::db::ConnectOptions{.dsn = options->dsn, .application_name = "jobs-migrate"});
    if (options->status) {
      for (const auto& v : pgjobs::migrate::Status(conn, migrations)) {
        std::cout << v.version << "\t" << v.name << "\t"
                  << (v.applied_at ? "applied " + *v.applied_at : std::string("pending")) << "\n";
      }
      return 0;
    }
    const std::vector<int> applied = pgjobs::migrate::Apply(conn, migrations, options->target);
    if (applied.empty()) {
      std::cout << "jobs-migrate: schema is up to date\n";
    }
    for (const auto& m : migrations) {
      if (std::find(applied.begin(), applied.end(), m.version) != applied.end()) {
        std::cout << "jobs-migrate: applied migration " << m.version << " (" << m.name << ")\n";
      }
    }
    return 0;
  } catch (const pgjobs::Error& e) {
    std::cerr << "jobs-migrate: " << e.what() << "\n";
    return 1;
  }
}
