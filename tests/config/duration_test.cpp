#include "gilkeeper/config/duration.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <limits>

using namespace std::chrono_literals;

TEST_CASE("every duration unit is understood", "[config][duration]") {
  CHECK(gk::parse_duration("7ns") == 7ns);
  CHECK(gk::parse_duration("7us") == 7us);
  CHECK(gk::parse_duration("250ms") == 250ms);
  CHECK(gk::parse_duration("5s") == 5s);
  CHECK(gk::parse_duration("2m") == 2min);
  CHECK(gk::parse_duration("1h") == 1h);
}

TEST_CASE("decimal durations are exact to the nanosecond", "[config][duration]") {
  CHECK(gk::parse_duration("1.5s") == 1500ms);
  CHECK(gk::parse_duration("0.25s") == 250ms);
  CHECK(gk::parse_duration("1.5m") == 90s);
  CHECK(gk::parse_duration("0.5h") == 30min);
  CHECK(gk::parse_duration("2.5ms") == 2500us);
  CHECK(gk::parse_duration("0.000000001s") == 1ns);
  // Finer than a nanosecond is truncated, not rounded.
  CHECK(gk::parse_duration("1.9ns") == 1ns);
  CHECK(gk::parse_duration("0.0000000019s") == 1ns);
}

TEST_CASE("zero and leading zeros are accepted as durations", "[config][duration]") {
  CHECK(gk::parse_duration("0s") == 0ns);
  CHECK(gk::parse_duration("0ms") == 0ns);
  CHECK(gk::parse_duration("007s") == 7s);
}

TEST_CASE("malformed durations are rejected", "[config][duration]") {
  for (const char* text :
       {"5",    "5 sec", "5 s", " 5s", "5s ", "-1s",    "+1s",   "ms",  "",     "s",
        "5sec", "5S",    "5d",  ".5s", "5.s", "1.2.3s", "1e3ms", "5s5", "none", "5µs"}) {
    INFO("text: \"" << text << "\"");
    CHECK_FALSE(gk::parse_duration(text).has_value());
  }
}

TEST_CASE("durations that overflow 64-bit nanoseconds are rejected", "[config][duration]") {
  CHECK(gk::parse_duration("9223372036854775807ns") ==
        std::chrono::nanoseconds(std::numeric_limits<std::int64_t>::max()));
  CHECK_FALSE(gk::parse_duration("9223372036854775808ns").has_value());
  CHECK_FALSE(gk::parse_duration("3000000h").has_value());
  CHECK_FALSE(gk::parse_duration("99999999999999999999999s").has_value());
}

TEST_CASE("a timeout is a duration or \"none\"", "[config][duration]") {
  CHECK(gk::parse_timeout("none") == gk::Timeout::none());
  CHECK(gk::parse_timeout("none")->infinite);
  CHECK(gk::parse_timeout("5s") == gk::Timeout::after(5s));
  CHECK(gk::parse_timeout("0s") == gk::Timeout::after(0s));
  CHECK_FALSE(gk::parse_timeout("None").has_value());
  CHECK_FALSE(gk::parse_timeout("never").has_value());
  CHECK_FALSE(gk::parse_timeout("5").has_value());
  CHECK_FALSE(gk::parse_timeout("-1s").has_value());
  CHECK_FALSE(gk::parse_timeout("").has_value());
}

TEST_CASE("durations are formatted in the largest exact unit", "[config][duration]") {
  CHECK(gk::format_duration(0ns) == "0s");
  CHECK(gk::format_duration(250ms) == "250ms");
  CHECK(gk::format_duration(1500ms) == "1500ms");
  CHECK(gk::format_duration(5s) == "5s");
  CHECK(gk::format_duration(90s) == "90s");
  CHECK(gk::format_duration(120s) == "2m");
  CHECK(gk::format_duration(2h) == "2h");
  CHECK(gk::format_duration(100us) == "100us");
  CHECK(gk::format_duration(7ns) == "7ns");
  CHECK(gk::format_timeout(gk::Timeout::none()) == "none");
  CHECK(gk::format_timeout(gk::Timeout::after(30s)) == "30s");
}

TEST_CASE("a formatted duration parses back to the same value", "[config][duration]") {
  for (auto d :
       {std::chrono::nanoseconds(0), std::chrono::nanoseconds(1),
        std::chrono::nanoseconds(1'500'000'001), std::chrono::nanoseconds(3'600'000'000'000),
        std::chrono::nanoseconds(std::numeric_limits<std::int64_t>::max())}) {
    INFO("nanoseconds: " << d.count());
    CHECK(gk::parse_duration(gk::format_duration(d)) == d);
  }
  CHECK(gk::parse_timeout(gk::format_timeout(gk::Timeout::none())) == gk::Timeout::none());
}
