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

/// "A reply after the deadline is a deadline miss, whatever it holds": the
/// one place the rule lives, for both executors. A batch keeps its results
/// (each late call was marked where it ran).
inline void mark_late(StatsCollector& stats, const Job& job, AnyReply& reply) {
  auto* v = std::get_if<Expected<Value>>(&reply);
  if (!v)
    return;
  stats.missed(job.type, DeadlinePhase::soft);
  if (v->has_value() || v->error().code != ErrorCode::deadline_exceeded) {
    Error e = deadline_error(ReplySlot::running, job.label);
    if (!v->has_value())
      e.message += " (it then failed: " + v->error().to_string() + ")";
    *v = std::move(e);
  }
}

/// Delivers a job's reply (counting an error reply), if it has a slot.
inline void reply_to(StatsCollector& stats, Job& job, AnyReply&& reply) {
  if (!job.slot)
    return;
  auto* v = std::get_if<Expected<Value>>(&reply);
  if (v && !v->has_value())
    stats.error(job.type);
  job.slot->complete(std::move(reply));
}

/// Answers a job that will not run (stopped, wedged, degraded): counts the
/// error and completes its slot, if it has one.
inline void refuse(StatsCollector& stats, Job& job, Error error) {
  reply_to(stats, job, Expected<Value>(std::move(error)));
}

} // namespace gk::detail
