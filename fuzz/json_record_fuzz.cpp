// Fuzzes the CLI's JSONL record parser: a line is parsed as `gilkeeper run`
// parses it (gk::cli::parse_record), and what parses must write back as JSON
// (encode_json and value_to_json agreeing) and read back to the same Value.
#include "cli/json_value.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

[[noreturn]] void broken(const char* what, const std::string& detail) {
  std::fprintf(stderr, "json_record_fuzz: %s: %s\n", what, detail.c_str());
  std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace gk::cli;
  std::string_view text(reinterpret_cast<const char*>(data), size);

  gk::Value value;
  gk::Error error = parse_record(text, value);

  // The errors file shows any input as JSON text.
  const std::string shown = input_json_text(text, !error);
  if (!error && !Json::accept(shown))
    broken("input_json_text of a parsed record is not JSON", shown);
  if (error && !Json::accept(input_json_text(text)))
    broken("input_json_text of a rejected record is not JSON", shown);
  if (error)
    return 0;

  std::string encoded;
  if (gk::Error e = encode_json(value, encoded))
    broken("a parsed record does not encode", e.to_string());
  Json json;
  if (gk::Error e = value_to_json(value, json))
    broken("a parsed record does not convert", e.to_string());
  if (dump_line(json) != encoded)
    broken("encode_json and value_to_json disagree", encoded + " vs " + dump_line(json));

  gk::Value again;
  if (gk::Error e = parse_record(encoded, again))
    broken("an encoded record does not parse", e.to_string() + " in " + encoded);
  if (!(again == value))
    broken("a record does not read back equal", encoded);
  return 0;
}
