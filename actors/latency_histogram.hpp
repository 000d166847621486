#pragma once

// LatencyHistogram: streaming latency percentiles in constant memory.
//
// Durations fall into logarithmic buckets 2% wide, so a percentile is exact
// to within 2% (and exact for the smallest and largest sample), whatever the
// number of samples. It also gives the coarse cumulative buckets Prometheus
// exposes (kExportBounds), read from the same buckets. Not thread-safe: one
// owner.

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <vector>

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
    sum_ns_ += ns;
  }

  std::uint64_t count() const noexcept { return count_; }
  /// The sum of every duration, in seconds.
  double sum_seconds() const noexcept { return sum_ns_ / 1e9; }

  /// The upper bounds (seconds) of the buckets Prometheus exposes.
  static constexpr std::array<double, 23> kExportBounds = {
      5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025,
      0.05, 0.1,  0.25,   0.5,  1,    2.5,    5,    10,   30,     60,   300};

  /// The durations at or below each of kExportBounds, cumulative. A 2%-wide
  /// bucket counts toward a bound when its geometric middle (kept within
  /// what was observed, as for percentiles) is at or below the bound, so a
  /// duration within 2% of a bound may count on either side of it.
  std::vector<std::uint64_t> cumulative() const {
    std::vector<std::uint64_t> out(kExportBounds.size(), 0);
    if (count_ == 0)
      return out;
    for (std::size_t i = 0; i < kBuckets; ++i) {
      if (buckets_[i] == 0)
        continue;
      double mid = std::clamp(std::exp((static_cast<double>(i) + 0.5) * kLogGrowth), min_ns_, max_ns_) / 1e9;
      auto first = std::lower_bound(kExportBounds.begin(), kExportBounds.end(), mid);
      for (auto b = first; b != kExportBounds.end(); ++b)
        out[static_cast<std::size_t>(b - kExportBounds.begin())] += buckets_[i];
    }
    return out;
  }

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
  double sum_ns_ = 0;
};

} // namespace gk
