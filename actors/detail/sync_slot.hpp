#pragma once

// Internal: a ReplySlot that a plain thread waits on until its deadline.

#include "gilkeeper/actors/executor.hpp"

#include <condition_variable>
#include <mutex>
#include <optional>

namespace gk::detail {

class SyncSlot final : public ReplySlot {
public:
  void deliver(AnyReply&& reply) override {
    {
      std::lock_guard<std::mutex> g(m_);
      reply_ = std::move(reply);
    }
    cv_.notify_one();
  }

  /// Waits for the reply; at the deadline claims the slot and answers
  /// `deadline_exceeded` itself (so the caller is told on time even when
  /// the executor is stuck). Exactly one reply either way.
  AnyReply wait(const Deadline& deadline, const std::string& label) {
    std::unique_lock<std::mutex> lk(m_);
    if (deadline.is_finite()) {
      auto ready = [&] { return reply_.has_value(); };
      if (!cv_.wait_until(lk, deadline.when(), ready)
          && !(state() == running && cv_.wait_for(lk, kInterruptedReplyWait, ready))) {
        lk.unlock();
        int before = claim();
        if (before >= 0)
          deliver(Expected<Value>(deadline_error(before, label)));
        lk.lock();
      }
    }
    cv_.wait(lk, [&] { return reply_.has_value(); });
    return std::move(*reply_);
  }

private:
  std::mutex m_;
  std::condition_variable cv_;
  std::optional<AnyReply> reply_;
};

} // namespace gk::detail
