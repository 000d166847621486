#pragma once

/// Structured log events.
///
/// Every alert and trace gilkeeper writes is one `LogEvent`: a level, a
/// stable name (`slow_call`, `gil_timeout`, `memory_threshold`,
/// `leak_suspected`, `gil_trace`, `call_trace`, `worker_replaced`, ...), one
/// human line, and fields with stable names (docs/observability.md lists
/// them all). One logger per process: text lines on standard error by
/// default, JSON lines or a file with `[log]` (or `gk::log::configure`), or
/// any sink of the host's own (`gk::log::set_sink`).
///
/// Thread-safe throughout.

#include "gilkeeper/config/config.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace gk {

/// One named value of an event.
struct LogField {
  std::string key;
  std::variant<std::string, std::int64_t, double, bool> value;
};

/// One log event.
struct LogEvent {
  std::chrono::system_clock::time_point time = std::chrono::system_clock::now();
  LogLevel level = LogLevel::info;
  /// Stable, snake_case: what happened (`slow_call`).
  std::string name;
  /// One human-readable line.
  std::string message;
  std::vector<LogField> fields;

  /// The field named `key`, or nullptr.
  const LogField* field(std::string_view key) const;
  /// The string form of a field ("" when absent).
  std::string text(std::string_view key) const;

  LogEvent& with(std::string key, std::string value);
  LogEvent& with(std::string key, const char* value) { return with(std::move(key), std::string(value)); }
  LogEvent& with(std::string key, std::int64_t value);
  LogEvent& with(std::string key, std::uint64_t value) { return with(std::move(key), static_cast<std::int64_t>(value)); }
  LogEvent& with(std::string key, int value) { return with(std::move(key), static_cast<std::int64_t>(value)); }
  LogEvent& with(std::string key, double value);
  LogEvent& with(std::string key, bool value);
};

/// Receives every event at or above the level. Called on the logger's own
/// thread (or the one calling `flush`), one event at a time, in order: it
/// must not block long and must not call into a runtime.
using LogSink = std::function<void(const LogEvent&)>;

namespace log {

/// Sets the level, format and file (`[log]`). An unopenable file is a
/// ConfigError naming it.
void configure(const LogConfig& config);

/// Sends every event to `sink` instead of the configured writer (nullptr:
/// back to it).
void set_sink(LogSink sink);

void set_level(LogLevel level);
LogLevel level() noexcept;

/// Whether an event at `level` would be written (cheap: one atomic load).
bool enabled(LogLevel level) noexcept;

/// Queues one event (dropped below the level) for the logger's own thread
/// (`gk-log`), which writes events in batches a few milliseconds apart and
/// alerts (warn and above) at once: logging costs the calling thread a
/// queue push. Past 100,000 waiting events, events are dropped and a
/// `log_dropped` event says how many.
void emit(LogEvent event);

/// Writes every queued event now, on the calling thread (also done at
/// exit). Called by `Runtime::shutdown` and the CLI at the end of a run.
void flush();

/// The text form: `2026-12-07T10:00:00.123Z WARN slow_call: <message>
/// key=value ...`; multi-line fields (stacks) follow on their own lines,
/// indented.
std::string to_text(const LogEvent& event);

/// One JSON object: `{"time":..., "level":..., "event":..., "message":...,
/// <fields>}` (no newline).
std::string to_json(const LogEvent& event);

const char* level_name(LogLevel level) noexcept;

} // namespace log
} // namespace gk
