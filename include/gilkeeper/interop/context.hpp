#pragma once

/// The context a request travels with: its deadline and its cancellation.
///
/// Work done on behalf of a request (a worker's handler, a pipeline stage,
/// the Python calls they make) receives the request's `RequestContext`, and
/// hands it on as the `parent` of the requests it makes: a child's deadline
/// is at most its parent's, and cancelling the parent cancels the child.
/// So when an asker gives up, the Python call made on its behalf stops too.
///
/// ```
/// gk::CancelToken token;
/// gk::RequestOptions o;
/// o.parent = gk::RequestContext{gk::Deadline::after(100ms), token};
/// auto f = rt.call_async("m:slow", {}, {}, o);
/// token.cancel();   // f gets `cancelled`; the running call is interrupted
/// ```

#include "gilkeeper/interop/deadline.hpp"

#include <cstdint>
#include <functional>
#include <memory>

namespace gk {

namespace detail {
struct CancelState;
struct HostNest;
}

/// Unregisters a cancellation callback when destroyed (see
/// CancelToken::on_cancel). Movable, not copyable.
class CancelRegistration {
public:
  CancelRegistration() = default;
  ~CancelRegistration();
  CancelRegistration(CancelRegistration&& other) noexcept;
  CancelRegistration& operator=(CancelRegistration&& other) noexcept;
  CancelRegistration(const CancelRegistration&) = delete;
  CancelRegistration& operator=(const CancelRegistration&) = delete;

  /// True while registered.
  explicit operator bool() const noexcept { return state_ != nullptr; }

private:
  friend class CancelToken;
  CancelRegistration(std::shared_ptr<detail::CancelState> state, std::uint64_t id) noexcept
    : state_(std::move(state)), id_(id) {}
  std::shared_ptr<detail::CancelState> state_;
  std::uint64_t id_ = 0;
};

/// A cancellation flag shared by its copies (like stdexec's stop source and
/// token in one). A default-constructed token is live and not cancelled;
/// `CancelToken::none()` is a token that can never be cancelled (and costs
/// nothing). Thread-safe: every member may be called from any thread.
class CancelToken {
public:
  /// A fresh token, not cancelled.
  CancelToken();
  /// A token that is never cancelled (cancel() does nothing).
  static CancelToken none() noexcept { return CancelToken(nullptr); }

  /// Cancels: runs every registered callback once, on this thread, then
  /// returns. Idempotent; later registrations are refused.
  void cancel() const;
  /// True once cancelled.
  bool cancelled() const noexcept;
  /// False for `none()`.
  bool can_be_cancelled() const noexcept { return state_ != nullptr; }

  /// Registers `fn` to run (once) when the token is cancelled. Returns an
  /// empty registration, and does not run `fn`, when the token is already
  /// cancelled or is `none()`: the caller checks `cancelled()` and acts
  /// itself. `fn` may run on any thread, even after the registration was
  /// destroyed if cancel() had already started; it must not block.
  CancelRegistration on_cancel(std::function<void()> fn) const;

  friend bool operator==(const CancelToken& a, const CancelToken& b) noexcept { return a.state_ == b.state_; }
  friend bool operator!=(const CancelToken& a, const CancelToken& b) noexcept { return !(a == b); }

private:
  explicit CancelToken(std::shared_ptr<detail::CancelState> state) noexcept : state_(std::move(state)) {}
  std::shared_ptr<detail::CancelState> state_;
};

/// What a request carries to the work done on its behalf. Thread-safe: a
/// plain value (copies share the token).
struct RequestContext {
  RequestContext() = default;
  RequestContext(Deadline deadline_, CancelToken cancel_ = CancelToken::none(),
                 std::shared_ptr<detail::HostNest> host_call_ = nullptr)
    : deadline(deadline_), cancel(std::move(cancel_)), host_call(std::move(host_call_)) {}

  /// When the request stops being worth an answer (never when it has none).
  Deadline deadline = Deadline::never();
  /// Cancelled when the request is cancelled.
  CancelToken cancel = CancelToken::none();
  /// Set on the context a host function gets (`HostCall::context`): a
  /// request made with it as parent is served by the interpreter that waits
  /// for that host function (see Runtime::expose). Leave it alone.
  std::shared_ptr<detail::HostNest> host_call;

  /// Time left before the deadline (`duration::max()` when none).
  Deadline::duration remaining() const noexcept { return deadline.remaining(); }
  /// True when cancelled or past the deadline: further work is wasted.
  bool done() const noexcept { return cancel.cancelled() || deadline.expired(); }
};

} // namespace gk
