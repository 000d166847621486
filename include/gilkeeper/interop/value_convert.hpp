#pragma once

/// `ValueConverter<T>`: how a C++ type becomes a `Value` and back — the one
/// customisation point behind `Value::from(x)`, `v.as<T>()`, `v.get<T>(key)`
/// and `v.get_or<T>(key, fallback)`. Included by value.hpp.
///
/// Standard types (T ↔ Value kind):
/// - integers of every width ↔ int. Range-checked both ways: `-1` into an
///   unsigned type or `300` into `uint8_t` is a conversion error; an unsigned
///   value above INT64_MAX has no Value form (`from` throws std::out_of_range).
///   A double converts to an integer only when it is integral and in range
///   (`3.0` → 3; `2.5`, NaN, `1e20` are errors).
/// - `double`, `float` ↔ double; an int converts to them (rounded to nearest
///   beyond 2^53); a finite double beyond float's range is an error.
/// - `bool` ↔ bool only: bools and ints never convert into each other.
/// - `std::string` ↔ string; `std::string_view`, `const char*` → string only.
/// - `Bytes` ↔ bytes; `Ref` ↔ ref; `List` ↔ list; `Dict` ↔ dict; `Value` ↔
///   any (a copy).
/// - `std::vector<T>` ↔ list (`std::vector<std::uint8_t>` too: bytes are `Bytes`).
/// - `std::map<std::string, T>`, `std::unordered_map<std::string, T>` ↔ dict
///   (a dict's first entry wins for a repeated key, as with `find`).
/// - `std::optional<T>` ↔ null or T.
/// - `std::tuple<Ts...>`, `std::pair<A, B>` ↔ list of exactly that length.
///
/// A failed conversion is an `Error` with code `conversion`, never an
/// exception: the message names the expected and the actual kind
/// (`expected int, got string`) and `where` is the path inside the value
/// (`[2]["when"]`), also at the start of the message. Nested conversions
/// extend the path.
///
/// Your own types: specialise `gk::ValueConverter` (in namespace gk, before
/// the first use) with two static functions. The second template parameter
/// is for `std::enable_if_t` when one specialisation covers a family.
///
/// ```
/// struct Reading {
///   std::string sensor;
///   std::vector<double> samples;
///   std::optional<std::string> unit;
/// };
///
/// namespace gk {
/// template <>
/// struct ValueConverter<Reading> {
///   static Value to_value(const Reading& r) {
///     return Value::dict({{"sensor", r.sensor},
///                         {"samples", Value::from(r.samples)},
///                         {"unit", Value::from(r.unit)}});
///   }
///   static Expected<Reading> from_value(const Value& v) {
///     auto sensor = v.get<std::string>("sensor");  // errors carry ["sensor"]
///     if (!sensor) return sensor.error();
///     auto samples = v.get<std::vector<double>>("samples");
///     if (!samples) return samples.error();        // ["samples"][3]: expected double, got string
///     auto unit = v.get_or<std::optional<std::string>>("unit", std::nullopt);
///     if (!unit) return unit.error();
///     return Reading{*sensor, *samples, *unit};
///   }
/// };
/// } // namespace gk
///
/// auto readings = value.as<std::vector<Reading>>();  // [1]["samples"][3]: ...
/// ```
///
/// `from_value` reports a bad value with `conversion` errors (the helpers in
/// `get`/`as` build them); the path of a conversion error returned from
/// inside a list or dict is extended by the caller. Thread-safe: conversions
/// only read their input.

#include "gilkeeper/interop/error.hpp"
#include "gilkeeper/interop/expected.hpp"
#include "gilkeeper/interop/value.hpp"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace gk {

/// Converts `T` to and from `Value`. Specialise it for your types (see the
/// header comment); this primary template is empty, so using a type without
/// a specialisation fails to compile with a message naming it.
template <class T, class Enable = void>
struct ValueConverter {};

namespace detail {

/// `expected <expected>, got <actual's kind>`.
Error kind_error(const char* expected, const Value& actual);
/// `expected list of N items, got ...` (for tuples and pairs).
Error list_size_error(std::size_t expected, const Value& actual);
/// `300 does not fit in uint8`.
Error int_range_error(std::int64_t value, const char* target);
/// `2.5 is not an integer` / `1e+20 does not fit in int64`.
Error double_to_int_error(double value, const char* target);
/// `1e+300 does not fit in float`.
Error float_range_error(double value);
/// `dict has no key "when"`, where `["when"]`.
Error missing_key(std::string_view key);
/// `e` as seen from the enclosing list or dict: a conversion error's `where`
/// (and the path at the start of its message) gains `[index]` / `["key"]`
/// in front. Other errors pass unchanged.
Error at_index(Error e, std::size_t index);
Error at_key(Error e, std::string_view key);

template <class T>
constexpr const char* int_name() noexcept {
  constexpr bool s = std::is_signed_v<T>;
  switch (sizeof(T)) {
    case 1: return s ? "int8" : "uint8";
    case 2: return s ? "int16" : "uint16";
    case 4: return s ? "int32" : "uint32";
    default: return s ? "int64" : "uint64";
  }
}

template <class T>
constexpr bool int_fits(std::int64_t i) noexcept {
  if constexpr (std::is_signed_v<T>) {
    if constexpr (sizeof(T) >= sizeof(std::int64_t))
      return true;
    else
      return i >= static_cast<std::int64_t>(std::numeric_limits<T>::min())
             && i <= static_cast<std::int64_t>(std::numeric_limits<T>::max());
  } else {
    if (i < 0)
      return false;
    if constexpr (sizeof(T) >= sizeof(std::int64_t))
      return true;
    else
      return static_cast<std::uint64_t>(i) <= static_cast<std::uint64_t>(std::numeric_limits<T>::max());
  }
}

template <class T>
bool double_fits(double d) noexcept {
  if (!std::isfinite(d) || std::trunc(d) != d)
    return false;
  // max() + 1 is 2^digits, exact as a double for every integer width.
  const double upper = static_cast<double>(std::numeric_limits<T>::max()) + 1.0;
  const double lower = static_cast<double>(std::numeric_limits<T>::min());
  return d >= lower && d < upper;
}

/// The converter `Value::from` uses for an argument of type T: string
/// literals and `char*` go through `const char*`.
template <class T>
using converter_for = ValueConverter<std::conditional_t<std::is_same_v<std::decay_t<const T>, char*>, const char*,
                                                        std::decay_t<const T>>>;

template <class C, class T, class = void>
struct has_from_value : std::false_type {};
template <class C, class T>
struct has_from_value<C, T, std::void_t<decltype(C::from_value(std::declval<const Value&>()))>>
  : std::is_same<decltype(C::from_value(std::declval<const Value&>())), Expected<T>> {};

template <class C, class T, class = void>
struct has_to_value : std::false_type {};
template <class C, class T>
struct has_to_value<C, T, std::void_t<decltype(C::to_value(std::declval<const T&>()))>>
  : std::is_same<decltype(C::to_value(std::declval<const T&>())), Value> {};

/// A kind stored as is in a Value: a copy both ways.
template <class T, Value::Kind K>
struct held_converter {
  static Value to_value(const T& x) { return Value(x); }
  static Expected<T> from_value(const Value& v) {
    if (auto* x = std::get_if<T>(&v.data()))
      return *x;
    return kind_error(Value::kind_name(K), v);
  }
};

template <class M>
struct dict_converter {
  using mapped = typename M::mapped_type;
  static Value to_value(const M& m) {
    Dict out;
    out.reserve(m.size());
    for (auto& [key, x] : m)
      out.emplace_back(key, ValueConverter<mapped>::to_value(x));
    return Value(std::move(out));
  }
  static Expected<M> from_value(const Value& v) {
    auto* entries = std::get_if<Dict>(&v.data());
    if (!entries)
      return kind_error("dict", v);
    M out;
    for (auto& [key, x] : *entries) {
      auto converted = ValueConverter<mapped>::from_value(x);
      if (!converted)
        return at_key(converted.error(), key);
      out.emplace(key, std::move(*converted));
    }
    return Expected<M>(std::move(out));
  }
};

template <class Tuple>
struct tuple_converter {
  static constexpr std::size_t size = std::tuple_size_v<Tuple>;
  template <std::size_t I>
  using element = ValueConverter<std::tuple_element_t<I, Tuple>>;

  static Value to_value(const Tuple& t) { return to_list(t, std::make_index_sequence<size>{}); }
  static Expected<Tuple> from_value(const Value& v) {
    auto* items = std::get_if<List>(&v.data());
    if (!items || items->size() != size)
      return list_size_error(size, v);
    return from_list(*items, std::make_index_sequence<size>{});
  }

private:
  template <std::size_t... I>
  static Value to_list([[maybe_unused]] const Tuple& t, std::index_sequence<I...>) {
    List out;
    out.reserve(size);
    (out.push_back(element<I>::to_value(std::get<I>(t))), ...);
    return Value(std::move(out));
  }
  template <std::size_t... I>
  static Expected<Tuple> from_list([[maybe_unused]] const List& items, std::index_sequence<I...>) {
    [[maybe_unused]] std::tuple<Expected<std::tuple_element_t<I, Tuple>>...> parts{
        element<I>::from_value(items[I])...};
    Error first;
    ((first || std::get<I>(parts) ? void() : void(first = at_index(std::get<I>(parts).error(), I))), ...);
    if (first)
      return first;
    return Expected<Tuple>(Tuple(std::move(*std::get<I>(parts))...));
  }
};

} // namespace detail

template <class T>
struct ValueConverter<T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>>> {
  static Value to_value(T x) { return Value(x); }
  static Expected<T> from_value(const Value& v) {
    if (auto* i = std::get_if<std::int64_t>(&v.data())) {
      if (detail::int_fits<T>(*i))
        return static_cast<T>(*i);
      return detail::int_range_error(*i, detail::int_name<T>());
    }
    if (auto* d = std::get_if<double>(&v.data())) {
      if (detail::double_fits<T>(*d))
        return static_cast<T>(*d);
      return detail::double_to_int_error(*d, detail::int_name<T>());
    }
    return detail::kind_error("int", v);
  }
};

template <>
struct ValueConverter<bool> : detail::held_converter<bool, Value::Kind::boolean> {};

template <>
struct ValueConverter<double> {
  static Value to_value(double d) { return Value(d); }
  static Expected<double> from_value(const Value& v) {
    if (v.is_double() || v.is_int())
      return v.as_double();
    return detail::kind_error("double", v);
  }
};

template <>
struct ValueConverter<float> {
  static Value to_value(float f) { return Value(f); }
  static Expected<float> from_value(const Value& v) {
    if (!v.is_double() && !v.is_int())
      return detail::kind_error("double", v);
    double d = v.as_double();
    if (std::isfinite(d) && std::fabs(d) > static_cast<double>(std::numeric_limits<float>::max()))
      return detail::float_range_error(d);
    return static_cast<float>(d);
  }
};

template <>
struct ValueConverter<std::string> : detail::held_converter<std::string, Value::Kind::string> {};

/// Into a Value only: a view into a Value would dangle (use as<std::string>()).
template <>
struct ValueConverter<std::string_view> {
  static Value to_value(std::string_view s) { return Value(s); }
};

/// Into a Value only (also string literals and `char*`). PRECONDITION: not null.
template <>
struct ValueConverter<const char*> {
  static Value to_value(const char* s) { return Value(s); }
};

template <>
struct ValueConverter<Bytes> : detail::held_converter<Bytes, Value::Kind::bytes> {};
template <>
struct ValueConverter<Ref> : detail::held_converter<Ref, Value::Kind::ref> {};
template <>
struct ValueConverter<List> : detail::held_converter<List, Value::Kind::list> {};
template <>
struct ValueConverter<Dict> : detail::held_converter<Dict, Value::Kind::dict> {};

template <>
struct ValueConverter<Value> {
  static Value to_value(const Value& v) { return v; }
  static Expected<Value> from_value(const Value& v) { return v; }
};

template <class T, class A>
struct ValueConverter<std::vector<T, A>> {
  static Value to_value(const std::vector<T, A>& xs) {
    List out;
    out.reserve(xs.size());
    for (auto&& x : xs)
      out.push_back(ValueConverter<T>::to_value(x));
    return Value(std::move(out));
  }
  static Expected<std::vector<T, A>> from_value(const Value& v) {
    auto* items = std::get_if<List>(&v.data());
    if (!items)
      return detail::kind_error("list", v);
    std::vector<T, A> out;
    out.reserve(items->size());
    for (std::size_t i = 0; i < items->size(); ++i) {
      auto x = ValueConverter<T>::from_value((*items)[i]);
      if (!x)
        return detail::at_index(x.error(), i);
      out.push_back(std::move(*x));
    }
    return Expected<std::vector<T, A>>(std::move(out));
  }
};

template <class T, class C, class A>
struct ValueConverter<std::map<std::string, T, C, A>> : detail::dict_converter<std::map<std::string, T, C, A>> {};

template <class T, class H, class E, class A>
struct ValueConverter<std::unordered_map<std::string, T, H, E, A>>
  : detail::dict_converter<std::unordered_map<std::string, T, H, E, A>> {};

template <class T>
struct ValueConverter<std::optional<T>> {
  static Value to_value(const std::optional<T>& x) { return x ? ValueConverter<T>::to_value(*x) : Value(); }
  static Expected<std::optional<T>> from_value(const Value& v) {
    if (v.is_null())
      return std::optional<T>();
    auto x = ValueConverter<T>::from_value(v);
    if (!x)
      return x.error();
    return std::optional<T>(std::move(*x));
  }
};

template <class... Ts>
struct ValueConverter<std::tuple<Ts...>> : detail::tuple_converter<std::tuple<Ts...>> {};

template <class A, class B>
struct ValueConverter<std::pair<A, B>> : detail::tuple_converter<std::pair<A, B>> {};

// -- Value's typed members ---------------------------------------------------

template <class T>
Expected<T> Value::as() const {
  static_assert(!std::is_reference_v<T> && !std::is_const_v<T>, "gk::Value::as<T>: T is a plain value type");
  static_assert(detail::has_from_value<ValueConverter<T>, T>::value,
                "gk::Value::as<T>: no ValueConverter<T>::from_value for this T (string_view and const char* "
                "convert only into a Value; use std::string; for your own type, specialise gk::ValueConverter)");
  return ValueConverter<T>::from_value(*this);
}

template <class T>
Value Value::from(const T& value) {
  static_assert(detail::has_to_value<detail::converter_for<T>, T>::value,
                "gk::Value::from: no ValueConverter<T>::to_value for this T (specialise gk::ValueConverter)");
  return detail::converter_for<T>::to_value(value);
}

template <class T>
Expected<T> Value::get(std::string_view key) const {
  if (!is_dict())
    return detail::kind_error("dict", *this);
  const Value* entry = find(key);
  if (!entry)
    return detail::missing_key(key);
  auto converted = entry->as<T>();
  if (!converted)
    return detail::at_key(converted.error(), key);
  return converted;
}

template <class T>
Expected<T> Value::get_or(std::string_view key, typename detail::type_identity<T>::type fallback) const {
  if (!is_dict())
    return detail::kind_error("dict", *this);
  const Value* entry = find(key);
  if (!entry)
    return Expected<T>(std::move(fallback));
  auto converted = entry->as<T>();
  if (!converted)
    return detail::at_key(converted.error(), key);
  return converted;
}

} // namespace gk
