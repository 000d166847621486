#pragma once

// Internal to runtime/: the small pool of threads that runs a pipeline's C++
// stages. A task that never returns (a stuck C++ stage) cannot hold up the
// pool's owner: the pool's state is shared with its threads, and a thread
// still running its task when the pool is destroyed is left to finish on
// its own (detached), its task named by running().

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace gk::detail {

class ThreadPool {
public:
  explicit ThreadPool(std::size_t n) : state_(std::make_shared<State>()) {
    state_->running.resize(n);
    state_->exited.resize(n, false);
    for (std::size_t i = 0; i < n; ++i)
      threads_.emplace_back([state = state_, i] { run(*state, i); });
  }
  /// Joins the idle threads; detaches those still running a task.
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> g(state_->m);
      state_->stop = true;
      state_->tasks.clear();
    }
    state_->cv.notify_all();
    std::unique_lock<std::mutex> lk(state_->m);
    for (std::size_t i = 0; i < threads_.size(); ++i) {
      // An idle thread exits at once; a busy one is not waited for.
      if (state_->running[i].empty())
        state_->done_cv.wait(lk, [&] { return state_->exited[i] || !state_->running[i].empty(); });
      if (state_->exited[i]) {
        lk.unlock();
        threads_[i].join();
        lk.lock();
      } else {
        threads_[i].detach();
      }
    }
  }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  /// Queues a task; `name` says what it runs (for running()).
  void post(std::string name, std::function<void()> task) {
    {
      std::lock_guard<std::mutex> g(state_->m);
      state_->tasks.emplace_back(std::move(name), std::move(task));
    }
    state_->cv.notify_one();
  }

  /// The names of the tasks running now.
  std::vector<std::string> running() const {
    std::lock_guard<std::mutex> g(state_->m);
    std::vector<std::string> out;
    for (auto& name : state_->running)
      if (!name.empty())
        out.push_back(name);
    return out;
  }

private:
  struct State {
    std::mutex m;
    std::condition_variable cv;       // a task, or stop
    std::condition_variable done_cv;  // a thread exited or took a task
    std::deque<std::pair<std::string, std::function<void()>>> tasks;
    std::vector<std::string> running;  // per thread: its task's name, or ""
    std::vector<bool> exited;
    bool stop = false;
  };

  static void run(State& st, std::size_t i) {
    std::unique_lock<std::mutex> lk(st.m);
    for (;;) {
      st.cv.wait(lk, [&] { return st.stop || !st.tasks.empty(); });
      if (st.stop)
        break;
      auto [name, task] = std::move(st.tasks.front());
      st.tasks.pop_front();
      st.running[i] = name.empty() ? "task" : name;
      st.done_cv.notify_all();
      lk.unlock();
      task();
      task = nullptr;  // what it holds goes before the lock is taken again
      lk.lock();
      st.running[i].clear();
    }
    st.exited[i] = true;
    st.done_cv.notify_all();
  }

  std::shared_ptr<State> state_;
  std::vector<std::thread> threads_;
};

} // namespace gk::detail
