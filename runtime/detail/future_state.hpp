#pragma once

// Internal: the shared state of a gk::Future, which is also the request's
// ReplySlot (the one reply lands here directly).

#include "actors/py_runtime_core.hpp"
#include "runtime/detail/callback_queue.hpp"

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>

namespace gk::detail {

class FutureState final : public ReplySlot, public std::enable_shared_from_this<FutureState> {
public:
  FutureState(std::weak_ptr<PyRuntime> core, std::weak_ptr<CallbackQueue> callbacks)
    : core_(std::move(core)), callbacks_(std::move(callbacks)) {}

  /// An already answered state (a request refused before submission).
  static std::shared_ptr<FutureState> answered(AnyReply reply) {
    auto s = std::make_shared<FutureState>(std::weak_ptr<PyRuntime>(), std::weak_ptr<CallbackQueue>());
    s->complete(std::move(reply));
    return s;
  }

  Deadline deadline = Deadline::never();
  /// For a request that is not the runtime's own (a worker's ask): what
  /// cancel() cancels; the future is then answered `cancelled` at once.
  CancelToken token = CancelToken::none();

  bool ready() {
    std::lock_guard<std::mutex> g(m_);
    return delivered_;
  }
  void wait() {
    std::unique_lock<std::mutex> lk(m_);
    cv_.wait(lk, [&] { return delivered_; });
  }
  bool wait_until(Deadline::time_point when) {
    std::unique_lock<std::mutex> lk(m_);
    return cv_.wait_until(lk, when, [&] { return delivered_; });
  }
  /// Waits and takes the reply; nullopt when it was taken already.
  std::optional<AnyReply> take() {
    std::unique_lock<std::mutex> lk(m_);
    cv_.wait(lk, [&] { return delivered_; });
    if (taken_)
      return std::nullopt;
    taken_ = true;
    auto r = std::move(reply_);
    reply_.reset();
    return r;
  }
  /// Hands the reply to `fn` once it is there (see Future::then). False
  /// when the reply was taken already.
  bool then(std::function<void(AnyReply&&)> fn) {
    std::unique_lock<std::mutex> lk(m_);
    if (taken_)
      return false;
    taken_ = true;
    if (delivered_) {
      auto r = std::move(*reply_);
      reply_.reset();
      lk.unlock();
      fn(std::move(r));
      return true;
    }
    next_ = std::move(fn);
    return true;
  }
  void cancel() {
    if (token.can_be_cancelled()) {
      token.cancel();
      complete(Expected<Value>(Error(ErrorCode::cancelled, "the request was cancelled")));
    } else if (auto core = core_.lock()) {
      core->cancel(shared_from_this());
    }
  }

protected:
  void deliver(AnyReply&& reply) override {
    std::function<void(AnyReply&&)> next;
    {
      std::lock_guard<std::mutex> g(m_);
      delivered_ = true;
      if (next_)
        next = std::move(next_);
      else
        reply_ = std::move(reply);
    }
    cv_.notify_all();
    if (!next)
      return;
    // Not on the thread that delivers (the interpreter's, the watch's).
    auto callbacks = callbacks_.lock();
    if (!callbacks) {
      next(std::move(reply));
      return;
    }
    auto shared = std::make_shared<AnyReply>(std::move(reply));
    callbacks->post([next = std::move(next), shared]() mutable { next(std::move(*shared)); });
  }

private:
  std::weak_ptr<PyRuntime> core_;
  std::weak_ptr<CallbackQueue> callbacks_;
  std::mutex m_;
  std::condition_variable cv_;
  std::optional<AnyReply> reply_;
  bool delivered_ = false;
  bool taken_ = false;  // by get() or then()
  std::function<void(AnyReply&&)> next_;
};

} // namespace gk::detail
