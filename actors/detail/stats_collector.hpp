#pragma once

// Internal: per-message-type counters and latency histograms. Thread-safe.

#include "actors/executor.hpp"
#include "actors/latency_histogram.hpp"
#include "gilkeeper/interop/request.hpp"

#include <algorithm>
#include <array>
#include <deque>
#include <chrono>
#include <map>
#include <mutex>
#include <vector>

namespace gk::detail {

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
    std::lock_guard<std::mutex> g(m_);
    auto& t = types_[type];
    t.queue.add(queue_wait);
    t.run.add(run);
  }
  std::vector<TypeStats> snapshot() const {
    std::lock_guard<std::mutex> g(m_);
    std::vector<TypeStats> out;
    for (auto& [name, t] : types_) {
      TypeStats s = t.stats;
      s.type = name;
      s.queue_p50_us = t.queue.percentile_ms(0.50) * 1e3;
      s.queue_p99_us = t.queue.percentile_ms(0.99) * 1e3;
      s.run_p50_us = t.run.percentile_ms(0.50) * 1e3;
      s.run_p99_us = t.run.percentile_ms(0.99) * 1e3;
      out.push_back(std::move(s));
    }
    return out;
  }

private:
  struct PerType {
    TypeStats stats;
    LatencyHistogram queue, run;
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

/// The queue's last word on a job about to start, the same for both
/// executors: false when it must not run, because its caller was already
/// told at its deadline (counted here), or because its deadline passed while
/// it waited (then `expired` is the error to answer it with).
inline bool may_start(StatsCollector& stats, Job& job, StatsCollector::clock::time_point now, Error& expired) {
  if (job.slot && !job.slot->start()) {
    if (!job.slot->cancel_requested())
      stats.missed(job.type, DeadlinePhase::queued);
    stats.error(job.type);
    return false;
  }
  if (job.deadline.expired(now)) {
    stats.missed(job.type, DeadlinePhase::queued);
    expired = deadline_error(ReplySlot::queued, job.label);
    return false;
  }
  return true;
}

/// True when a queued job's caller was already answered (told at its
/// deadline, or cancelled): then it is counted as may_start would count it
/// and the queue drops it.
inline bool answered_while_queued(StatsCollector& stats, const Job& job) {
  if (!job.slot || job.slot->state() != ReplySlot::done)
    return false;
  if (!job.slot->cancel_requested())
    stats.missed(job.type, DeadlinePhase::queued);
  stats.error(job.type);
  return true;
}

/// Takes a job into an executor's queue, the same way for both executors:
/// counts it (a request with a caller), refuses it when the executor is
/// `stopping` or when `refusal(label)` (called under `m`, for requests with
/// a caller) returns an error, else stamps and queues it. True when queued:
/// the executor then wakes its thread.
template <class Refusal>
bool admit(StatsCollector& stats, std::mutex& m, const bool& stopping, std::deque<Job>& queue, Job&& job,
           Refusal&& refusal) {
  bool counted = job.slot != nullptr;
  if (counted)
    stats.received(job.type);
  Error reject;
  {
    std::lock_guard<std::mutex> lk(m);
    if (stopping)
      reject = Error(ErrorCode::runtime_stopped, job.label + ": the runtime is stopped");
    else if (counted)
      reject = refusal(job.label);
    if (!reject) {
      job.enqueued = StatsCollector::clock::now();
      queue.push_back(std::move(job));
      return true;
    }
  }
  refuse(stats, job, std::move(reject));
  return false;
}

} // namespace gk::detail
