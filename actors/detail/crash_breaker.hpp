#pragma once

// Internal to actors/: the process executor's crash breaker. It tells a
// poison call (one call, by target and arguments, that crashes its worker
// whenever it runs) from a pool that keeps failing (workers that die at
// start-up, or on whatever they are given). A poison call is quarantined:
// its repeats fail at once without running, and only its first crash counts
// toward `degraded`. Crashes of distinct calls and failed starts count, and
// `degraded_after` of them within `crash_window` make the runtime degraded.
//
// Not thread-safe: the supervisor thread owns it.

#include "actors/executor.hpp"

#include <chrono>
#include <cstdint>
#include <deque>
#include <list>
#include <optional>
#include <set>
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
  /// Counts toward `degraded`: a crash of a call not seen crashing before
  /// (nor found as the culprit of a batch crash already counted), of a
  /// batch of several calls, or of a request the breaker cannot tell apart.
  bool counts = true;
  /// Crashes of this very call so far, run alone (0 when not a single call).
  int crashes = 0;
  /// This crash put the call in quarantine.
  bool quarantined = false;
  /// True when the failures that count reached `degraded_after`.
  bool degraded = false;
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
  /// workers: those are not crashes.
  CrashVerdict crashed(AnyRequest* request, const Error& crash, const std::string& how,
                       clock::time_point now);
  /// Records a failure that no request explains: a worker that did not
  /// start. True when the runtime is now degraded.
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

  /// "5 crashes of distinct calls or failed starts in the last 10s": what
  /// made the runtime degraded.
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

  bool count(clock::time_point now);
  Entry& remember(const Fingerprint& f);
  void lift(Entry& e);
  void evict_oldest();
  Error quarantine_error(const Entry& e) const;
  std::optional<Fingerprint> fingerprint_of(AnyRequest& request);
  Fingerprint fingerprint_of(CallRequest& call);
  bool maybe_quarantined(const std::string& target) const;
  void note_batch_crash(BatchRequest& batch, clock::time_point now);
  bool claim_batch_crash(const Fingerprint& f, clock::time_point now);

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

  // A batch of several calls that crashes its worker is one failure that
  // counts; which call did it is unknown. Its calls are noted here (a
  // bounded FIFO), so that the first of them to crash again alone is taken
  // as its culprit and is not counted a second time.
  struct BatchCrash {
    std::uint64_t id = 0;
    clock::time_point at{};
  };
  std::uint64_t next_batch_crash_ = 0;
  std::set<std::uint64_t> unclaimed_batch_crashes_;
  std::unordered_map<Fingerprint, BatchCrash, FingerprintHash> batch_suspects_;
  std::deque<std::pair<Fingerprint, std::uint64_t>> batch_suspects_order_;

  // Failures that count, within the window.
  std::deque<clock::time_point> failures_;

  std::vector<char> scratch_;  // serialized arguments, reused
};

} // namespace gk::detail
