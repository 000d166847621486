#pragma once

/// Durations and timeouts as written in gilkeeper config files.
///
/// A duration is a string: an integer or decimal number followed by a unit
/// (`"250ms"`, `"5s"`, `"2m"`, `"1.5s"`, `"100us"`, `"1h"`). A timeout is a
/// duration or the literal `"none"` (no deadline at all).

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace gk {

/// A timeout: either a finite duration or "none" (no deadline).
/// Thread-safe: a plain value.
struct Timeout {
  /// True for `"none"`: the request never expires.
  bool infinite = false;
  /// The budget when `infinite` is false.
  std::chrono::nanoseconds value{0};

  static Timeout none() { return Timeout{true, {}}; }
  static Timeout after(std::chrono::nanoseconds d) { return Timeout{false, d}; }

  friend bool operator==(const Timeout& a, const Timeout& b) {
    return a.infinite == b.infinite && (a.infinite || a.value == b.value);
  }
  friend bool operator!=(const Timeout& a, const Timeout& b) { return !(a == b); }
};

/// Parses a duration string such as `"250ms"`. Accepted units: `ns`, `us`,
/// `ms`, `s`, `m`, `h`. Returns nullopt for anything else (negative numbers,
/// missing unit, unknown unit, trailing text). Thread-safe.
std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text);

/// Parses a timeout: a duration or `"none"`. Thread-safe.
std::optional<Timeout> parse_timeout(std::string_view text);

/// Renders a duration the way a config file would write it (`"250ms"`).
std::string format_duration(std::chrono::nanoseconds d);

/// Renders a timeout (`"none"` or a duration).
std::string format_timeout(const Timeout& t);

} // namespace gk
