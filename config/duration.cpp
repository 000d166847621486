#include "gilkeeper/config/duration.hpp"

#include <cstdint>
#include <limits>

namespace gk {
namespace {

/// A unit suffix and how many nanoseconds it stands for.
struct DurationUnit {
  std::string_view suffix;
  std::int64_t nanoseconds;
};

// Largest first: format_duration picks the largest unit that divides exactly.
constexpr DurationUnit duration_units[] = {
    {"h", 3'600'000'000'000}, {"m", 60'000'000'000}, {"s", 1'000'000'000},
    {"ms", 1'000'000},        {"us", 1'000},         {"ns", 1},
};

bool is_digit(char c) { return c >= '0' && c <= '9'; }

} // namespace

std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text) {
  std::size_t pos = 0;
  const std::size_t integer_begin = pos;
  while (pos < text.size() && is_digit(text[pos])) ++pos;
  const std::string_view integer_digits = text.substr(integer_begin, pos - integer_begin);
  if (integer_digits.empty()) return std::nullopt; // no sign, no leading '.', no unit alone

  std::string_view fraction_digits;
  if (pos < text.size() && text[pos] == '.') {
    const std::size_t fraction_begin = ++pos;
    while (pos < text.size() && is_digit(text[pos])) ++pos;
    fraction_digits = text.substr(fraction_begin, pos - fraction_begin);
    if (fraction_digits.empty()) return std::nullopt; // "5.s"
  }

  const std::string_view suffix = text.substr(pos);
  std::int64_t unit = 0;
  for (const auto& candidate : duration_units)
    if (candidate.suffix == suffix) unit = candidate.nanoseconds;
  if (unit == 0) return std::nullopt; // missing, unknown or padded unit

  constexpr std::int64_t max = std::numeric_limits<std::int64_t>::max();
  std::int64_t whole = 0;
  for (char c : integer_digits) {
    const int digit = c - '0';
    if (whole > (max - digit) / 10) return std::nullopt;
    whole = whole * 10 + digit;
  }
  if (whole > max / unit) return std::nullopt;
  std::int64_t total = whole * unit;

  // Every unit is a multiple of a power of ten, so unit / 10^i is exact down
  // to one nanosecond; digits finer than a nanosecond are truncated.
  std::int64_t place = unit;
  std::int64_t fraction = 0;
  for (char c : fraction_digits) {
    place /= 10;
    fraction += (c - '0') * place;
  }
  if (total > max - fraction) return std::nullopt;
  total += fraction;
  return std::chrono::nanoseconds(total);
}

std::optional<Timeout> parse_timeout(std::string_view text) {
  if (text == "none") return Timeout::none();
  if (auto value = parse_duration(text)) return Timeout::after(*value);
  return std::nullopt;
}

std::string format_duration(std::chrono::nanoseconds d) {
  const std::int64_t count = d.count();
  if (count == 0) return "0s";
  for (const auto& unit : duration_units)
    if (count % unit.nanoseconds == 0)
      return std::to_string(count / unit.nanoseconds) + std::string(unit.suffix);
  return std::to_string(count) + "ns"; // unreachable: "ns" divides everything
}

std::string format_timeout(const Timeout& t) {
  return t.infinite ? std::string("none") : format_duration(t.value);
}

} // namespace gk
