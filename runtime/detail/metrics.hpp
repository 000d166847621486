#pragma once

// Internal: a runtime's counters, histograms and gauges in the Prometheus
// text exposition format 0.0.4 (what Runtime::metrics() returns). A
// function of a Stats value, so that it is testable without a runtime.

#include "gilkeeper/interop/request.hpp"

#include <string>

namespace gk::detail {

/// The `Content-Type` of the exposition, for an HTTP reply.
inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric of `stats` (see docs/metrics.md), each with its HELP and
/// TYPE lines; `version` is gilkeeper's, for `gilkeeper_info`. Thread-safe:
/// a pure function.
std::string metrics_text(const Stats& stats, const std::string& version);

/// `value` as a label value: backslash, double quote and newline escaped.
std::string escape_label_value(const std::string& value);

} // namespace gk::detail
