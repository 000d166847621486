#include "json_value.hpp"

#include <cmath>
#include <cstdint>
#include <limits>
#include <unordered_map>
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

// Python's json.loads keeps the last of duplicate keys (at the position of
// the first); do the same.
void drop_duplicate_keys(Dict& d) {
  if (d.size() < 2)
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
  }
  return conversion_error(path, "unknown value kind");
}

} // namespace

Error parse_record(std::string_view text, Value& value) {
  ValueBuilder builder;
  bool ok = Json::sax_parse(text.begin(), text.end(), &builder);
  if (!ok || builder.error)
    return builder.error ? builder.error : Error(ErrorCode::bad_input, "not JSON");
  value = std::move(builder.root);
  return {};
}

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
