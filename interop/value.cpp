#include "gilkeeper/interop/value.hpp"
#include "gilkeeper/interop/deadline.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

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
  }
  return "?";
}

namespace {

void quote(std::string& out, const std::string& s, const char* prefix) {
  out += prefix;
  out += '"';
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
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
    case Value::Kind::string: quote(out, v.as_string(), ""); break;
    case Value::Kind::bytes: quote(out, v.as_bytes().data, "b"); break;
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
        quote(out, k, "");
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
