#pragma once

/// The caller's side of every deadline, for one runtime: one thread and one
/// ordered table, no timer message per request.
///
/// The runtime's submission path registers each request whose deadline is
/// finite; the executor's reply removes it again (`ReplySlot::complete`).
/// When a deadline passes first, the watch answers the caller itself:
/// - a request still queued gets `deadline_exceeded` / `queued` at once (and
///   never runs: its slot is claimed, so the executor skips it);
/// - a running request is given a short wait for its own interrupted reply,
///   which carries the Python type and traceback of where the code was
///   (`Patience::prompt`, `[timeouts] interrupted_reply_wait`, 1.5 ms by
///   default: synchronous callers and actors), or the
///   grace period in which the runtime reaches its own verdict, a soft
///   interrupt or a kill (`Patience::verdict`: pipelines, where a record's
///   full outcome is worth more than a prompt answer); then it answers
///   `deadline_exceeded` / `soft` itself, so a caller is told even when the
///   interpreter is stuck in native code.
///
/// Thread-safety: every member may be called from any thread.

#include "actors/executor.hpp"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

namespace gk {

/// How long a caller waits past its deadline for a running request's own
/// reply (see DeadlineWatch). `queue`: the deadline bounds only the wait in
/// the queue; once running, the request is answered by the runtime alone
/// (a batch whose calls have deadlines of their own).
enum class Patience : std::uint8_t { prompt, verdict, queue };

class DeadlineWatch {
public:
  using clock = std::chrono::steady_clock;

  /// Starts the watch's thread. `prompt_wait` is how long
  /// `Patience::prompt` waits past a running request's deadline for its
  /// interrupted reply (`[timeouts] interrupted_reply_wait`), `verdict_wait`
  /// how long `Patience::verdict` waits.
  static std::shared_ptr<DeadlineWatch> start(std::chrono::nanoseconds prompt_wait,
                                              std::chrono::nanoseconds verdict_wait);
  /// How long `Patience::prompt` waits past a deadline.
  std::chrono::nanoseconds prompt_wait() const noexcept { return prompt_wait_; }
  ~DeadlineWatch();
  DeadlineWatch(const DeadlineWatch&) = delete;
  DeadlineWatch& operator=(const DeadlineWatch&) = delete;

  /// Answers `slot` with `deadline_exceeded` (naming `label`) if it is not
  /// completed by `deadline` (plus the patience for a running request). A
  /// slot without a deadline (`never`) is watched for cancel() only.
  /// PRECONDITION: the slot is not watched yet.
  void watch(const std::shared_ptr<ReplySlot>& slot, const Deadline& deadline, const std::string& label,
             Patience patience);
  /// The request of a watched slot was cancelled: a queued one is answered
  /// `cancelled` now (and never runs); a running one is given the prompt
  /// patience to answer with its own interrupted reply, then answered
  /// `cancelled` here. False when the slot is not watched (answered already,
  /// or never watched).
  bool cancel(ReplySlot& slot);
  /// Stops watching a slot (its reply was delivered). Cheap when not watched.
  void forget(ReplySlot& slot);
  /// For a caller that waits with `Patience::prompt` and woke at its
  /// deadline plus prompt_wait(): answers the slot now, by the same
  /// rule as the watch's thread, when nothing answered it yet. The caller is
  /// then told without waiting for the watch's thread to be scheduled.
  void settle(ReplySlot& slot);
  /// Requests being watched now.
  std::size_t watched() const;
  /// Stops the thread; slots still watched are left to their executor
  /// (which answers every request at its own shutdown). Idempotent.
  void stop();

private:
  DeadlineWatch(std::chrono::nanoseconds prompt_wait, std::chrono::nanoseconds verdict_wait)
    : prompt_wait_(prompt_wait), verdict_wait_(verdict_wait) {}
  void run();

  struct Entry {
    std::shared_ptr<ReplySlot> slot;
    std::string label;
    Patience patience = Patience::prompt;
    bool extended = false;
    // Answered with `cancelled` rather than `deadline_exceeded`.
    bool cancelled = false;
  };
  using Key = std::pair<clock::time_point, std::uint64_t>;

  const std::chrono::nanoseconds prompt_wait_;
  const std::chrono::nanoseconds verdict_wait_;
  std::weak_ptr<DeadlineWatch> self_;
  mutable std::mutex m_;
  std::condition_variable cv_;
  std::map<Key, Entry> entries_;
  std::uint64_t next_key_ = 0;
  clock::time_point wake_ = clock::time_point::max();
  bool stop_ = false;
  std::thread thread_;
};

} // namespace gk
