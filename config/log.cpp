// The process's one logger: events formatted here (text or JSON lines) and
// written through spdlog (its thread-safe stderr and file sinks), or handed
// to the host's own sink.

#include "gilkeeper/config/log.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <memory>
#include <mutex>
#include <pthread.h>
#include <thread>
#include <utility>

namespace gk {

const LogField* LogEvent::field(std::string_view key) const {
  for (auto& f : fields)
    if (f.key == key)
      return &f;
  return nullptr;
}

namespace {

std::string value_text(const LogField& f) {
  return std::visit(
      [](const auto& v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>)
          return v;
        else if constexpr (std::is_same_v<T, bool>)
          return v ? "true" : "false";
        else if constexpr (std::is_same_v<T, double>) {
          char buf[32];
          std::snprintf(buf, sizeof buf, "%.6g", v);
          return buf;
        } else
          return std::to_string(v);
      },
      f.value);
}

} // namespace

std::string LogEvent::text(std::string_view key) const {
  auto* f = field(key);
  return f ? value_text(*f) : std::string();
}

LogEvent& LogEvent::with(std::string key, std::string value) {
  fields.push_back(LogField{std::move(key), std::move(value)});
  return *this;
}
LogEvent& LogEvent::with(std::string key, std::int64_t value) {
  fields.push_back(LogField{std::move(key), value});
  return *this;
}
LogEvent& LogEvent::with(std::string key, double value) {
  fields.push_back(LogField{std::move(key), value});
  return *this;
}
LogEvent& LogEvent::with(std::string key, bool value) {
  fields.push_back(LogField{std::move(key), value});
  return *this;
}

namespace log {

namespace {

struct Logger {
  std::mutex mutex;  // guards everything below but `level`
  std::condition_variable cv;
  std::deque<LogEvent> queue;
  bool thread_started = false;
  bool waiting = false;   // the writer thread waits for the queue
  bool urgent = false;    // an alert is queued: write it now
  std::uint64_t dropped = 0;
  LogSink sink;
  std::shared_ptr<spdlog::logger> writer;
  LogFormat format = LogFormat::text;
  std::mutex write_mutex;  // one batch written at a time, in order
  std::atomic<LogLevel> level{LogLevel::info};
};

// The most events waiting to be written; beyond it events are dropped and
// counted (a trace must not grow the host's memory without bound).
constexpr std::size_t kMaxQueued = 100000;

// Never destroyed: events may be logged by threads that outlive main's
// static destructors (a runtime left running by a host).
Logger& logger() {
  static Logger* l = [] {
    auto* out = new Logger;
    out->writer = std::make_shared<spdlog::logger>("gilkeeper", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    out->writer->set_pattern("%v");
    out->writer->set_level(spdlog::level::trace);
    // Whatever is queued when the process exits is written first.
    std::atexit([] { flush(); });
    return out;
  }();
  return *l;
}

// Writes one batch. PRECONDITION: write_mutex held, mutex not held.
void write_batch(Logger& l, std::deque<LogEvent>& batch, std::uint64_t dropped) {
  LogSink sink;
  std::shared_ptr<spdlog::logger> writer;
  LogFormat format;
  {
    std::lock_guard<std::mutex> g(l.mutex);
    sink = l.sink;
    writer = l.writer;
    format = l.format;
  }
  if (dropped > 0) {
    LogEvent e;
    e.level = LogLevel::warn;
    e.name = "log_dropped";
    e.message = std::to_string(dropped) + " log events were dropped: more than "
                + std::to_string(kMaxQueued) + " were waiting to be written";
    e.with("dropped", dropped);
    batch.push_front(std::move(e));
  }
  for (auto& e : batch) {
    if (sink) {
      sink(e);
      continue;
    }
    writer->log(spdlog::level::info, "{}", format == LogFormat::json ? to_json(e) : to_text(e));
  }
  if (!sink)
    writer->flush();
}

// Writes whatever is queued, on the calling thread, in order with any other
// writer (the logger's thread, flush()).
void drain(Logger& l) {
  std::lock_guard<std::mutex> w(l.write_mutex);
  std::deque<LogEvent> batch;
  std::uint64_t dropped = 0;
  {
    std::lock_guard<std::mutex> g(l.mutex);
    batch.swap(l.queue);
    dropped = std::exchange(l.dropped, 0);
    l.urgent = false;
  }
  if (!batch.empty() || dropped > 0)
    write_batch(l, batch, dropped);
}

// The writer thread ("gk-log"): events are written off the threads that
// log them (a trace on the interpreter's thread costs a queue push), in
// batches a few milliseconds apart, alerts at once.
void writer_loop(Logger& l) {
  pthread_setname_np(pthread_self(), "gk-log");
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(l.mutex);
      l.waiting = true;
      l.cv.wait(lk, [&] { return !l.queue.empty(); });
      l.waiting = false;
      if (!l.urgent) {
        // Let a burst gather into one batch.
        l.cv.wait_for(lk, std::chrono::milliseconds(5), [&] { return l.urgent; });
      }
    }
    drain(l);
  }
}

std::string iso_time(std::chrono::system_clock::time_point t) {
  auto since = t.time_since_epoch();
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(since);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(since - secs).count();
  std::time_t tt = static_cast<std::time_t>(secs.count());
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

bool needs_quotes(const std::string& s) {
  if (s.empty())
    return true;
  for (char c : s)
    if (c == ' ' || c == '"' || c == '=' || static_cast<unsigned char>(c) < 0x20)
      return true;
  return false;
}

} // namespace

const char* level_name(LogLevel level) noexcept {
  switch (level) {
    case LogLevel::trace: return "trace";
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info";
    case LogLevel::warn: return "warn";
    case LogLevel::error: return "error";
    case LogLevel::off: return "off";
  }
  return "info";
}

std::string to_text(const LogEvent& event) {
  std::string out = iso_time(event.time);
  out += ' ';
  for (const char* p = level_name(event.level); *p; ++p)
    out += static_cast<char>(std::toupper(static_cast<unsigned char>(*p)));
  out += ' ';
  out += event.name;
  out += ": ";
  out += event.message;
  std::string blocks;
  for (auto& f : event.fields) {
    std::string v = value_text(f);
    if (v.find('\n') != std::string::npos) {
      // A stack or a report: its own indented lines after the event's line.
      blocks += "\n  " + f.key + ":";
      std::size_t start = 0;
      while (start < v.size()) {
        auto nl = v.find('\n', start);
        std::string line = v.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
        if (!line.empty())
          blocks += "\n    " + line;
        if (nl == std::string::npos)
          break;
        start = nl + 1;
      }
      continue;
    }
    out += ' ';
    out += f.key;
    out += '=';
    if (std::holds_alternative<std::string>(f.value) && needs_quotes(v))
      out += nlohmann::json(v).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    else
      out += v;
  }
  return out + blocks;
}

std::string to_json(const LogEvent& event) {
  nlohmann::ordered_json j;
  j["time"] = iso_time(event.time);
  j["level"] = level_name(event.level);
  j["event"] = event.name;
  j["message"] = event.message;
  for (auto& f : event.fields)
    std::visit([&](const auto& v) { j[f.key] = v; }, f.value);
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void configure(const LogConfig& config) {
  auto& l = logger();
  std::shared_ptr<spdlog::logger> writer;
  if (!config.file.empty()) {
    try {
      auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(config.file, false);
      writer = std::make_shared<spdlog::logger>("gilkeeper", std::move(sink));
    } catch (const spdlog::spdlog_ex& e) {
      throw ConfigError("log", 0, 0, "log.file", "cannot open " + config.file + " for appending: " + e.what());
    }
  } else {
    writer = std::make_shared<spdlog::logger>("gilkeeper", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  }
  writer->set_pattern("%v");
  writer->set_level(spdlog::level::trace);
  // Alerts are rare and wanted at once (a process may be killed next).
  flush();
  {
    std::lock_guard<std::mutex> g(l.mutex);
    l.writer = std::move(writer);
    l.format = config.format;
  }
  l.level.store(config.level, std::memory_order_relaxed);
}

void set_sink(LogSink sink) {
  auto& l = logger();
  flush();
  std::lock_guard<std::mutex> g(l.mutex);
  l.sink = std::move(sink);
}

void set_level(LogLevel level) { logger().level.store(level, std::memory_order_relaxed); }

LogLevel level() noexcept { return logger().level.load(std::memory_order_relaxed); }

bool enabled(LogLevel level) noexcept {
  auto current = logger().level.load(std::memory_order_relaxed);
  return level != LogLevel::off && current != LogLevel::off && level >= current;
}

void emit(LogEvent event) {
  if (!enabled(event.level))
    return;
  auto& l = logger();
  bool wake = false;
  {
    std::lock_guard<std::mutex> g(l.mutex);
    if (l.queue.size() >= kMaxQueued) {
      ++l.dropped;
      return;
    }
    if (event.level >= LogLevel::warn)
      l.urgent = true;
    l.queue.push_back(std::move(event));
    if (!l.thread_started) {
      l.thread_started = true;
      std::thread([&l] { writer_loop(l); }).detach();
    }
    wake = l.waiting || l.urgent;
  }
  if (wake)
    l.cv.notify_one();
}

void flush() {
  drain(logger());
}

} // namespace log
} // namespace gk
