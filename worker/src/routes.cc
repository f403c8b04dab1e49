// SPDX-License-Identifier: Apache-2.0
#include "routes.h"

namespace pgjobs::worker {

std::map<std::string, http::Handler> Routes(const WorkerMetrics& metrics, const Status& status,
                                            const Shutdown& shutdown,
                                            const std::string& metrics_path) {
  std::map<std::string, http::Handler> routes;
  std::string links;
  if (!metrics_path.empty()) {
    routes[metrics_path] = [&metrics](const http::Request&) {
      return http::Response(200, http::kExpositionContentType, http::Serialize(metrics.Collect()));
    };
    links = "<li><a href=\"" + metrics_path + "\">" + metrics_path + "</a></li>";
  }
  routes["/"] = [links](const http::Request&) {
    return http::Response(200, "text/html; charset=utf-8",
                          "<!DOCTYPE html><html><head><title>pgjobs worker</title></head><body>"
                          "<h1>pgjobs worker</h1><ul>" +
                              links +
                              "<li><a href=\"/-/healthy\">/-/healthy</a></li><li><a "
                              "href=\"/-/ready\">/-/ready</a></li></ul></body></html>\n");
  };
  routes["/-/healthy"] = [](const http::Request&) {
    return http::Response(200, "text/plain; charset=utf-8", "Healthy\n");
  };
  routes["/-/ready"] = [&status, &shutdown](const http::Request&) {
    if (status.database_up && !shutdown.Stopping()) {
      return http::Response(200, "text/plain; charset=utf-8", "Ready\n");
    }
    return http::Response(503, "text/plain; charset=utf-8",
                          shutdown.Stopping() ? "Stopping\n" : "Database unreachable\n");
  };
  return routes;
}

}  // namespace pgjobs::worker
