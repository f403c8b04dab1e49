// SPDX-License-Identifier: Apache-2.0
// jobs-exporter: serves the queue's statistics to Prometheus.
#include <signal.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "pgjobs/build_info.h"
#include "pgjobs/config/command_line.h"
#include "pgjobs/db/connection.h"
#include "pgjobs/db/dsn.h"
#include "pgjobs/exporter/config.h"
#include "pgjobs/exporter/exporter.h"
#include "pgjobs/exporter/probes.h"
#include "pgjobs/http/server.h"
#include "pgjobs/http/web_config.h"
#include "pgjobs/http/web_flags.h"
#include "pgjobs/log/logger.h"

namespace {

using pgjobs::exporter::ExporterConfig;

constexpr const char* kUsage =
    "usage: jobs-exporter [flags]\n"
    "\n"
    "Serves the statistics of a pgjobs queue to Prometheus. With no configuration file it reads\n"
    "the database from PGJOBS_DSN and listens on :9467.\n"
    "\n"
    "  --config.file=FILE          YAML configuration (see config/exporter.example.yaml)\n"
    "  --config.check              validate the configuration and exit\n"
    "  --log.level=LEVEL           debug, info, warn or error (default info)\n"
    "  --log.format=FORMAT         logfmt or json (default logfmt)\n"
    "  --version                   print the version and exit\n";

constexpr const char* kSignalsUsage =
    "The default listen address is :9467.\n"
    "\n"
    "SIGHUP reloads the configuration file and the web configuration file, keeping the old\n"
    "ones if a new one is invalid.\n";

struct Flags {
  std::string config_file;
  bool config_check = false;
  pgjobs::http::WebFlags web;
  std::string log_level = "info";
  std::string log_format = "logfmt";
};

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage << pgjobs::http::kWebFlagsUsage << kSignalsUsage;
      std::exit(0);
    } else if (arg == "--version") {
      std::cout << "jobs-exporter " << pgjobs::BuildVersion() << " (revision "
                << pgjobs::BuildRevision() << ")\n";
      std::exit(0);
    } else if (arg == "--config.check") {
      f.config_check = true;
    } else if (pgjobs::config::TakeFlagValue(argc, argv, i, "--config.file", f.config_file) ||
               pgjobs::http::TakeWebFlag(argc, argv, i, f.web) ||
               pgjobs::config::TakeFlagValue(argc, argv, i, "--log.level", f.log_level) ||
               pgjobs::config::TakeFlagValue(argc, argv, i, "--log.format", f.log_format)) {
    } else {
      throw pgjobs::Error("unknown flag '" + arg + "' (see --help)");
    }
  }
  return f;
}

// The configuration from the file (if any), then flags, then PGJOBS_DSN for a missing DSN.
ExporterConfig LoadConfig(const Flags& flags) {
  ExporterConfig config;
  if (!flags.config_file.empty()) {
    config =
        pgjobs::exporter::ParseExporterConfig(pgjobs::config::ReadConfigFile(flags.config_file),
                                              flags.config_file, pgjobs::config::ProcessEnv);
  }
  pgjobs::http::CheckWebFlags(flags.web);
  if (!flags.web.listen_addresses.empty()) config.listen_addresses = flags.web.listen_addresses;
  if (!flags.web.telemetry_path.empty()) config.telemetry_path = flags.web.telemetry_path;
  if (config.telemetry_path == pgjobs::exporter::kProbePath) {
    throw pgjobs::Error("--web.telemetry-path=" + config.telemetry_path +
                        ": that path serves targets: choose another");
  }
  if (config.dsn.empty()) config.dsn = pgjobs::config::ProcessEnv("PGJOBS_DSN").value_or("");
  if (config.dsn.empty()) {
    throw pgjobs::Error("no database given: set database.dsn in --config.file or PGJOBS_DSN");
  }
  // A malformed DSN never heals: refuse it here, not as pgjobs_up 0 on every scrape.
  pgjobs::db::CheckDsn(config.dsn);
  return config;
}

std::string LandingPage(const std::string& metrics_path) {
  return "<!DOCTYPE html><html><head><title>pgjobs exporter</title></head><body>"
         "<h1>pgjobs exporter</h1><p>Statistics of a PostgreSQL job queue for Prometheus.</p>"
         "<ul><li><a href=\"" +
         metrics_path + "\">" + metrics_path +
         "</a></li><li>/probe?target=NAME (a database under targets:)</li>"
         "<li><a href=\"/-/healthy\">/-/healthy</a></li>"
         "<li><a href=\"/-/ready\">/-/ready</a></li></ul><p>Version " +
         std::string(pgjobs::BuildVersion()) + ", revision " + pgjobs::BuildRevision() +
         "</p></body></html>\n";
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  ExporterConfig config;
  pgjobs::http::WebConfig web;
  try {
    flags = ParseFlags(argc, argv);
    pgjobs::log::ParseLevel(flags.log_level);
    pgjobs::log::ParseFormat(flags.log_format);
    config = LoadConfig(flags);
    web = pgjobs::http::LoadWebConfig(flags.web.config_file);
  } catch (const pgjobs::Error& e) {
    std::cerr << "jobs-exporter: " << e.what() << "\n";
    return 2;
  }
  if (flags.config_check) {
    std::cout << "jobs-exporter: configuration is valid\n";
    return 0;
  }
  pgjobs::log::Logger logger(pgjobs::log::ParseLevel(flags.log_level),
                             pgjobs::log::ParseFormat(flags.log_format), std::cerr);

  // Signals are taken by sigwait below; block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  pgjobs::exporter::Exporter exporter(config, pgjobs::BuildVersion(), logger);
  const std::string metrics_path = config.telemetry_path;
  std::map<std::string, pgjobs::http::Handler> routes;
  routes[metrics_path] = [&exporter](const pgjobs::http::Request& request) {
    const auto now = std::chrono::steady_clock::now();
    const auto header = request.headers.find("x-prometheus-scrape-timeout-seconds");
    const auto families = exporter.Scrape(
        now + pgjobs::exporter::ScrapeBudget(
                  header == request.headers.end() ? nullptr : &header->second, exporter.Config()));
    return pgjobs::http::Response{200, pgjobs::http::kExpositionContentType,
                                  pgjobs::http::Serialize(families)};
  };
  pgjobs::exporter::Probes probes(config, pgjobs::BuildVersion(), logger);
  routes[pgjobs::exporter::kProbePath] = [&probes](const pgjobs::http::Request& request) {
    return probes.Handle(request);
  };
  routes["/"] = [metrics_path](const pgjobs::http::Request&) {
    return pgjobs::http::Response{200, "text/html; charset=utf-8", LandingPage(metrics_path)};
  };
  routes["/-/healthy"] = [](const pgjobs::http::Request&) {
    return pgjobs::http::Response{200, "text/plain; charset=utf-8", "Healthy\n"};
  };
  // Ready as soon as it serves: a database outage shows as pgjobs_up 0, not as a lost target.
  routes["/-/ready"] = [](const pgjobs::http::Request&) {
    return pgjobs::http::Response{200, "text/plain; charset=utf-8", "Ready\n"};
  };

  std::unique_ptr<pgjobs::http::Server> server;
  try {
    pgjobs::http::ServerOptions server_options;
    server_options.listen_addresses = config.listen_addresses;
    server_options.basic_auth_users = web.basic_auth_users;
    server_options.response_headers = web.headers;
    server_options.tls = web.tls;
    server = std::make_unique<pgjobs::http::Server>(server_options, routes);
  } catch (const pgjobs::Error& e) {
    logger.Error("cannot start the HTTP server", {{"err", e.what()}});
    return 1;
  }
  std::string ports;
  for (int port : server->Ports()) ports += (ports.empty() ? "" : ",") + std::to_string(port);
  logger.Info("listening", {{"addresses",
                             [&] {
                               std::string s;
                               for (const auto& a : config.listen_addresses) {
                                 s += (s.empty() ? "" : ",") + a;
                               }
                               return s;
                             }()},
                            {"ports", ports},
                            {"metrics_path", metrics_path},
                            {"dsn", pgjobs::db::RedactDsn(config.dsn)},
                            {"basic_auth", web.basic_auth_users.empty() ? "off" : "on"}});

  for (;;) {
    int signal_number = 0;
    sigwait(&signals, &signal_number);
    if (signal_number != SIGHUP) {
      logger.Info("shutting down", {{"signal", strsignal(signal_number)}});
      break;
    }
    try {
      web = pgjobs::http::LoadWebConfig(flags.web.config_file);
      server->SetAccess(web.basic_auth_users, web.headers, web.tls);
      if (!flags.web.config_file.empty()) {
        logger.Info("web configuration reloaded", {{"file", flags.web.config_file}});
      }
    } catch (const pgjobs::Error& e) {
      logger.Error("web configuration reload failed; keeping the previous one",
                   {{"err", e.what()}});
    }
    if (flags.config_file.empty()) continue;
    try {
      ExporterConfig next = LoadConfig(flags);
      if (next.listen_addresses != config.listen_addresses ||
          next.telemetry_path != config.telemetry_path) {
        logger.Warn("listen addresses and telemetry path change only on restart");
      }
      probes.Reconfigure(next);
      exporter.Reconfigure(std::move(next));
      logger.Info("configuration reloaded", {{"file", flags.config_file}});
    } catch (const pgjobs::Error& e) {
      logger.Error("configuration reload failed; keeping the previous one", {{"err", e.what()}});
    }
  }
  server.reset();
  return 0;
}
