#pragma once

/// `Value`: what crosses the border between the host and Python.
///
/// A Value is null, bool, int64, double, UTF-8 string, bytes, list, dict
/// (string keys, insertion order kept, like Python's dict), or a `Ref` — a
/// handle to a Python object that stays inside the runtime.
///
/// How Python objects map (decided once, tested in tests/interop):
/// - `None`, `bool`, `float` (NaN and ±inf included), `str`, `bytes`, `list`,
///   `dict` with `str` keys map one to one; `bytearray` becomes bytes and a
///   `tuple` becomes a list (a round trip gives a list).
/// - an `int` outside int64, a `set`/`frozenset`, a `dict` with a non-`str`
///   key, a `str` with lone surrogates (not UTF-8), nesting deeper than
///   `kMaxDepth`, and any other type are `conversion` errors naming where the
///   object sits (`result[2]["when"]: datetime has no Value form`), unless the
///   caller asked for a `Ref`.
/// - Host to Python: a string that is not valid UTF-8 is a `conversion` error
///   naming the argument.

#include "gilkeeper/interop/ref.hpp"

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace gk {

/// Raw bytes (Python `bytes`). A distinct type so that it is never mistaken
/// for text.
struct Bytes {
  std::string data;
  friend bool operator==(const Bytes& a, const Bytes& b) { return a.data == b.data; }
  friend bool operator!=(const Bytes& a, const Bytes& b) { return !(a == b); }
};

class Value;
/// A Python list (or tuple).
using List = std::vector<Value>;
/// A Python dict with string keys, in insertion order.
using Dict = std::vector<std::pair<std::string, Value>>;

/// Deepest nesting of lists and dicts that converts (deeper is an error;
/// this also turns self-referencing containers into a clear error).
inline constexpr int kMaxDepth = 100;

/// A dynamically typed value. Copyable, comparable, thread-safe as a plain
/// value (copies of a contained `Ref` share one handle).
class Value {
public:
  enum class Kind : std::uint8_t { null, boolean, integer, real, string, bytes, list, dict, ref };

  Value() = default;
  Value(std::nullptr_t) {}
  Value(bool b) : v_(b) {}
  template <class I, class = std::enable_if_t<std::is_integral_v<I> && !std::is_same_v<I, bool>>>
  Value(I i) : v_(static_cast<std::int64_t>(i)) {}
  Value(double d) : v_(d) {}
  Value(float d) : v_(static_cast<double>(d)) {}
  Value(const char* s) : v_(std::string(s)) {}
  Value(std::string s) : v_(std::move(s)) {}
  Value(std::string_view s) : v_(std::string(s)) {}
  Value(Bytes b) : v_(std::move(b)) {}
  Value(List l) : v_(std::move(l)) {}
  Value(Dict d) : v_(std::move(d)) {}
  Value(Ref r) : v_(std::move(r)) {}

  /// A list from its items: `Value::list({1, "two", 3.0})`.
  static Value list(std::initializer_list<Value> items) { return Value(List(items)); }
  /// A dict from pairs: `Value::dict({{"a", 1}, {"b", "x"}})`.
  static Value dict(std::initializer_list<std::pair<std::string, Value>> items) {
    return Value(Dict(items));
  }

  Kind kind() const noexcept { return static_cast<Kind>(v_.index()); }
  bool is_null() const noexcept { return kind() == Kind::null; }
  bool is_bool() const noexcept { return kind() == Kind::boolean; }
  bool is_int() const noexcept { return kind() == Kind::integer; }
  bool is_double() const noexcept { return kind() == Kind::real; }
  bool is_string() const noexcept { return kind() == Kind::string; }
  bool is_bytes() const noexcept { return kind() == Kind::bytes; }
  bool is_list() const noexcept { return kind() == Kind::list; }
  bool is_dict() const noexcept { return kind() == Kind::dict; }
  bool is_ref() const noexcept { return kind() == Kind::ref; }

  /// Accessors. PRECONDITION: the kind matches (else std::bad_variant_access).
  bool as_bool() const { return std::get<bool>(v_); }
  std::int64_t as_int() const { return std::get<std::int64_t>(v_); }
  double as_double() const { return std::get<double>(v_); }
  const std::string& as_string() const { return std::get<std::string>(v_); }
  const Bytes& as_bytes() const { return std::get<Bytes>(v_); }
  const List& as_list() const { return std::get<List>(v_); }
  List& as_list() { return std::get<List>(v_); }
  const Dict& as_dict() const { return std::get<Dict>(v_); }
  Dict& as_dict() { return std::get<Dict>(v_); }
  const Ref& as_ref() const { return std::get<Ref>(v_); }

  /// A number as double (int or double). PRECONDITION: is_int() || is_double().
  double as_number() const { return is_int() ? static_cast<double>(as_int()) : as_double(); }

  /// The value under `key` in a dict, or nullptr (also when not a dict).
  const Value* find(std::string_view key) const;

  /// Python-like rendering for messages and debugging: `{"a": [1, 2.5, b"x"]}`.
  std::string repr() const;

  /// Name of a kind: "null", "bool", "int", "double", "string", "bytes",
  /// "list", "dict", "ref".
  static const char* kind_name(Kind k) noexcept;

  friend bool operator==(const Value& a, const Value& b);
  friend bool operator!=(const Value& a, const Value& b) { return !(a == b); }

  using storage = std::variant<std::monostate, bool, std::int64_t, double, std::string, Bytes, List, Dict, Ref>;
  const storage& data() const noexcept { return v_; }
  storage& data() noexcept { return v_; }

private:
  storage v_;
};

} // namespace gk
