// Value <-> Python conversions: each edge-case decision, through a runtime.
#include "../support.hpp"

#include <catch2/catch.hpp>

#include <cmath>

using namespace gk;

namespace {
Value echo(Runtime& rt, const Value& v) {
  auto r = rt.call("gk_testmod:identity", {v});
  REQUIRE(r.has_value());
  return *r;
}
} // namespace

TEST_CASE("scalars, strings, bytes, lists and dicts round-trip unchanged", "[interop][value]") {
  Runtime rt(test::test_config());
  std::vector<Value> values = {
      Value(), Value(true), Value(false), Value(0), Value(-7), Value(INT64_MAX), Value(INT64_MIN),
      Value(2.5), Value(""), Value("héllo ✓"), Value(Bytes{std::string("\0\xff\x01", 3)}),
      Value::list({1, "two", 3.0, Value::list({}), Value()}),
      Value::dict({{"z", 1}, {"a", Value::dict({{"nested", Value::list({true})}})}})};
  for (auto& v : values)
    CHECK(echo(rt, v) == v);
}

TEST_CASE("dict key order is kept both ways", "[interop][value]") {
  Runtime rt(test::test_config());
  auto v = Value::dict({{"b", 1}, {"a", 2}, {"c", 3}});
  auto back = echo(rt, v);
  REQUIRE(back.is_dict());
  CHECK(back.as_dict()[0].first == "b");
  CHECK(back.as_dict()[2].first == "c");
}

TEST_CASE("NaN and infinities convert to doubles", "[interop][value]") {
  Runtime rt(test::test_config());
  auto r = rt.call("gk_testmod:special_floats");
  REQUIRE(r.has_value());
  auto& l = r->as_list();
  CHECK(std::isnan(l[0].as_double()));
  CHECK(std::isinf(l[1].as_double()));
  CHECK(l[1].as_double() > 0);
  CHECK(l[2].as_double() < 0);
}

TEST_CASE("tuples become lists and bytearray becomes bytes", "[interop][value]") {
  Runtime rt(test::test_config());
  auto r = rt.call("gk_testmod:tuple_and_bytearray");
  REQUIRE(r.has_value());
  CHECK(*r == Value::list({1, Bytes{"ab"}, Value::list({2, 3})}));
}

TEST_CASE("an object with no Value form is a conversion error naming where it sits", "[interop][value]") {
  Runtime rt(test::test_config());
  auto r = rt.call("gk_testmod:with_datetime");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::conversion);
  CHECK(r.error().where == "result[2][\"when\"]");
  CHECK(r.error().message == "result[2][\"when\"]: datetime.datetime has no Value form (ask for a Ref to keep it in the runtime)");
}

TEST_CASE("ints beyond int64 are conversion errors", "[interop][value]") {
  Runtime rt(test::test_config());
  auto r = rt.call("gk_testmod:big_int");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::conversion);
  CHECK(r.error().message == "result: int does not fit in int64");
}

TEST_CASE("sets, non-str keys and lone surrogates are conversion errors", "[interop][value]") {
  Runtime rt(test::test_config());
  auto set = rt.call("gk_testmod:make_set");
  REQUIRE_FALSE(set.has_value());
  CHECK(set.error().message == "result: set has no Value form (convert it to a sorted list)");
  auto key = rt.call("gk_testmod:non_str_key");
  REQUIRE_FALSE(key.has_value());
  CHECK(key.error().message == "result: dict key 1 (int) is not a str");
  auto sur = rt.call("gk_testmod:surrogate");
  REQUIRE_FALSE(sur.has_value());
  CHECK(sur.error().code == ErrorCode::conversion);
  CHECK(sur.error().message == "result: str is not valid UTF-8 (it holds lone surrogates)");
}

TEST_CASE("nesting deeper than the limit and cycles are conversion errors", "[interop][value]") {
  Runtime rt(test::test_config());
  auto ok = rt.call("gk_testmod:deep", {kMaxDepth});
  CHECK(ok.has_value());
  auto deep = rt.call("gk_testmod:deep", {kMaxDepth + 1});
  REQUIRE_FALSE(deep.has_value());
  CHECK(deep.error().code == ErrorCode::conversion);
  auto cyc = rt.call("gk_testmod:cyclic");
  REQUIRE_FALSE(cyc.has_value());
  CHECK(cyc.error().code == ErrorCode::conversion);
  CHECK(cyc.error().message.find("contains itself") != std::string::npos);
}

TEST_CASE("a host string that is not UTF-8 is a conversion error naming the argument", "[interop][value]") {
  Runtime rt(test::test_config());
  auto r = rt.call("gk_testmod:identity", {Value::dict({{"k", Value::list({std::string("a\xff")})}})});
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::conversion);
  CHECK(r.error().where == "args[0][\"k\"][0]");
}

TEST_CASE("keyword arguments arrive as keywords", "[interop][value]") {
  Runtime rt(test::test_config());
  auto r = rt.call("gk_testmod:echo", {1}, {{"name", "x"}});
  REQUIRE(r.has_value());
  CHECK(*r == Value::dict({{"args", Value::list({1})}, {"kwargs", Value::dict({{"name", "x"}})}}));
}
