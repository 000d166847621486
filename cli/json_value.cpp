#include "json_value.hpp"

#include <simdjson.h>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace gk::cli {

namespace {

Error bad_input(const std::string& path, const std::string& what) {
  Error e(ErrorCode::bad_input, path.empty() ? what : path + ": " + what);
  e.where = path;
  return e;
}

Error conversion_error(const std::string& path, const std::string& what) {
  Error e(ErrorCode::conversion, path.empty() ? what : path + ": " + what);
  e.where = path;
  return e;
}

std::string key_path(const std::string& path, const std::string& key) {
  return path + "[" + Json(key).dump(-1, ' ', false, Json::error_handler_t::replace) + "]";
}

std::string index_path(const std::string& path, std::size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

// nlohmann's messages read "[json.exception.parse_error.101] parse error at
// line 1, column 5: ..."; a record is one line, so keep only the column.
std::string parser_message(const std::string& what) {
  std::string m = what;
  if (!m.empty() && m.front() == '[') {
    auto close = m.find("] ");
    if (close != std::string::npos)
      m.erase(0, close + 2);
  }
  const std::string line_prefix = "line 1, column ";
  auto at = m.find(line_prefix);
  if (at != std::string::npos)
    m.replace(at, line_prefix.size(), "column ");
  return "not JSON: " + m;
}

// True when some key appears twice. Records are small: for a few keys,
// comparing pairs beats hashing.
bool has_duplicate_keys(const Dict& d) {
  if (d.size() < 2)
    return false;
  if (d.size() > 16) {
    std::unordered_set<std::string_view> seen;
    seen.reserve(d.size());
    for (auto& kv : d)
      if (!seen.insert(kv.first).second)
        return true;
    return false;
  }
  for (std::size_t i = 1; i < d.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (d[i].first == d[j].first)
        return true;
  return false;
}

// Python's json.loads keeps the last of duplicate keys (at the position of
// the first); do the same.
void drop_duplicate_keys(Dict& d) {
  if (!has_duplicate_keys(d))
    return;
  bool any = false;
  std::unordered_map<std::string_view, std::size_t> first;
  first.reserve(d.size());
  for (std::size_t i = 0; i < d.size(); ++i) {
    auto [it, inserted] = first.emplace(d[i].first, i);
    if (!inserted)
      any = true;
  }
  if (!any)
    return;
  Dict out;
  out.reserve(first.size());
  std::unordered_map<std::string, std::size_t> slot;
  for (auto& kv : d) {
    auto it = slot.find(kv.first);
    if (it == slot.end()) {
      slot.emplace(kv.first, out.size());
      out.push_back(std::move(kv));
    } else {
      out[it->second].second = std::move(kv.second);
    }
  }
  d = std::move(out);
}

// Builds a Value straight from the parser's events (no intermediate DOM).
class ValueBuilder {
public:
  using number_integer_t = Json::number_integer_t;
  using number_unsigned_t = Json::number_unsigned_t;
  using number_float_t = Json::number_float_t;
  using string_t = Json::string_t;
  using binary_t = Json::binary_t;

  Value root;
  Error error;

  bool null() { return add(Value()); }
  bool boolean(bool b) { return add(Value(b)); }
  bool number_integer(number_integer_t i) { return add(Value(static_cast<std::int64_t>(i))); }
  bool number_unsigned(number_unsigned_t u) {
    if (u > static_cast<number_unsigned_t>(std::numeric_limits<std::int64_t>::max()))
      return fail(bad_input(path(), "integer " + std::to_string(u) + " is beyond int64"));
    return add(Value(static_cast<std::int64_t>(u)));
  }
  bool number_float(number_float_t d, const string_t& lexeme) {
    // The parser reads an integer too large even for uint64 as a float.
    if (lexeme.find_first_of(".eE") == string_t::npos)
      return fail(bad_input(path(), "integer " + lexeme + " is beyond int64"));
    return add(Value(static_cast<double>(d)));
  }
  bool string(string_t& s) { return add(Value(std::move(s))); }
  bool binary(binary_t&) { return fail(bad_input(path(), "binary values are not JSON")); }
  bool start_object(std::size_t) {
    if (!add(Value(Dict{})))
      return false;
    open_.push_back(last_);
    return true;
  }
  bool key(string_t& k) {
    // Default-construct the pair in place, then set the key: emplacing a
    // temporary Value makes GCC 12 at -O3 report a false
    // maybe-uninitialized inside std::variant.
    auto& d = open_.back()->as_dict();
    d.emplace_back();
    d.back().first = std::move(k);
    return true;
  }
  bool end_object() {
    drop_duplicate_keys(open_.back()->as_dict());
    open_.pop_back();
    return true;
  }
  bool start_array(std::size_t) {
    if (!add(Value(List{})))
      return false;
    open_.push_back(last_);
    return true;
  }
  bool end_array() {
    open_.pop_back();
    return true;
  }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& ex) {
    if (!error) {
      std::string message = parser_message(ex.what());
      // Only syntax errors say where they are; a number overflow does not.
      if (message.find("column ") == std::string::npos)
        message += " (at column " + std::to_string(position) + ")";
      error = Error(ErrorCode::bad_input, std::move(message));
    }
    return false;
  }

private:
  bool fail(Error e) {
    error = std::move(e);
    return false;
  }

  // Places a new value in the innermost open container (or at the root).
  bool add(Value v) {
    if (open_.size() > static_cast<std::size_t>(kMaxDepth))
      return fail(bad_input(path(), "nesting deeper than " + std::to_string(kMaxDepth)));
    if (open_.empty()) {
      root = std::move(v);
      last_ = &root;
      return true;
    }
    Value* parent = open_.back();
    if (parent->is_list()) {
      auto& l = parent->as_list();
      l.push_back(std::move(v));
      last_ = &l.back();
    } else {
      // A value in an object always follows its key.
      auto& d = parent->as_dict();
      d.back().second = std::move(v);
      last_ = &d.back().second;
    }
    return true;
  }

  // Where the next value would go: `input["a"][3]`.
  std::string path() const {
    std::string p = "input";
    for (const Value* c : open_) {
      if (c->is_list())
        p = index_path(p, c->as_list().size());
      else if (!c->as_dict().empty())
        p = key_path(p, c->as_dict().back().first);
    }
    return p;
  }

  // Pointers into containers stay valid: a container only grows while it is
  // the innermost open one, and its parent no longer changes by then.
  std::vector<Value*> open_;
  Value* last_ = nullptr;
};

// A buffer (a numpy array, a memoryview) is binary data with a layout that
// JSON cannot carry without choosing a form for the user.
std::string buffer_has_no_json(const Buffer& b) {
  return "a buffer (" + Value(b).repr() + ": a numpy array or a memoryview) has no JSON form; return "
         "arr.tolist() or bytes(view)";
}

Error value_to_json_impl(const Value& v, Json& out, const std::string& path, int depth) {
  if (depth > kMaxDepth)
    return conversion_error(path, "nesting deeper than " + std::to_string(kMaxDepth));
  switch (v.kind()) {
    case Value::Kind::null: out = nullptr; return {};
    case Value::Kind::boolean: out = v.as_bool(); return {};
    case Value::Kind::integer: out = v.as_int(); return {};
    case Value::Kind::real: {
      double d = v.as_double();
      if (std::isnan(d))
        return conversion_error(path, "NaN has no JSON form");
      if (std::isinf(d))
        return conversion_error(path, std::string(d > 0 ? "inf" : "-inf") + " has no JSON form");
      out = d;
      return {};
    }
    case Value::Kind::string: out = v.as_string(); return {};
    case Value::Kind::bytes: {
      out = Json::object();
      out["__bytes__"] = base64_encode(v.as_bytes().data);
      return {};
    }
    case Value::Kind::list: {
      out = Json::array();
      auto& l = v.as_list();
      for (std::size_t i = 0; i < l.size(); ++i) {
        Json item;
        if (Error e = value_to_json_impl(l[i], item, index_path(path, i), depth + 1))
          return e;
        out.push_back(std::move(item));
      }
      return {};
    }
    case Value::Kind::dict: {
      out = Json::object();
      for (auto& [k, item_value] : v.as_dict()) {
        Json item;
        if (Error e = value_to_json_impl(item_value, item, key_path(path, k), depth + 1))
          return e;
        out[k] = std::move(item);
      }
      return {};
    }
    case Value::Kind::ref: {
      std::string type = v.as_ref().type_name();
      return conversion_error(path, (type.empty() ? std::string("a Ref") : "a Ref to " + type)
                                        + " has no JSON form");
    }
    case Value::Kind::buffer: return conversion_error(path, buffer_has_no_json(v.as_buffer()));
  }
  return conversion_error(path, "unknown value kind");
}

// Where a value sits, rendered only for an error (see encode_json).
struct Path {
  const std::string* root = nullptr;
  const Path* parent = nullptr;
  const std::string* key = nullptr;
  std::size_t index = 0;
  std::string str() const {
    if (!parent)
      return *root;
    return key ? key_path(parent->str(), *key) : index_path(parent->str(), index);
  }
};

void append_escaped(std::string& out, const std::string& text) {
  // Text with bytes past ASCII takes nlohmann's path, which checks UTF-8
  // (and replaces what is not); plain ASCII is escaped here, copying the
  // runs between escapes whole.
  static const char hex[] = "0123456789abcdef";
  const auto start = out.size();
  out += '"';
  const char* run = text.data();
  const char* end = text.data() + text.size();
  for (const char* p = run; p != end; ++p) {
    auto c = static_cast<unsigned char>(*p);
    if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80)
      continue;
    if (c >= 0x80) {
      out.resize(start);
      out += dump_line(Json(text));
      return;
    }
    out.append(run, p);
    run = p + 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        out += "\\u00";
        out += hex[c >> 4];
        out += hex[c & 15];
    }
  }
  out.append(run, end);
  out += '"';
}

Error encode_impl(const Value& v, std::string& out, const Path& path, int depth) {
  if (depth > kMaxDepth)
    return conversion_error(path.str(), "nesting deeper than " + std::to_string(kMaxDepth));
  switch (v.kind()) {
    case Value::Kind::null: out += "null"; return {};
    case Value::Kind::boolean: out += v.as_bool() ? "true" : "false"; return {};
    case Value::Kind::integer: {
      char buf[24];
      auto r = std::to_chars(buf, buf + sizeof buf, v.as_int());
      out.append(buf, r.ptr);
      return {};
    }
    case Value::Kind::real: {
      double d = v.as_double();
      if (std::isnan(d))
        return conversion_error(path.str(), "NaN has no JSON form");
      if (std::isinf(d))
        return conversion_error(path.str(), std::string(d > 0 ? "inf" : "-inf") + " has no JSON form");
      // nlohmann's own shortest form (as Python's json.dumps writes it).
      char buf[64];
      char* end = nlohmann::detail::to_chars(buf, buf + sizeof buf, d);
      out.append(buf, end);
      return {};
    }
    case Value::Kind::string: append_escaped(out, v.as_string()); return {};
    case Value::Kind::bytes:
      out += "{\"__bytes__\":\"";
      out += base64_encode(v.as_bytes().data);
      out += "\"}";
      return {};
    case Value::Kind::list: {
      out += '[';
      auto& l = v.as_list();
      for (std::size_t i = 0; i < l.size(); ++i) {
        if (i)
          out += ',';
        if (Error e = encode_impl(l[i], out, Path{nullptr, &path, nullptr, i}, depth + 1))
          return e;
      }
      out += ']';
      return {};
    }
    case Value::Kind::dict: {
      auto& d = v.as_dict();
      if (has_duplicate_keys(d)) {
        // Made in C++ (Python dicts cannot): the last value wins at the
        // first key's position, as in a JSON document.
        Dict unique = d;
        drop_duplicate_keys(unique);
        return encode_impl(Value(std::move(unique)), out, path, depth);
      }
      out += '{';
      bool first = true;
      for (auto& [k, item] : d) {
        if (!first)
          out += ',';
        first = false;
        append_escaped(out, k);
        out += ':';
        if (Error e = encode_impl(item, out, Path{nullptr, &path, &k, 0}, depth + 1))
          return e;
      }
      out += '}';
      return {};
    }
    case Value::Kind::ref: {
      std::string type = v.as_ref().type_name();
      return conversion_error(path.str(), (type.empty() ? std::string("a Ref") : "a Ref to " + type)
                                              + " has no JSON form");
    }
    case Value::Kind::buffer: return conversion_error(path.str(), buffer_has_no_json(v.as_buffer()));
  }
  return conversion_error(path.str(), "unknown value kind");
}

} // namespace

Error encode_json(const Value& value, std::string& out, const std::string& path) {
  auto size = out.size();
  Error e = encode_impl(value, out, Path{&path}, 0);
  if (e)
    out.resize(size);
  return e;
}

namespace {

Error parse_with_reference(std::string_view text, Value& value);

// simdjson's DOM, walked into a Value. False when the record needs the
// reference parser: anything simdjson rejects (malformed text, a byte order
// mark, numbers beyond uint64 or double), and what must be reported or read
// exactly as the reference parser does (an integer beyond int64, nesting past
// kMaxDepth, -0).
bool from_dom(simdjson::dom::element e, Value& out, int depth) {
  if (depth > kMaxDepth)
    return false;
  switch (e.type()) {
    case simdjson::dom::element_type::ARRAY: {
      List l;
      simdjson::dom::array array = e.get_array().value_unsafe();
      l.reserve(array.size());
      for (auto item : array) {
        l.emplace_back();
        if (!from_dom(item, l.back(), depth + 1))
          return false;
      }
      out = Value(std::move(l));
      return true;
    }
    case simdjson::dom::element_type::OBJECT: {
      Dict d;
      simdjson::dom::object object = e.get_object().value_unsafe();
      d.reserve(object.size());
      for (auto field : object) {
        d.emplace_back();
        d.back().first.assign(field.key.data(), field.key.size());
        if (!from_dom(field.value, d.back().second, depth + 1))
          return false;
      }
      drop_duplicate_keys(d);
      out = Value(std::move(d));
      return true;
    }
    case simdjson::dom::element_type::INT64: out = Value(e.get_int64().value_unsafe()); return true;
    case simdjson::dom::element_type::UINT64: return false;  // beyond int64: the reference names it
    case simdjson::dom::element_type::DOUBLE: {
      double d = e.get_double().value_unsafe();
      if (d == 0 && std::signbit(d))
        return false;  // "-0" is an integer to the reference parser
      out = Value(d);
      return true;
    }
    case simdjson::dom::element_type::STRING: {
      auto sv = e.get_string().value_unsafe();
      out = Value(std::string(sv.data(), sv.size()));
      return true;
    }
    case simdjson::dom::element_type::BOOL: out = Value(e.get_bool().value_unsafe()); return true;
    case simdjson::dom::element_type::NULL_VALUE: out = Value(); return true;
  }
  return false;
}

} // namespace

Error parse_record(std::string_view text, Value& value) {
  // The fast path: simdjson (one parser and one padded buffer per thread).
  thread_local simdjson::dom::parser parser;
  thread_local std::string padded;
  padded.assign(text.data(), text.size());
  padded.append(simdjson::SIMDJSON_PADDING, '\0');
  simdjson::dom::element doc;
  if (!parser.parse(padded.data(), text.size(), false).get(doc)) {
    Value v;
    if (from_dom(doc, v, 0)) {
      value = std::move(v);
      return {};
    }
  }
  // The reference: nlohmann's parser, with its messages (the column).
  return parse_with_reference(text, value);
}

namespace {

Error parse_with_reference(std::string_view text, Value& value) {
  ValueBuilder builder;
  bool ok = Json::sax_parse(text.begin(), text.end(), &builder);
  if (!ok || builder.error)
    return builder.error ? builder.error : Error(ErrorCode::bad_input, "not JSON");
  value = std::move(builder.root);
  return {};
}

} // namespace

std::string input_json_text(std::string_view text, bool known_json) {
  std::string_view trimmed = text;
  if (trimmed.substr(0, 3) == "\xEF\xBB\xBF")
    trimmed.remove_prefix(3);
  auto first = trimmed.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos)
    trimmed = {};
  else
    trimmed = trimmed.substr(first, trimmed.find_last_not_of(" \t\r\n") - first + 1);
  if (!trimmed.empty() && (known_json || Json::accept(trimmed.begin(), trimmed.end())))
    return std::string(trimmed);
  return dump_line(Json(std::string(text)));
}

Error value_to_json(const Value& value, Json& out, const std::string& path) {
  return value_to_json_impl(value, out, path, 0);
}

std::string base64_encode(std::string_view data) {
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    std::uint32_t n = (static_cast<unsigned char>(data[i]) << 16)
                      | (static_cast<unsigned char>(data[i + 1]) << 8)
                      | static_cast<unsigned char>(data[i + 2]);
    out += alphabet[(n >> 18) & 63];
    out += alphabet[(n >> 12) & 63];
    out += alphabet[(n >> 6) & 63];
    out += alphabet[n & 63];
  }
  std::size_t rest = data.size() - i;
  if (rest == 1) {
    std::uint32_t n = static_cast<unsigned char>(data[i]) << 16;
    out += alphabet[(n >> 18) & 63];
    out += alphabet[(n >> 12) & 63];
    out += "==";
  } else if (rest == 2) {
    std::uint32_t n = (static_cast<unsigned char>(data[i]) << 16)
                      | (static_cast<unsigned char>(data[i + 1]) << 8);
    out += alphabet[(n >> 18) & 63];
    out += alphabet[(n >> 12) & 63];
    out += alphabet[(n >> 6) & 63];
    out += '=';
  }
  return out;
}

std::string dump_line(const Json& json) {
  return json.dump(-1, ' ', false, Json::error_handler_t::replace);
}

} // namespace gk::cli
