#pragma once

/// `gk::Future`: the one reply of an asynchronous request, for plain
/// threads that keep many requests in flight without a thread each.
///
/// ```
/// std::vector<gk::Future<gk::Value>> inflight;
/// for (auto& record : records)
///   inflight.push_back(rt.call_async("m:score", {record}));
/// for (auto& f : inflight)
///   if (auto r = f.get()) use(*r); else log(r.error().to_string());
/// ```
///
/// Every request submitted gets exactly one reply: its result, its error,
/// `deadline_exceeded` at its deadline, or `cancelled` after cancel().
/// A Future is a handle: copies share the same reply.
///
/// Thread-safety: every member may be called from any thread; get() hands
/// the reply to one caller (a second get() gives an `internal` error).
///
/// Where a thread must not block (`[debug.gil] detect_deadlock`: a worker
/// actor's handler, a scheduler thread of the runtime's own actor system,
/// the interpreter's own thread), the waits do not wait for a reply that is
/// not there yet: get() answers `deadlock` (the future keeps its reply to
/// come), wait() returns at once, wait_for() and wait_until() return false.
/// A reply already there is taken as usual. See docs/composition.md.

#include "gilkeeper/interop/deadline.hpp"
#include "gilkeeper/interop/expected.hpp"
#include "gilkeeper/interop/value.hpp"

#include <chrono>
#include <functional>
#include <memory>
#include <vector>

namespace gk {

namespace detail {
class FutureState;
}

/// The reply to come of one asynchronous request. `T` is `Value` (calls,
/// eval, exec) or `std::vector<Expected<Value>>` (batches).
template <class T>
class Future {
public:
  /// An invalid future (valid() is false). Only assignment and valid() may
  /// be used on it.
  Future() = default;
  explicit Future(std::shared_ptr<detail::FutureState> state) noexcept : state_(std::move(state)) {}

  /// False for a default-constructed future.
  bool valid() const noexcept { return state_ != nullptr; }
  /// True when the reply is there (get() will not block).
  bool ready() const;
  /// Blocks until the reply is there. Bounded: every request has a reply
  /// at its deadline (plus the runtime's patience for an interrupted one).
  void wait() const;
  /// Waits at most `timeout`; true when the reply is there. A timeout here
  /// does not cancel the request (see cancel()).
  bool wait_for(std::chrono::nanoseconds timeout) const;
  /// Waits until `when`; true when the reply is there.
  bool wait_until(Deadline::time_point when) const;
  /// Waits for the reply and takes it. The second get() (on any copy) gives
  /// an `internal` error: the reply was taken.
  Expected<T> get();
  /// Runs `fn` with the reply, once: at once on this thread when it is
  /// there already, else on the runtime's callback thread (never on the
  /// interpreter's thread). `fn` must not block for long; it may submit
  /// more requests. Replaces get(): after then(), get() gives an error. A
  /// second then() replaces nothing and gives `fn` an `internal` error.
  void then(std::function<void(Expected<T>)> fn);
  /// Cancels the request: a queued one never runs, a running one is
  /// interrupted (`gilkeeper.Cancelled` in Python); the reply becomes
  /// `cancelled` unless it was already there. Never blocks. Idempotent.
  void cancel();
  /// The request's resolved deadline (finite or never).
  Deadline deadline() const;

private:
  std::shared_ptr<detail::FutureState> state_;
};

extern template class Future<Value>;
extern template class Future<std::vector<Expected<Value>>>;

} // namespace gk
