// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <prometheus/metric_family.h>

#include <string>
#include <utility>
#include <vector>

namespace pgjobs::http {

using Labels = std::vector<std::pair<std::string, std::string>>;
using Families = std::vector<prometheus::MetricFamily>;

/// A new, empty family.
prometheus::MetricFamily Family(const std::string& name, const std::string& help,
                                prometheus::MetricType type);
/// Adds one sample to a gauge, counter or untyped family.
void AddSample(prometheus::MetricFamily& family, const Labels& labels, double value);
/// Adds one histogram: `bounds` ascending (no +Inf), `counts` per bucket, not cumulative, with
/// counts.size() == bounds.size() + 1 (the last is +Inf).
void AddHistogram(prometheus::MetricFamily& family, const Labels& labels,
                  const std::vector<double>& bounds, const std::vector<std::uint64_t>& counts,
                  double sum);

/// The text exposition format (version 0.0.4) of `families`.
std::string Serialize(const Families& families);
inline constexpr const char* kExpositionContentType = "text/plain; version=0.0.4; charset=utf-8";

/// The standard process_* metrics of this process, read from /proc/self: CPU seconds, resident
/// and virtual memory, open and maximum file descriptors, start time. Families whose source
/// cannot be read are left out.
Families ProcessMetrics();

}  // namespace pgjobs::http
