#pragma once

// LatencyHistogram: streaming latency percentiles in constant memory.
//
// Durations fall into logarithmic buckets 2% wide, so a percentile is exact
// to within 2% (and exact for the smallest and largest sample), whatever the
// number of samples. Not thread-safe: one owner.

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>

namespace gk {

class LatencyHistogram {
public:
  /// Records one duration.
  void add(std::chrono::nanoseconds d) {
    double ns = std::max<double>(1.0, static_cast<double>(d.count()));
    auto index = static_cast<std::size_t>(std::log(ns) / kLogGrowth);
    ++buckets_[std::min(index, kBuckets - 1)];
    if (count_ == 0 || ns < min_ns_)
      min_ns_ = ns;
    if (count_ == 0 || ns > max_ns_)
      max_ns_ = ns;
    ++count_;
  }

  std::uint64_t count() const noexcept { return count_; }

  /// The q-quantile (0 < q <= 1, nearest rank) in milliseconds; 0 when empty.
  double percentile_ms(double q) const {
    if (count_ == 0)
      return 0.0;
    auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count_)));
    rank = std::clamp<std::uint64_t>(rank, 1, count_);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
      seen += buckets_[i];
      if (seen >= rank) {
        // The bucket's geometric middle, kept within what was observed.
        double mid = std::exp((static_cast<double>(i) + 0.5) * kLogGrowth);
        return std::clamp(mid, min_ns_, max_ns_) / 1e6;
      }
    }
    return max_ns_ / 1e6;
  }

private:
  // ln(1.02): 2% wide buckets; 1500 of them reach past 10^12 ns (~17 min).
  static constexpr double kLogGrowth = 0.0198026272961797;
  static constexpr std::size_t kBuckets = 1500;
  std::array<std::uint64_t, kBuckets> buckets_{};
  std::uint64_t count_ = 0;
  double min_ns_ = 0;
  double max_ns_ = 0;
};

} // namespace gk
