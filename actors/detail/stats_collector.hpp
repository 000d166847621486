#pragma once

// Internal: per-message-type counters and latency samples. Thread-safe.

#include "gilkeeper/actors/executor.hpp"
#include "gilkeeper/interop/request.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <map>
#include <mutex>
#include <vector>

namespace gk::detail {

/// The most recent samples of a latency, for percentiles.
class SampleRing {
public:
  void add(double us) {
    ring_[next_ % ring_.size()] = us;
    ++next_;
  }
  double percentile(double p) const {
    std::size_t n = std::min<std::size_t>(next_, ring_.size());
    if (n == 0)
      return 0;
    std::vector<double> v(ring_.begin(), ring_.begin() + static_cast<long>(n));
    auto k = static_cast<std::size_t>(p * static_cast<double>(n - 1) + 0.5);
    std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
    return v[k];
  }

private:
  std::array<double, 2048> ring_{};
  std::size_t next_ = 0;
};

class StatsCollector {
public:
  using clock = std::chrono::steady_clock;

  /// A request arrived.
  void received(const std::string& type) {
    std::lock_guard<std::mutex> g(m_);
    types_[type].stats.calls++;
  }
  void missed(const std::string& type, DeadlinePhase phase) {
    std::lock_guard<std::mutex> g(m_);
    auto& t = types_[type].stats;
    if (phase == DeadlinePhase::queued)
      t.missed_queued++;
    else if (phase == DeadlinePhase::soft)
      t.missed_soft++;
    else if (phase == DeadlinePhase::hard)
      t.missed_hard++;
  }
  void error(const std::string& type) {
    std::lock_guard<std::mutex> g(m_);
    types_[type].stats.errors++;
  }
  void timing(const std::string& type, clock::duration queue_wait, clock::duration run) {
    auto us = [](clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); };
    std::lock_guard<std::mutex> g(m_);
    auto& t = types_[type];
    t.queue.add(us(queue_wait));
    t.run.add(us(run));
  }
  std::vector<TypeStats> snapshot() const {
    std::lock_guard<std::mutex> g(m_);
    std::vector<TypeStats> out;
    for (auto& [name, t] : types_) {
      TypeStats s = t.stats;
      s.type = name;
      s.queue_p50_us = t.queue.percentile(0.50);
      s.queue_p99_us = t.queue.percentile(0.99);
      s.run_p50_us = t.run.percentile(0.50);
      s.run_p99_us = t.run.percentile(0.99);
      out.push_back(std::move(s));
    }
    return out;
  }

private:
  struct PerType {
    TypeStats stats;
    SampleRing queue, run;
  };
  mutable std::mutex m_;
  std::map<std::string, PerType> types_;
};

/// Answers a job that will not run (stopped, wedged, degraded): counts the
/// error and completes its slot, if it has one.
inline void refuse(StatsCollector& stats, Job& job, Error error) {
  if (!job.slot)
    return;
  stats.error(job.type);
  job.slot->complete(Expected<Value>(std::move(error)));
}

} // namespace gk::detail
