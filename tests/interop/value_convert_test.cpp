// Typed values: Value::from / as<T>, ValueConverter for a user type, get /
// get_or, the fast accessors' ValueKindError, and repr's escaping. No runtime.
#include "gilkeeper/interop/value.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

using namespace gk;

namespace {

template <class T>
void check_round_trip(const T& x) {
  Value v = Value::from(x);
  Expected<T> back = v.as<T>();
  INFO(v.repr());
  REQUIRE(back.has_value());
  CHECK(*back == x);
}

template <class T>
void check_int_limits() {
  check_round_trip<T>(std::numeric_limits<T>::min());
  check_round_trip<T>(std::numeric_limits<T>::max() / 2);
  if constexpr (sizeof(T) < sizeof(std::int64_t) || std::is_signed_v<T>)
    check_round_trip<T>(std::numeric_limits<T>::max());
}

/// The conversion error of `r`. PRECONDITION: `r` holds an error.
template <class T>
Error error_of(const Expected<T>& r) {
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::conversion);
  return r.error();
}

bool is_ascii(const std::string& s) {
  for (unsigned char c : s)
    if (c >= 0x80)
      return false;
  return true;
}

struct Reading {
  std::string sensor;
  std::vector<double> samples;
  std::optional<std::string> unit;
  friend bool operator==(const Reading& a, const Reading& b) {
    return a.sensor == b.sensor && a.samples == b.samples && a.unit == b.unit;
  }
};

} // namespace

namespace gk {
template <>
struct ValueConverter<Reading> {
  static Value to_value(const Reading& r) {
    return Value::dict({{"sensor", r.sensor}, {"samples", Value::from(r.samples)}, {"unit", Value::from(r.unit)}});
  }
  static Expected<Reading> from_value(const Value& v) {
    auto sensor = v.get<std::string>("sensor");
    if (!sensor)
      return sensor.error();
    auto samples = v.get<std::vector<double>>("samples");
    if (!samples)
      return samples.error();
    auto unit = v.get_or<std::optional<std::string>>("unit", std::nullopt);
    if (!unit)
      return unit.error();
    return Reading{*sensor, *samples, *unit};
  }
};
} // namespace gk

TEST_CASE("as<T> round-trips every standard type through Value::from", "[interop][value]") {
  check_int_limits<std::int8_t>();
  check_int_limits<std::uint8_t>();
  check_int_limits<std::int16_t>();
  check_int_limits<std::uint16_t>();
  check_int_limits<std::int32_t>();
  check_int_limits<std::uint32_t>();
  check_int_limits<std::int64_t>();
  check_int_limits<std::uint64_t>();
  check_int_limits<char>();
  check_int_limits<long>();
  check_int_limits<unsigned long long>();
  check_round_trip<std::uint64_t>(static_cast<std::uint64_t>(INT64_MAX));
  check_round_trip(2.5);
  check_round_trip(-0.125f);
  check_round_trip(std::numeric_limits<double>::infinity());
  check_round_trip(true);
  check_round_trip(false);
  check_round_trip(std::string("héllo ✓"));
  check_round_trip(Bytes{std::string("\0\xff\x01", 3)});
  check_round_trip(std::vector<int>{1, -2, 3});
  check_round_trip(std::vector<std::string>{"a", "", "c"});
  check_round_trip(std::vector<bool>{true, false});
  check_round_trip(std::vector<std::vector<int>>{{1}, {}, {2, 3}});
  check_round_trip(std::map<std::string, int>{{"b", 2}, {"a", 1}});
  check_round_trip(std::unordered_map<std::string, std::vector<double>>{{"x", {1.5}}, {"y", {}}});
  check_round_trip(std::optional<int>(7));
  check_round_trip(std::optional<int>());
  check_round_trip(std::optional<std::vector<std::string>>(std::vector<std::string>{"x"}));
  check_round_trip(std::tuple<int, std::string, double>(1, "two", 3.0));
  check_round_trip(std::tuple<>());
  check_round_trip(std::pair<std::string, bool>("on", true));
  check_round_trip(Value::list({1, "x", Value()}));
  check_round_trip(List{Value(1), Value("x")});
  check_round_trip(Dict{{"k", Value(1)}, {"a", Value::list({})}});
  check_round_trip(Ref(std::make_shared<const detail::RefState>(7, 1, "Box", nullptr)));

  // Into a Value only.
  CHECK(Value::from("literal") == Value("literal"));
  const char* pointer = "pointer";
  CHECK(Value::from(pointer) == Value("pointer"));
  CHECK(Value::from(std::string_view("view")) == Value("view"));
  // The shapes Python sees.
  CHECK(Value::from(std::pair<int, std::string>(1, "a")) == Value::list({1, "a"}));
  CHECK(Value::from(std::optional<int>()) == Value());
  CHECK(Value::from(std::map<std::string, int>{{"b", 2}, {"a", 1}}) == Value::dict({{"a", 1}, {"b", 2}}));
  CHECK(Value::from(Dict{{"k", Value(1)}}).is_dict());
  CHECK(Value::from(std::uint8_t{200}) == Value(200));
}

TEST_CASE("a wrong kind is a conversion error naming both kinds, never bad_variant_access", "[interop][value]") {
  CHECK_NOTHROW(Value("x").as<int>());
  auto e = error_of(Value("x").as<int>());
  CHECK(e.message == "expected int, got string");
  CHECK(e.where.empty());
  CHECK(error_of(Value(1).as<std::string>()).message == "expected string, got int");
  CHECK(error_of(Value::list({}).as<Dict>()).message == "expected dict, got list");
  CHECK(error_of(Value().as<double>()).message == "expected double, got null");
  CHECK(error_of(Value("x").as<Bytes>()).message == "expected bytes, got string");
  CHECK(error_of(Value(Bytes{"x"}).as<std::string>()).message == "expected string, got bytes");
  CHECK(error_of(Value(1).as<Ref>()).message == "expected ref, got int");
  CHECK(error_of(Value("x").as<std::optional<int>>()).message == "expected int, got string");
  CHECK(error_of(Value::dict({}).as<std::vector<int>>()).message == "expected list, got dict");
  CHECK(error_of(Value::list({}).as<std::map<std::string, int>>()).message == "expected dict, got list");
}

TEST_CASE("a nested conversion error names the full path inside the value", "[interop][value]") {
  auto v = Value::list({Value::dict({}), Value::dict({{"when", 1}}), Value::dict({{"when", "noon"}})});
  auto e = error_of(v.as<std::vector<std::map<std::string, int>>>());
  CHECK(e.where == "[2][\"when\"]");
  CHECK(e.message == "[2][\"when\"]: expected int, got string");
  // The place is said once: the message starts with it.
  CHECK(e.to_string() == "conversion: [2][\"when\"]: expected int, got string");

  auto t = error_of(Value::list({1, Value::list({true, 2})}).as<std::tuple<int, std::pair<bool, bool>>>());
  CHECK(t.where == "[1][1]");
  CHECK(t.message == "[1][1]: expected bool, got int");

  auto k = error_of(Value::dict({{"a\"b", "x"}}).as<std::unordered_map<std::string, int>>());
  CHECK(k.where == "[\"a\\\"b\"]");
}

TEST_CASE("integers are range-checked and bools never mix with ints", "[interop][value]") {
  CHECK(error_of(Value(-1).as<unsigned>()).message == "-1 does not fit in uint32");
  CHECK(error_of(Value(-1).as<std::uint64_t>()).message == "-1 does not fit in uint64");
  CHECK(error_of(Value(300).as<std::uint8_t>()).message == "300 does not fit in uint8");
  CHECK(error_of(Value(-129).as<std::int8_t>()).message == "-129 does not fit in int8");
  CHECK(error_of(Value(INT64_MIN).as<std::int32_t>()).message == "-9223372036854775808 does not fit in int32");
  CHECK(*Value(255).as<std::uint8_t>() == 255);
  CHECK(*Value(-128).as<std::int8_t>() == -128);
  CHECK(error_of(Value::list({1, 1000}).as<std::vector<std::int8_t>>()).where == "[1]");

  CHECK(error_of(Value(true).as<int>()).message == "expected int, got bool");
  CHECK(error_of(Value(1).as<bool>()).message == "expected bool, got int");

  CHECK_THROWS_AS(Value::from(std::numeric_limits<std::uint64_t>::max()), std::out_of_range);
  CHECK_THROWS_AS(Value(static_cast<std::uint64_t>(INT64_MAX) + 1), std::out_of_range);
}

TEST_CASE("ints widen to doubles and doubles narrow to ints only when integral and in range", "[interop][value]") {
  CHECK(*Value(3).as<double>() == 3.0);
  CHECK(*Value(-3).as<float>() == -3.0f);
  CHECK(*Value(3.0).as<int>() == 3);
  CHECK(*Value(-0.0).as<unsigned>() == 0u);
  CHECK(*Value(9223372036854775808.0).as<std::uint64_t>() == 9223372036854775808ull);
  CHECK(error_of(Value(9223372036854775808.0).as<std::int64_t>()).message
        == "9.223372036854776e+18 does not fit in int64");
  CHECK(error_of(Value(2.5).as<int>()).message == "expected int, got double 2.5 (not an integer)");
  CHECK(error_of(Value(std::nan("")).as<int>()).message == "expected int, got double nan (not an integer)");
  CHECK(error_of(Value(-1.0).as<unsigned>()).message == "-1.0 does not fit in uint32");
  CHECK(error_of(Value(1e300).as<float>()).message == "1e+300 does not fit in float");
  CHECK(std::isinf(*Value(std::numeric_limits<double>::infinity()).as<float>()));
}

TEST_CASE("tuples and pairs take a list of exactly their length", "[interop][value]") {
  CHECK(error_of(Value::list({1, 2, 3}).as<std::pair<int, int>>()).message
        == "expected list of 2 items, got list of 3 items");
  CHECK(error_of(Value("ab").as<std::tuple<int>>()).message == "expected list of 1 item, got string");
  auto ok = Value::list({1, "x"}).as<std::tuple<int, std::string>>();
  REQUIRE(ok.has_value());
  CHECK(std::get<1>(*ok) == "x");
}

TEST_CASE("optional maps null to nullopt and anything else to its value", "[interop][value]") {
  auto none = Value().as<std::optional<std::string>>();
  REQUIRE(none.has_value());
  CHECK_FALSE(none->has_value());
  auto some = Value("x").as<std::optional<std::string>>();
  REQUIRE(some.has_value());
  CHECK(**some == "x");
  CHECK(error_of(Value().as<std::string>()).message == "expected string, got null");
}

TEST_CASE("a user type converts through ValueConverter, with the full path of a nested error", "[interop][value]") {
  std::vector<Reading> readings = {{"t1", {1.0, 2.5}, "C"}, {"t2", {}, std::nullopt}};
  check_round_trip(readings);
  CHECK(Value::from(readings[1]) == Value::dict({{"sensor", "t2"}, {"samples", Value::list({})}, {"unit", Value()}}));

  // A missing optional field is nullopt; ints in the samples widen.
  auto short_form = Value::dict({{"sensor", "t3"}, {"samples", Value::list({1, 2})}}).as<Reading>();
  REQUIRE(short_form.has_value());
  CHECK(*short_form == Reading{"t3", {1.0, 2.0}, std::nullopt});

  auto bad_sample = Value::list({Value::from(readings[0]),
                                 Value::dict({{"sensor", "t2"}, {"samples", Value::list({1.0, 2.0, "hot"})}})});
  auto e = error_of(bad_sample.as<std::vector<Reading>>());
  CHECK(e.where == "[1][\"samples\"][2]");
  CHECK(e.message == "[1][\"samples\"][2]: expected double, got string");

  auto missing = error_of(Value::list({Value::dict({{"samples", Value::list({})}})}).as<std::vector<Reading>>());
  CHECK(missing.where == "[0][\"sensor\"]");
  CHECK(missing.message == "[0][\"sensor\"]: dict has no key \"sensor\"");

  auto wrong_unit = error_of(Value::dict({{"sensor", "t"}, {"samples", Value::list({})}, {"unit", 5}}).as<Reading>());
  CHECK(wrong_unit.where == "[\"unit\"]");
  CHECK(wrong_unit.message == "[\"unit\"]: expected string, got int");
}

TEST_CASE("get and get_or read dict entries and name a missing key", "[interop][value]") {
  auto v = Value::dict({{"n", 3}, {"s", "x"}, {"none", Value()}, {"list", Value::list({1, "two"})}});
  CHECK(*v.get<int>("n") == 3);
  CHECK(*v.get("s") == Value("x"));

  auto missing = error_of(v.get<int>("when"));
  CHECK(missing.where == "[\"when\"]");
  CHECK(missing.message == "[\"when\"]: dict has no key \"when\"");

  auto wrong = error_of(v.get<int>("s"));
  CHECK(wrong.where == "[\"s\"]");
  CHECK(wrong.message == "[\"s\"]: expected int, got string");
  CHECK(error_of(v.get<std::vector<int>>("list")).where == "[\"list\"][1]");

  CHECK(error_of(Value::list({}).get<int>("n")).message == "expected dict, got list");
  CHECK(error_of(Value().get_or<int>("n", 1)).message == "expected dict, got null");

  CHECK(*v.get_or<int>("retries", 5) == 5);
  CHECK(*v.get_or<int>("n", 5) == 3);
  CHECK(*v.get_or<std::string>("name", "anonymous") == "anonymous");
  // A present entry of the wrong kind is an error, never the fallback.
  CHECK(error_of(v.get_or<int>("s", 5)).where == "[\"s\"]");
  CHECK(error_of(v.get_or<int>("none", 5)).message == "[\"none\"]: expected int, got null");
  auto none = v.get_or<std::optional<int>>("none", 1);
  REQUIRE(none.has_value());
  CHECK_FALSE(none->has_value());

  // find stays for existing callers.
  REQUIRE(v.find("n") != nullptr);
  CHECK(v.find("missing") == nullptr);
}

TEST_CASE("the fast accessors throw ValueKindError naming both kinds, and as_double takes an int",
          "[interop][value]") {
  CHECK(Value(3).as_double() == 3.0);
  CHECK(Value(-7).as_number() == -7.0);
  CHECK(Value(2.5).as_double() == 2.5);
  CHECK(Value("x").as_string() == "x");

  try {
    (void)Value("x").as_int();
    FAIL("no ValueKindError");
  } catch (const ValueKindError& e) {
    CHECK(std::string(e.what()) == "gk::Value: expected int, got string");
    CHECK(e.expected() == Value::Kind::integer);
    CHECK(e.actual() == Value::Kind::string);
  }
  CHECK_THROWS_AS(Value(1).as_bool(), std::logic_error);
  CHECK_THROWS_AS(Value("1").as_double(), ValueKindError);
  CHECK_THROWS_AS(Value(1.5).as_int(), ValueKindError);
  CHECK_THROWS_AS(Value().as_bytes(), ValueKindError);
  CHECK_THROWS_AS(Value().as_ref(), ValueKindError);
  Value mutable_value = Value::dict({});
  CHECK_THROWS_AS(mutable_value.as_list(), ValueKindError);
  CHECK_NOTHROW(mutable_value.as_dict().emplace_back("k", 1));
  CHECK(mutable_value.as_dict().size() == 1);
  CHECK_THROWS_WITH(Value::list({}).as_string(), "gk::Value: expected string, got list");
}

TEST_CASE("repr escapes bytes as Python does, 0x80-0xff and control characters included", "[interop][value]") {
  CHECK(Value(Bytes{std::string("\x00\x01\x7f\x80\xff", 5)}).repr() == R"(b"\x00\x01\x7f\x80\xff")");
  CHECK(Value(Bytes{"a\n\r\t\\\"'z"}).repr() == R"(b"a\n\r\t\\\"'z")");
  for (int b = 0; b < 256; ++b) {
    std::string one(1, static_cast<char>(b));
    CHECK(is_ascii(Value(Bytes{one}).repr()));
  }
}

TEST_CASE("repr escapes control characters and invalid UTF-8 in strings and keeps valid text",
          "[interop][value]") {
  CHECK(Value("héllo ✓ 😀").repr() == "\"héllo ✓ 😀\"");
  CHECK(Value("a\nb\r\tc\x01\x7f\\\"'").repr() == R"("a\nb\r\tc\x01\x7f\\\"'")");
  // C1 controls and the line separators, which break log lines.
  CHECK(Value("\xc2\x85|\xe2\x80\xa8|\xe2\x80\xa9").repr() == R"("\x85|\u2028|\u2029")");
  // Bytes that are not UTF-8 show as Python's surrogateescape shows them.
  CHECK(Value(std::string("x\xff")).repr() == R"("x\udcff")");
  CHECK(Value(std::string("\xc3")).repr() == R"("\udcc3")");                    // truncated
  CHECK(Value(std::string("\xc0\xaf")).repr() == R"("\udcc0\udcaf")");          // overlong
  CHECK(Value(std::string("\xed\xa0\x80")).repr() == R"("\udced\udca0\udc80")");  // a surrogate
  CHECK(Value(std::string("\xf4\x90\x80\x80")).repr() == R"("\udcf4\udc90\udc80\udc80")");  // past U+10FFFF
  CHECK(Value(std::string("\xe2\x82" "a")).repr() == R"("\udce2\udc82a")");
  for (int b = 0x80; b < 256; ++b)
    CHECK(is_ascii(Value(std::string(1, static_cast<char>(b))).repr()));
  // Dict keys are strings too.
  CHECK(Value::dict({{"k\"\n\xff", Value(Bytes{"\xfe"})}}).repr() == R"({"k\"\n\udcff": b"\xfe"})");
}
