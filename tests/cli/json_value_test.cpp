// The CLI's JSON codec: the direct encoder writes exactly what the JSON
// document path writes, and names where an unencodable value sits.
#include "../../cli/json_value.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

using namespace gk;
using gk::cli::Json;

namespace {

std::string via_document(const Value& v) {
  Json j;
  REQUIRE_FALSE(cli::value_to_json(v, j));
  return cli::dump_line(j);
}

} // namespace

TEST_CASE("the direct JSON encoder writes what the document path writes", "[cli][json]") {
  std::vector<Value> values = {
      Value(), Value(true), Value(false), Value(std::int64_t{0}), Value(std::int64_t{-42}),
      Value(std::numeric_limits<std::int64_t>::min()), Value(std::numeric_limits<std::int64_t>::max()),
      Value(0.5), Value(1.0), Value(-0.0), Value(1e15), Value(1e16), Value(1e-7), Value(0.1 + 0.2),
      Value(123456789.125), Value(5e-324), Value(1.7976931348623157e308),
      Value(std::string("")), Value(std::string("plain")), Value(std::string("quote \" backslash \\ slash /")),
      Value(std::string("\b\f\n\r\t\x01\x1f\x7f")), Value(std::string("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80")),
      Value(std::string("bad \xff utf-8")), Value(std::string("esc\" then \xc3\xa9 after \n")),
      Value::dict({{"k\x01", Value(std::string("v\" \xe2\x82\xac"))}, {"dup", 1}, {"dup", 2}}), Value(Bytes{std::string("\x00\x01\xfe", 3)}),
      Value(List{}), Value(Dict{}),
      Value::dict({{"a", 1}, {"b", Value(List{Value(1), Value(2.5), Value("x")})}, {"\"k\"", Value()}}),
      Value(List{Value::dict({{"nested", Value(List{Value(List{})})}})}),
  };
  for (auto& v : values) {
    std::string direct;
    REQUIRE_FALSE(cli::encode_json(v, direct));
    CHECK(direct == via_document(v));
  }
}

TEST_CASE("the direct JSON encoder names where NaN, infinity or a Ref sits and leaves the output as it was",
          "[cli][json]") {
  std::string out = "prefix";
  Value v = Value::dict({{"ok", 1}, {"scores", Value(List{Value(1.0), Value(std::nan(""))})}});
  Error e = cli::encode_json(v, out);
  REQUIRE(e);
  CHECK(e.code == ErrorCode::conversion);
  CHECK(e.where == "result[\"scores\"][1]");
  CHECK(e.message.find("NaN has no JSON form") != std::string::npos);
  CHECK(out == "prefix");
  Value inf = Value(List{Value(-std::numeric_limits<double>::infinity())});
  e = cli::encode_json(inf, out, "value");
  REQUIRE(e);
  CHECK(e.where == "value[0]");
  CHECK(e.message.find("-inf") != std::string::npos);
}
