#pragma once

// Internal to actors/: the process executor's crash breaker. It tells a
// poison call (one call, by target and arguments, that crashes its worker
// whenever it runs) from a pool that keeps failing (workers that die at
// start-up). A poison call is quarantined: its repeats fail at once without
// running. A crash while a call runs costs that call only (a segfault, an
// `os._exit`, an OOM kill or a kill from outside all look alike from here):
// only workers that fail to start count, and `degraded_after` of them within
// `crash_window` make the runtime degraded.
//
// Not thread-safe: the supervisor thread owns it.

#include "actors/executor.hpp"

#include <chrono>
#include <cstdint>
#include <deque>
#include <list>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace gk::detail {

/// What a request runs, as the breaker tells repeats apart: its target
/// (`"module:function"`, a method path, `"eval"`, ...) and a hash of its
/// serialized arguments (and, for a method, of the Ref it is called on).
struct Fingerprint {
  std::string target;
  std::uint64_t hash = 0;

  bool operator==(const Fingerprint& o) const { return hash == o.hash && target == o.target; }
};

struct FingerprintHash {
  std::size_t operator()(const Fingerprint& f) const noexcept;
};

/// What one crash means, as `CrashBreaker::crashed` judges it.
struct CrashVerdict {
  /// Crashes of this very call so far, run alone (0 when not a single call).
  int crashes = 0;
  /// This crash put the call in quarantine.
  bool quarantined = false;
};

/// Calls held back from a batch because they are quarantined: their index
/// in the batch as submitted, and the error each gets.
using HeldBack = std::vector<std::pair<std::size_t, Error>>;

class CrashBreaker {
public:
  using clock = std::chrono::steady_clock;

  explicit CrashBreaker(const RuntimeConfig& config);

  /// Records that the worker running `request` died (`crash`: the
  /// `worker_crashed` error, with its signal or exit status; `how`: "killed
  /// by signal 11 (SIGSEGV)"); `request` is null when it died between
  /// requests. Not for our own kills (hard deadlines) nor for retired
  /// workers: those are not crashes. Never makes the runtime degraded.
  CrashVerdict crashed(AnyRequest* request, const Error& crash, const std::string& how,
                       clock::time_point now);
  /// Records a worker that did not start (it died or failed while starting,
  /// importing what the workload uses). True when the runtime is now
  /// degraded.
  bool failed_start(clock::time_point now);

  /// The error for a request that is quarantined now, or none. Cheap while
  /// nothing with its target is quarantined (no hashing).
  Error quarantined(AnyRequest& request, clock::time_point now);
  /// Removes the quarantined calls from a batch and says which they were
  /// (in submission order) with their errors; empty when none.
  HeldBack hold_back(BatchRequest& batch, clock::time_point now);
  /// Puts the errors of held-back calls back in their places of a batch's
  /// results.
  static void merge(BatchReply& reply, HeldBack&& held);

  /// "5 failed starts in the last 10s": what made the runtime degraded.
  std::string describe_degraded() const;

private:
  struct Entry {
    Fingerprint fingerprint;
    int crashes = 0;
    std::string last_how;  // "killed by signal 11 (SIGSEGV)"
    int signal = 0;
    int exit_status = -1;
    clock::time_point last_crash{};
    // Set while quarantined (and until the first look after it ended).
    std::optional<clock::time_point> quarantined_until;
  };
  using Entries = std::list<Entry>;

  Entry& remember(const Fingerprint& f);
  void lift(Entry& e);
  void evict_oldest();
  Error quarantine_error(const Entry& e) const;
  std::optional<Fingerprint> fingerprint_of(AnyRequest& request);
  Fingerprint fingerprint_of(CallRequest& call);
  bool maybe_quarantined(const std::string& target) const;

  int quarantine_after_;
  std::chrono::nanoseconds quarantine_for_;
  std::size_t capacity_;
  int degraded_after_;
  std::chrono::nanoseconds crash_window_;
  int last_count_ = 0;

  // Calls that crashed their worker when run alone, most recent first.
  Entries entries_;
  std::unordered_map<Fingerprint, Entries::iterator, FingerprintHash> index_;
  // Targets with quarantined entries, and how many: the cheap first look.
  std::unordered_map<std::string, int> quarantined_targets_;


  // Failed starts, within the window.
  std::deque<clock::time_point> failures_;

  std::vector<char> scratch_;  // serialized arguments, reused
};

} // namespace gk::detail
