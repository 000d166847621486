#pragma once

// JSON <-> Value, the way `gilkeeper run` reads records and writes results.
//
// JSON to Value (input records):
// - object -> dict (key order kept), array -> list, string -> string,
//   true/false -> bool, null -> null, a float -> double;
// - an integer -> int64; an integer outside int64 is a `bad_input` error
//   naming where it sits (`input["id"]: integer 18446744073709551615 is
//   beyond int64`); so are a number too large for a double (`1e400`) and
//   nesting deeper than gk::kMaxDepth;
// - duplicate keys: the last value wins, at the first key's position (as
//   Python's json.loads does);
// - JSON has no bytes: input never produces bytes.
//
// Value to JSON (results):
// - null, bool, int, string, list and dict map one to one;
// - a finite double -> a JSON number (written so that it reads back equal);
// - bytes -> `{"__bytes__": "<standard base64, padded>"}`;
// - NaN or +-inf, a Ref, or nesting deeper than gk::kMaxDepth is a
//   `conversion` error naming where it sits
//   (`result["score"]: NaN has no JSON form`).
//
// All functions are pure and thread-safe.

#include "gilkeeper/interop/error.hpp"
#include "gilkeeper/interop/value.hpp"

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace gk::cli {

/// JSON with object keys in document order.
using Json = nlohmann::ordered_json;

/// Parses one record straight into a Value. Returns a `bad_input` Error for
/// text that is not JSON (the parser's message, with the column), an integer
/// beyond int64, or too deep nesting (both naming where they sit).
Error parse_record(std::string_view text, Value& value);

/// How a record's input is shown in the errors file, as JSON text: the
/// record's own text, verbatim (without surrounding whitespace or a byte
/// order mark), when it is JSON; else the raw text as a JSON string.
/// Verbatim keeps what no parsed form can: integers beyond int64, number
/// spellings, duplicate keys. `known_json` skips the check.
std::string input_json_text(std::string_view text, bool known_json = false);

/// Converts a Value to JSON; `path` names the root in messages. Returns a
/// `conversion` Error (with `where` set) for NaN/inf, a Ref, or too deep
/// nesting.
Error value_to_json(const Value& value, Json& out, const std::string& path = "result");

/// Appends the JSON text of a Value to `out`, on one line, as
/// `dump_line(value_to_json(...))` would write it, without building a JSON
/// document. On error `out` is left as it was.
Error encode_json(const Value& value, std::string& out, const std::string& path = "result");
/// Standard base64 (RFC 4648, with padding).
std::string base64_encode(std::string_view data);

/// Serialises JSON on one line; invalid UTF-8 (only possible in raw input
/// text) is replaced by U+FFFD rather than failing.
std::string dump_line(const Json& json);

} // namespace gk::cli
