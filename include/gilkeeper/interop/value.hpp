#pragma once

/// `Value`: what crosses the border between the host and Python.
///
/// A Value is null, bool, int64, double, UTF-8 string, bytes, list, dict
/// (string keys, insertion order kept, like Python's dict), a `Ref` — a
/// handle to a Python object that stays inside the runtime — or a `Buffer`
/// (shared memory with a buffer-protocol layout; see buffer.hpp).
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
///
/// Typed access: `v.as<T>()` and `Value::from(x)` convert to and from C++
/// types (interop/value_convert.hpp, included at the end of this header);
/// `v.get<T>("key")` / `v.get_or<T>("key", fallback)` read a dict entry. The
/// `as_int()`-style accessors stay the fast path: they return references and
/// throw `ValueKindError` on a wrong kind.

#include "gilkeeper/interop/buffer.hpp"
#include "gilkeeper/interop/expected.hpp"
#include "gilkeeper/interop/ref.hpp"

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace gk {

namespace detail {
/// Keeps a parameter out of template argument deduction (C++20's type_identity).
template <class T>
struct type_identity {
  using type = T;
};
} // namespace detail

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
  enum class Kind : std::uint8_t { null, boolean, integer, real, string, bytes, list, dict, ref, buffer };

  Value() = default;
  Value(std::nullptr_t) {}
  Value(bool b) : v_(b) {}
  /// Any integer type. An unsigned value above INT64_MAX has no Value form:
  /// it throws std::out_of_range (a misuse, checked up front).
  template <class I, class = std::enable_if_t<std::is_integral_v<I> && !std::is_same_v<I, bool>>>
  Value(I i) : v_(checked_int(i)) {}
  Value(double d) : v_(d) {}
  Value(float d) : v_(static_cast<double>(d)) {}
  Value(const char* s) : v_(std::string(s)) {}
  Value(std::string s) : v_(std::move(s)) {}
  Value(std::string_view s) : v_(std::string(s)) {}
  Value(Bytes b) : v_(std::move(b)) {}
  Value(List l) : v_(std::move(l)) {}
  Value(Dict d) : v_(std::move(d)) {}
  Value(Ref r) : v_(std::move(r)) {}
  Value(Buffer b) : v_(std::move(b)) {}

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
  bool is_buffer() const noexcept { return kind() == Kind::buffer; }

  /// Fast accessors: the contained value, by reference where it is stored.
  /// PRECONDITION: the kind matches; otherwise they throw `ValueKindError`
  /// naming the expected and the actual kind. `as_double()` also takes an
  /// int (widened to double, rounded to nearest beyond 2^53). For a
  /// conversion that reports a wrong kind as a value, use `as<T>()`.
  /// Thread-safe as reads of a plain value.
  bool as_bool() const { return *checked<bool>(Kind::boolean); }
  std::int64_t as_int() const { return *checked<std::int64_t>(Kind::integer); }
  double as_double() const {
    if (auto* i = std::get_if<std::int64_t>(&v_))
      return static_cast<double>(*i);
    return *checked<double>(Kind::real);
  }
  const std::string& as_string() const { return *checked<std::string>(Kind::string); }
  const Bytes& as_bytes() const { return *checked<Bytes>(Kind::bytes); }
  const List& as_list() const { return *checked<List>(Kind::list); }
  List& as_list() { return checked_mut<List>(Kind::list); }
  const Dict& as_dict() const { return *checked<Dict>(Kind::dict); }
  Dict& as_dict() { return checked_mut<Dict>(Kind::dict); }
  const Ref& as_ref() const { return *checked<Ref>(Kind::ref); }
  const Buffer& as_buffer() const { return *checked<Buffer>(Kind::buffer); }

  /// The same as `as_double()` (kept for existing callers).
  double as_number() const { return as_double(); }

  /// This value converted to `T` (see interop/value_convert.hpp for the
  /// standard types and how to add your own). A wrong kind or a number out
  /// of T's range is a `conversion` error; `where` is the path inside this
  /// value (`[2]["when"]`). Never throws for a wrong kind.
  template <class T>
  Expected<T> as() const;

  /// A Value made from `value` through `ValueConverter<T>::to_value`:
  /// `Value::from(std::vector<int>{1, 2})`, `Value::from(my_struct)`.
  template <class T>
  static Value from(const T& value);

  /// The value under `key` in a dict, or nullptr (also when not a dict).
  /// Prefer `get` / `get_or`, which cannot be dereferenced unchecked.
  const Value* find(std::string_view key) const;

  /// The entry `key` of this dict converted to `T` (a copy of the Value by
  /// default). Errors (`conversion`): this is not a dict (`where` empty);
  /// the key is missing (`where` = `["key"]`); the entry does not convert
  /// (`where` = `["key"]` followed by the path inside it).
  template <class T = Value>
  Expected<T> get(std::string_view key) const;

  /// Like `get<T>(key)`, but a missing key gives `fallback`. A key that is
  /// present but does not convert is still an error (never silently the
  /// fallback); a null entry converts only if `T` takes null
  /// (`std::optional`, `Value`). `T` is always spelled out:
  /// `v.get_or<int>("retries", 3)`.
  template <class T>
  Expected<T> get_or(std::string_view key, typename detail::type_identity<T>::type fallback) const;

  /// Python-like rendering for messages and debugging: `{"a": [1, 2.5, b"x"]}`.
  std::string repr() const;

  /// Name of a kind: "null", "bool", "int", "double", "string", "bytes",
  /// "list", "dict", "ref", "buffer".
  static const char* kind_name(Kind k) noexcept;

  friend bool operator==(const Value& a, const Value& b);
  friend bool operator!=(const Value& a, const Value& b) { return !(a == b); }

  using storage = std::variant<std::monostate, bool, std::int64_t, double, std::string, Bytes, List, Dict, Ref, Buffer>;
  const storage& data() const noexcept { return v_; }
  storage& data() noexcept { return v_; }

private:
  template <class I>
  static std::int64_t checked_int(I i) {
    if constexpr (std::is_unsigned_v<I> && sizeof(I) >= sizeof(std::int64_t)) {
      if (i > static_cast<I>(std::numeric_limits<std::int64_t>::max()))
        throw std::out_of_range("gk::Value: " + std::to_string(i) + " does not fit in int64");
    }
    return static_cast<std::int64_t>(i);
  }
  template <class S>
  const S* checked(Kind expected) const {
    if (auto* p = std::get_if<S>(&v_))
      return p;
    throw_kind_error(expected);
  }
  template <class S>
  S& checked_mut(Kind expected) {
    if (auto* p = std::get_if<S>(&v_))
      return *p;
    throw_kind_error(expected);
  }
  [[noreturn]] void throw_kind_error(Kind expected) const;

  storage v_;
};

/// Thrown by the fast accessors (`as_int()`, `as_string()`, ...) when the
/// Value holds another kind: `expected int, got string`. A misuse (check
/// `kind()` first, or use `as<T>()`, which returns the error as a value).
class ValueKindError : public std::logic_error {
public:
  ValueKindError(Value::Kind expected, Value::Kind actual);
  Value::Kind expected() const noexcept { return expected_; }
  Value::Kind actual() const noexcept { return actual_; }

private:
  Value::Kind expected_;
  Value::Kind actual_;
};

} // namespace gk

// The conversion machinery needs a complete Value; it defines as<T>, from,
// get and get_or.
#include "gilkeeper/interop/value_convert.hpp"
