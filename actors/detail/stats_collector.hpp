#pragma once

// Internal: per-message-type counters and latency histograms, and the
// counting of replies by target and outcome (into the executor's
// TargetTable, through each job's TargetTally). Thread-safe.

#include "actors/executor.hpp"
#include "actors/latency_histogram.hpp"
#include "gilkeeper/interop/request.hpp"

#include <algorithm>
#include <array>
#include <deque>
#include <chrono>
#include <map>
#include <mutex>
#include <string_view>
#include <vector>

namespace gk::detail {

class StatsCollector {
public:
  using clock = std::chrono::steady_clock;

  /// A request with a caller arrived.
  void received(const Job& job) {
    std::lock_guard<std::mutex> g(m_);
    types_[job.type].stats.calls++;
    if (!table_)
      table_ = job.targets.table();
  }
  /// A call ran past the slow-call threshold: counts it for `target` ("m:f",
  /// "<Box>.add", as `where_of` names it) and in the total. The counters
  /// are the executor's TargetTable, which this collector learns from the
  /// first request it receives: before that, a no-op.
  void slow(const std::string& target) {
    TargetTable* table;
    {
      std::lock_guard<std::mutex> g(m_);
      table = table_;
    }
    if (table)
      table->slow(target);
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
      s.queue_histogram = buckets_of(t.queue);
      s.run_histogram = buckets_of(t.run);
      out.push_back(std::move(s));
    }
    return out;
  }

private:
  static LatencyBuckets buckets_of(const LatencyHistogram& h) {
    LatencyBuckets b;
    b.le_seconds.assign(LatencyHistogram::kExportBounds.begin(), LatencyHistogram::kExportBounds.end());
    b.cumulative = h.cumulative();
    b.sum_seconds = h.sum_seconds();
    b.count = h.count();
    return b;
  }

  struct PerType {
    TypeStats stats;
    LatencyHistogram queue, run;
  };
  mutable std::mutex m_;
  std::map<std::string, PerType> types_;
  // The executor's (see slow()); it outlives this collector, a member of
  // the executor's derived class.
  TargetTable* table_ = nullptr;
};

/// Counts one reply with `outcome` for every call of a job (one in all for
/// a request that is not a batch). No lock: relaxed atomic adds.
inline void count_outcome(const TargetTally& t, std::size_t outcome) {
  if (t.one) {
    t.one->outcomes[outcome].fetch_add(1, std::memory_order_relaxed);
  } else if (auto* b = t.batch.get()) {
    if (b->all)
      b->all->outcomes[outcome].fetch_add(b->calls, std::memory_order_relaxed);
    else
      for (auto* c : b->each)
        c->outcomes[outcome].fetch_add(1, std::memory_order_relaxed);
  }
}

/// Counts a job's reply by target and outcome: each call of a batch under
/// its own target. No lock: relaxed atomic adds.
inline void count_reply(const Job& job, const AnyReply& reply) {
  const TargetTally& t = job.targets;
  if (auto* v = std::get_if<Expected<Value>>(&reply)) {
    count_outcome(t, v->has_value() ? 0 : outcome_index(v->error().code));
    return;
  }
  auto* b = t.batch.get();
  if (!b)
    return;
  auto& results = std::get<BatchReply>(reply).results;
  if (b->all) {
    // One add per outcome, not per call.
    std::array<std::uint64_t, kOutcomes> n{};
    for (auto& r : results)
      ++n[r.has_value() ? 0 : outcome_index(r.error().code)];
    for (std::size_t i = 0; i < kOutcomes; ++i)
      if (n[i] > 0)
        b->all->outcomes[i].fetch_add(n[i], std::memory_order_relaxed);
    return;
  }
  for (std::size_t i = 0; i < results.size() && i < b->each.size(); ++i)
    b->each[i]->outcomes[results[i].has_value() ? 0 : outcome_index(results[i].error().code)].fetch_add(
        1, std::memory_order_relaxed);
}

/// Points a job with a caller at the counters of its target(s) in an
/// executor's table (the front door does, PyRuntime::submit): the target its
/// label names after the message type (as `where_of`), or for a batch each
/// call's own ("m:f", "<Box>.add"). PRECONDITION: `job.type` and
/// `job.label` are set; `request` is the job's.
inline void tally_targets(detail::TargetTable& table, const AnyRequest& request, Job& job) {
  TargetTally& tally = job.targets;
  auto* b = std::get_if<BatchRequest>(&request);
  if (!b) {
    // Requests mostly repeat the last target: then its counters are found
    // without the table's lock (a label names the type and the target).
    if (auto* last = table.last(); last && last->label == job.label) {
      tally.one = last;
      return;
    }
    std::string_view label = job.label;
    auto space = label.find(' ');
    std::string_view target = space == std::string_view::npos ? std::string_view() : label.substr(space + 1);
    table.with_counts([&](auto find) { tally.one = find(job.type, target); });
    table.set_last(tally.one);
    return;
  }
  auto batch = std::make_unique<BatchTargets>();
  batch->table = &table;
  batch->calls = b->calls.size();
  auto target_of_call = [](const CallRequest& c) {
    return c.self ? "<" + c.self.type_name() + ">" + (c.target.empty() ? "" : "." + c.target) : c.target;
  };
  if (!b->calls.empty()) {
    // The usual batch (pipelines, the CLI) calls one target: one entry.
    const auto& first = b->calls.front();
    bool one_target = !first.self && std::all_of(b->calls.begin(), b->calls.end(), [&](const CallRequest& c) {
      return !c.self && c.target == first.target;
    });
    table.with_counts([&](auto find) {
      if (one_target) {
        batch->all = find(job.type, first.target);
        return;
      }
      batch->each.reserve(b->calls.size());
      for (auto& c : b->calls)
        batch->each.push_back(find(job.type, target_of_call(c)));
    });
  }
  tally.batch = std::move(batch);
}

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
  count_reply(job, reply);
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
  // Expired first, while the slot is still queued: a slot marked running
  // before this check made a caller that settled its deadline at that
  // moment see a running request and say "soft" for one that never ran.
  if (job.deadline.expired(now) && !(job.slot && job.slot->state() == ReplySlot::done)) {
    stats.missed(job.type, DeadlinePhase::queued);
    expired = deadline_error(ReplySlot::queued, job.label);
    return false;
  }
  if (job.slot && !job.slot->start()) {
    bool cancelled = job.slot->cancel_requested();
    if (!cancelled)
      stats.missed(job.type, DeadlinePhase::queued);
    stats.error(job.type);
    count_outcome(job.targets, outcome_index(cancelled ? ErrorCode::cancelled : ErrorCode::deadline_exceeded));
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
  bool cancelled = job.slot->cancel_requested();
  if (!cancelled)
    stats.missed(job.type, DeadlinePhase::queued);
  stats.error(job.type);
  count_outcome(job.targets, outcome_index(cancelled ? ErrorCode::cancelled : ErrorCode::deadline_exceeded));
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
    stats.received(job);
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
