// SPDX-License-Identifier: Apache-2.0
#include "pgjobs/http/metrics.h"

#include <dirent.h>
#include <prometheus/text_serializer.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <limits>
#include <sstream>

namespace pgjobs::http {

prometheus::MetricFamily Family(const std::string& name, const std::string& help,
                                prometheus::MetricType type) {
  prometheus::MetricFamily family;
  family.name = name;
  family.help = help;
  family.type = type;
  return family;
}

namespace {

prometheus::ClientMetric Metric(const Labels& labels) {
  prometheus::ClientMetric metric;
  for (const auto& [name, value] : labels) metric.label.push_back({name, value});
  return metric;
}

}  // namespace

void AddSample(prometheus::MetricFamily& family, const Labels& labels, double value) {
  prometheus::ClientMetric metric = Metric(labels);
  switch (family.type) {
    case prometheus::MetricType::Counter:
      metric.counter.value = value;
      break;
    case prometheus::MetricType::Gauge:
      metric.gauge.value = value;
      break;
    default:
      metric.untyped.value = value;
  }
  family.metric.push_back(std::move(metric));
}

void AddHistogram(prometheus::MetricFamily& family, const Labels& labels,
                  const std::vector<double>& bounds, const std::vector<std::uint64_t>& counts,
                  double sum) {
  prometheus::ClientMetric metric = Metric(labels);
  std::uint64_t cumulative = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    cumulative += counts[i];
    prometheus::ClientMetric::Bucket bucket;
    bucket.cumulative_count = cumulative;
    bucket.upper_bound = i < bounds.size() ? bounds[i] : std::numeric_limits<double>::infinity();
    metric.histogram.bucket.push_back(bucket);
  }
  metric.histogram.sample_count = cumulative;
  metric.histogram.sample_sum = sum;
  family.metric.push_back(std::move(metric));
}

std::string Serialize(const Families& families) {
  return prometheus::TextSerializer().Serialize(families);
}

Families ProcessMetrics() {
  Families out;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  std::ifstream stat_file("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  // Fields after the parenthesised command name, which may itself contain spaces.
  const size_t close = stat.rfind(')');
  if (close != std::string::npos) {
    std::istringstream fields(stat.substr(close + 2));
    std::vector<std::string> f;
    for (std::string s; fields >> s;) f.push_back(s);
    // f[0] is field 3 (state): utime=14, stime=15, starttime=22, vsize=23, rss=24.
    if (f.size() > 21) {
      auto field = [&](int n) { return std::stod(f[static_cast<size_t>(n - 3)]); };
      auto cpu = Family("process_cpu_seconds_total",
                        "Total user and system CPU time spent in "
                        "seconds.",
                        prometheus::MetricType::Counter);
      AddSample(cpu, {}, (field(14) + field(15)) / ticks);
      out.push_back(std::move(cpu));
      auto vsize = Family("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                          prometheus::MetricType::Gauge);
      AddSample(vsize, {}, field(23));
      out.push_back(std::move(vsize));
      auto rss = Family("process_resident_memory_bytes", "Resident memory size in bytes.",
                        prometheus::MetricType::Gauge);
      AddSample(rss, {}, field(24) * page);
      out.push_back(std::move(rss));
      std::ifstream uptime_file("/proc/stat");
      double boot_time = 0;
      for (std::string line; std::getline(uptime_file, line);) {
        if (line.starts_with("btime ")) boot_time = std::stod(line.substr(6));
      }
      auto start = Family("process_start_time_seconds",
                          "Start time of the process since unix epoch in seconds.",
                          prometheus::MetricType::Gauge);
      AddSample(start, {}, boot_time + field(22) / ticks);
      out.push_back(std::move(start));
    }
  }
  if (DIR* dir = opendir("/proc/self/fd")) {
    double open = 0;
    while (readdir(dir) != nullptr) ++open;
    closedir(dir);
    auto fds = Family("process_open_fds", "Number of open file descriptors.",
                      prometheus::MetricType::Gauge);
    AddSample(fds, {}, open - 3);  // ".", ".." and the directory's own descriptor
    out.push_back(std::move(fds));
  }
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    auto max = Family("process_max_fds", "Maximum number of open file descriptors.",
                      prometheus::MetricType::Gauge);
    AddSample(max, {}, static_cast<double>(limit.rlim_cur));
    out.push_back(std::move(max));
  }
  return out;
}

}  // namespace pgjobs::http
