#pragma once

// Internal: replies counted by message type, target and outcome, and slow
// calls by target (Stats::targets). The table is an executor's
// (Executor::targets()); the front door (PyRuntime::submit) points each job
// at its counters (Job::targets), so that counting a reply takes no lock:
// one relaxed atomic add. Bounded: at most kMaxTargets (type, target)
// entries; a target beyond them counts under "other". Thread-safe.

#include "gilkeeper/interop/error.hpp"
#include "gilkeeper/interop/request.hpp"

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace gk::detail {

/// The outcomes a reply can have: [0] is "ok", [code] an error with that
/// ErrorCode.
inline constexpr std::size_t kOutcomes = static_cast<std::size_t>(kLastErrorCode) + 1;

class TargetTable;

/// The counters of one (message type, target). The counters start a cache
/// line of their own: the key and label before them are read by
/// submitting threads while an executor's thread counts here.
struct TargetCounts {
  TargetCounts(TargetTable* owner, std::string label_) : table(owner), label(std::move(label_)) {}
  TargetTable* const table;
  /// The label of the requests counted here, "type target" ("call m:f";
  /// "eval" when the target is empty), for TargetTable::last().
  const std::string label;
  alignas(64) std::array<std::atomic<std::uint64_t>, kOutcomes> outcomes{};
  std::atomic<std::uint64_t> slow{0};
};

/// A batch's counters: one entry for all its calls when they share a
/// target (what pipelines send), else one per call.
struct BatchTargets {
  TargetTable* table = nullptr;
  TargetCounts* all = nullptr;
  std::vector<TargetCounts*> each;  ///< when `all` is null
  std::size_t calls = 0;
};

/// The outcome index of a reply's error code (0 for none: "ok").
inline std::size_t outcome_index(ErrorCode code) noexcept {
  auto i = static_cast<std::size_t>(code);
  return i < kOutcomes ? i : static_cast<std::size_t>(ErrorCode::internal);
}

class TargetTable {
public:
  /// The target the bound sends everything beyond it to.
  static constexpr std::string_view kOther = "other";

  /// Runs `f(find)` under the table's lock, where `find(type, target)`
  /// returns the counters of that pair (made on first use; beyond the
  /// bound, those of (type, "other")). The counters live as long as the
  /// table.
  template <class F>
  void with_counts(F&& f) {
    std::lock_guard<std::mutex> g(m_);
    f([this](std::string_view type, std::string_view target) { return find_locked(type, target); });
  }

  /// Counts a call past the slow-call threshold for `target`: on its entry
  /// of the first message type (by name) that has one, else on a new
  /// ("call", target) entry.
  void slow(std::string_view target) {
    std::lock_guard<std::mutex> g(m_);
    TargetCounts* counts = nullptr;
    for (auto& [type, targets] : types_) {
      if (auto it = targets.find(target); it != targets.end()) {
        counts = &it->second;
        break;
      }
    }
    if (!counts)
      counts = find_locked("call", target);
    counts->slow.fetch_add(1, std::memory_order_relaxed);
    slow_calls_.fetch_add(1, std::memory_order_relaxed);
  }

  /// The counters found last by with_counts() for a request that is not a
  /// batch, or null: a hint that spares the lock when requests repeat a
  /// target (compare its label with the request's). Lock-free.
  TargetCounts* last() const noexcept { return last_.load(std::memory_order_acquire); }
  void set_last(TargetCounts* counts) noexcept { last_.store(counts, std::memory_order_release); }

  /// Calls past the slow-call threshold, every target.
  std::uint64_t slow_calls() const noexcept { return slow_calls_.load(std::memory_order_relaxed); }

  /// Every (type, target) with a reply or a slow call, by type then target.
  std::vector<TargetStats> snapshot() const {
    std::lock_guard<std::mutex> g(m_);
    std::vector<TargetStats> out;
    for (auto& [type, targets] : types_) {
      for (auto& [target, counts] : targets) {
        TargetStats s;
        for (std::size_t i = 0; i < kOutcomes; ++i) {
          auto n = counts.outcomes[i].load(std::memory_order_relaxed);
          if (n > 0)
            s.outcomes.emplace_back(i == 0 ? "ok" : to_string(static_cast<ErrorCode>(i)), n);
        }
        s.slow = counts.slow.load(std::memory_order_relaxed);
        if (s.outcomes.empty() && s.slow == 0)
          continue;  // admitted, not answered yet
        s.type = type;
        s.target = target;
        out.push_back(std::move(s));
      }
    }
    return out;
  }

private:
  // PRECONDITION: m_ held.
  TargetCounts* find_locked(std::string_view type, std::string_view target) {
    auto t = types_.find(type);
    if (t == types_.end())
      t = types_.emplace(std::string(type), Targets()).first;
    auto& targets = t->second;
    if (auto it = targets.find(target); it != targets.end())
      return &it->second;
    if (entries_ >= kMaxTargets) {
      // Bounded: a host calling generated names cannot grow this.
      if (auto other = targets.find(kOther); other != targets.end())
        return &other->second;
      return &targets.try_emplace(std::string(kOther), this, label_of(type, kOther)).first->second;
    }
    ++entries_;
    return &targets.try_emplace(std::string(target), this, label_of(type, target)).first->second;
  }

  static std::string label_of(std::string_view type, std::string_view target) {
    std::string label(type);
    if (!target.empty()) {
      label += ' ';
      label += target;
    }
    return label;
  }

  using Targets = std::map<std::string, TargetCounts, std::less<>>;
  std::atomic<TargetCounts*> last_{nullptr};
  mutable std::mutex m_;
  std::map<std::string, Targets, std::less<>> types_;
  std::size_t entries_ = 0;  // (type, target) entries, "other" ones not counted
  std::atomic<std::uint64_t> slow_calls_{0};
};

} // namespace gk::detail
