#pragma once

// Captures the process's log events for a test (gk::log::set_sink), with
// when each arrived.

#include "gilkeeper/config/log.hpp"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace gk::test {

class EventLog {
public:
  using clock = std::chrono::steady_clock;
  struct Entry {
    LogEvent event;
    clock::time_point at;
  };

  explicit EventLog(LogLevel level = LogLevel::info) {
    log::set_level(level);
    log::set_sink([this](const LogEvent& e) {
      std::lock_guard<std::mutex> g(mutex_);
      entries_.push_back(Entry{e, clock::now()});
      cv_.notify_all();
    });
  }
  ~EventLog() {
    log::set_sink(nullptr);
    log::set_level(LogLevel::info);
  }
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  /// The first event named `name` (and matching `pred`) within `wait`.
  template <class Pred>
  std::optional<Entry> wait_for(const std::string& name, std::chrono::milliseconds wait, Pred pred) {
    std::unique_lock<std::mutex> lk(mutex_);
    std::optional<Entry> found;
    cv_.wait_for(lk, wait, [&] {
      for (auto& e : entries_)
        if (e.event.name == name && pred(e.event)) {
          found = e;
          return true;
        }
      return false;
    });
    return found;
  }
  std::optional<Entry> wait_for(const std::string& name, std::chrono::milliseconds wait) {
    return wait_for(name, wait, [](const LogEvent&) { return true; });
  }

  std::vector<Entry> named(const std::string& name) {
    std::lock_guard<std::mutex> g(mutex_);
    std::vector<Entry> out;
    for (auto& e : entries_)
      if (e.event.name == name)
        out.push_back(e);
    return out;
  }

private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<Entry> entries_;
};

/// The 1-based line of `file` that contains `text` first (0 when none).
int line_of(const std::string& file, const std::string& text);

} // namespace gk::test
