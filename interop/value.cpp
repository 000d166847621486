#include "gilkeeper/interop/value.hpp"
#include "gilkeeper/interop/deadline.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace gk {

const Value* Value::find(std::string_view key) const {
  if (!is_dict())
    return nullptr;
  for (auto& [k, v] : as_dict())
    if (k == key)
      return &v;
  return nullptr;
}

const char* Value::kind_name(Kind k) noexcept {
  switch (k) {
    case Kind::null: return "null";
    case Kind::boolean: return "bool";
    case Kind::integer: return "int";
    case Kind::real: return "double";
    case Kind::string: return "string";
    case Kind::bytes: return "bytes";
    case Kind::list: return "list";
    case Kind::dict: return "dict";
    case Kind::ref: return "ref";
    case Kind::buffer: return "buffer";
  }
  return "?";
}

namespace {

void append_escape(std::string& out, const char* format, unsigned code) {
  char buf[12];
  std::snprintf(buf, sizeof buf, format, code);
  out += buf;
}

// ASCII as Python's repr writes it: the named escapes, `\xhh` for the other
// control characters and DEL, the quote and the backslash escaped.
void append_ascii(std::string& out, unsigned char c) {
  switch (c) {
    case '"': out += "\\\""; return;
    case '\\': out += "\\\\"; return;
    case '\n': out += "\\n"; return;
    case '\r': out += "\\r"; return;
    case '\t': out += "\\t"; return;
    default:
      if (c < 0x20 || c >= 0x7f)
        append_escape(out, "\\x%02x", c);
      else
        out += static_cast<char>(c);
  }
}

// The length of the well-formed UTF-8 sequence at `s[i]` (RFC 3629: no
// overlong forms, no surrogates, nothing past U+10FFFF) and its code point;
// 0 when the bytes there are not one.
std::size_t utf8_sequence(std::string_view s, std::size_t i, char32_t& code_point) {
  auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = byte(i);
  std::size_t n;
  unsigned char low = 0x80, high = 0xbf;  // the range of the second byte
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2;
    code_point = c & 0x1f;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    code_point = c & 0x0f;
    if (c == 0xe0)
      low = 0xa0;
    else if (c == 0xed)
      high = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    code_point = c & 0x07;
    if (c == 0xf0)
      low = 0x90;
    else if (c == 0xf4)
      high = 0x8f;
  } else {
    return 0;
  }
  if (s.size() - i < n)
    return 0;
  for (std::size_t k = 1; k < n; ++k) {
    unsigned char b = byte(i + k);
    if (b < (k == 1 ? low : 0x80) || b > (k == 1 ? high : 0xbf))
      return 0;
    code_point = (code_point << 6) | (b & 0x3f);
  }
  return n;
}

// A str as Python's repr writes it, in double quotes: valid non-ASCII text
// as is, except the C1 controls (`\x85`) and the line and paragraph
// separators (`\u2028`). A byte that is not valid UTF-8 shows as Python shows
// it decoded with "surrogateescape" (`\udcff`), so a log line stays valid
// UTF-8 and the bad byte is still visible.
void quote_string(std::string& out, std::string_view s) {
  out += '"';
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      append_ascii(out, c);
      ++i;
      continue;
    }
    char32_t code_point = 0;
    std::size_t n = utf8_sequence(s, i, code_point);
    if (n == 0) {
      append_escape(out, "\\udc%02x", c);
      ++i;
      continue;
    }
    if (code_point < 0xa0)
      append_escape(out, "\\x%02x", static_cast<unsigned>(code_point));
    else if (code_point == 0x2028 || code_point == 0x2029)
      append_escape(out, "\\u%04x", static_cast<unsigned>(code_point));
    else
      out.append(s, i, n);
    i += n;
  }
  out += '"';
}

// bytes as Python's repr writes them (in double quotes): printable ASCII as
// is, everything else escaped.
void quote_bytes(std::string& out, std::string_view s) {
  out += "b\"";
  for (char c : s)
    append_ascii(out, static_cast<unsigned char>(c));
  out += '"';
}

void render(std::string& out, const Value& v) {
  switch (v.kind()) {
    case Value::Kind::null: out += "None"; break;
    case Value::Kind::boolean: out += v.as_bool() ? "True" : "False"; break;
    case Value::Kind::integer: out += std::to_string(v.as_int()); break;
    case Value::Kind::real: {
      double d = v.as_double();
      if (std::isnan(d)) {
        out += "nan";
      } else if (std::isinf(d)) {
        out += d > 0 ? "inf" : "-inf";
      } else {
        // The shortest form that reads back as the same double.
        char buf[32];
        for (int precision = 15; precision <= 17; ++precision) {
          std::snprintf(buf, sizeof buf, "%.*g", precision, d);
          if (std::strtod(buf, nullptr) == d)
            break;
        }
        out += buf;
        if (std::strpbrk(buf, ".eE") == nullptr)
          out += ".0";
      }
      break;
    }
    case Value::Kind::string: quote_string(out, v.as_string()); break;
    case Value::Kind::bytes: quote_bytes(out, v.as_bytes().data); break;
    case Value::Kind::buffer: {
      auto& b = v.as_buffer();
      out += "<buffer " + b.format() + " (";
      for (std::size_t i = 0; i < b.shape().size(); ++i)
        out += (i ? ", " : "") + std::to_string(b.shape()[i]) + (b.shape().size() == 1 ? "," : "");
      out += "), " + std::to_string(b.size()) + " bytes>";
      break;
    }
    case Value::Kind::list: {
      out += '[';
      bool first = true;
      for (auto& x : v.as_list()) {
        if (!first)
          out += ", ";
        first = false;
        render(out, x);
      }
      out += ']';
      break;
    }
    case Value::Kind::dict: {
      out += '{';
      bool first = true;
      for (auto& [k, x] : v.as_dict()) {
        if (!first)
          out += ", ";
        first = false;
        quote_string(out, k);
        out += ": ";
        render(out, x);
      }
      out += '}';
      break;
    }
    case Value::Kind::ref: {
      auto& r = v.as_ref();
      out += "<Ref #" + std::to_string(r.id()) + " " + r.type_name() + ">";
      break;
    }
  }
}

} // namespace

std::string Value::repr() const {
  std::string out;
  render(out, *this);
  return out;
}

void Value::throw_kind_error(Kind expected) const { throw ValueKindError(expected, kind()); }

ValueKindError::ValueKindError(Value::Kind expected, Value::Kind actual)
  : std::logic_error(std::string("gk::Value: expected ") + Value::kind_name(expected) + ", got "
                     + Value::kind_name(actual)),
    expected_(expected), actual_(actual) {}

namespace detail {

namespace {

Error conversion_error(std::string what) { return Error(ErrorCode::conversion, std::move(what)); }

std::string number(double d) { return Value(d).repr(); }

std::string key_segment(std::string_view key) {
  std::string out = "[";
  quote_string(out, key);
  return out + "]";
}

Error nested(Error e, const std::string& segment) {
  if (e.code != ErrorCode::conversion)
    return e;
  if (e.where.empty())
    e.message = segment + ": " + e.message;
  else if (e.message.compare(0, e.where.size(), e.where) == 0)
    e.message.insert(0, segment);
  e.where.insert(0, segment);
  return e;
}

} // namespace

Error kind_error(const char* expected, const Value& actual) {
  return conversion_error(std::string("expected ") + expected + ", got " + Value::kind_name(actual.kind()));
}

Error list_size_error(std::size_t expected, const Value& actual) {
  auto items = [](std::size_t n) { return "list of " + std::to_string(n) + (n == 1 ? " item" : " items"); };
  std::string got = actual.is_list() ? items(actual.as_list().size()) : Value::kind_name(actual.kind());
  return conversion_error("expected " + items(expected) + ", got " + got);
}

Error int_range_error(std::int64_t value, const char* target) {
  return conversion_error(std::to_string(value) + " does not fit in " + target);
}

Error double_to_int_error(double value, const char* target) {
  if (std::isfinite(value) && std::trunc(value) == value)
    return conversion_error(number(value) + " does not fit in " + target);
  return conversion_error("expected int, got double " + number(value) + " (not an integer)");
}

Error float_range_error(double value) { return conversion_error(number(value) + " does not fit in float"); }

Error missing_key(std::string_view key) {
  std::string quoted;
  quote_string(quoted, key);
  Error e = conversion_error(key_segment(key) + ": dict has no key " + quoted);
  e.where = key_segment(key);
  return e;
}

Error at_index(Error e, std::size_t index) { return nested(std::move(e), "[" + std::to_string(index) + "]"); }

Error at_key(Error e, std::string_view key) { return nested(std::move(e), key_segment(key)); }

} // namespace detail

bool operator==(const Value& a, const Value& b) {
  if (a.kind() != b.kind())
    return false;
  // NaN compares unequal, as in Python.
  return a.data() == b.data();
}

std::string Deadline::to_string() const {
  if (kind_ == kind::unset)
    return "unset";
  if (kind_ == kind::never)
    return "never";
  auto now = clock::now();
  auto us = [](auto d) { return std::chrono::duration_cast<std::chrono::microseconds>(d).count(); };
  if (when_ >= now)
    return "in " + std::to_string(us(when_ - now)) + "us";
  return "expired " + std::to_string(us(now - when_)) + "us ago";
}

} // namespace gk
