#pragma once

// Internal: the thread that runs `Future::then` continuations, so that no
// host code runs on the interpreter's thread (which delivers replies) or
// blocks it. Started on first use; stop() runs what is queued, then joins.

#include "actors/detail/join_or_detach.hpp"

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

namespace gk::detail {

class CallbackQueue {
public:
  ~CallbackQueue() { stop(); }

  /// Queues `fn`; runs it here when the queue is stopped. Thread-safe.
  void post(std::function<void()> fn) {
    {
      std::lock_guard<std::mutex> g(m_);
      if (!stopped_) {
        if (!thread_.joinable())
          thread_ = std::thread([this] { run(); });
        queue_.push_back(std::move(fn));
        cv_.notify_one();
        return;
      }
    }
    fn();
  }

  /// Runs what is queued, then stops the thread. Idempotent. Later posts
  /// run on the posting thread.
  void stop() {
    {
      std::lock_guard<std::mutex> g(m_);
      if (stopped_)
        return;
      stopped_ = true;
    }
    cv_.notify_one();
    detail::join_or_detach(thread_);
  }

private:
  void run() {
    pthread_setname_np(pthread_self(), "gk-callbacks");
    std::unique_lock<std::mutex> lk(m_);
    for (;;) {
      cv_.wait(lk, [&] { return stopped_ || !queue_.empty(); });
      if (queue_.empty())
        return;  // stopped and drained
      auto fn = std::move(queue_.front());
      queue_.pop_front();
      lk.unlock();
      fn();
      fn = nullptr;
      lk.lock();
    }
  }

  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopped_ = false;
  std::thread thread_;
};

} // namespace gk::detail
