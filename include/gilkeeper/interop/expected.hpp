#pragma once

/// `Expected<T>`: a result or an `Error`, the return type of the host API.

#include "gilkeeper/interop/error.hpp"

#include <stdexcept>
#include <utility>
#include <variant>

namespace gk {

/// Thrown only by `Expected::value()` on an error (a misuse; check first).
class BadExpectedAccess : public std::logic_error {
public:
  explicit BadExpectedAccess(const Error& e)
    : std::logic_error("Expected holds an error: " + e.to_string()), error_(e) {}
  const Error& error() const noexcept { return error_; }

private:
  Error error_;
};

/// Holds either a T or an Error. Thread-safe: a plain value.
template <class T>
class Expected {
public:
  // Each alternative is constructed in place: a temporary T moved into the
  // variant would be read alternative by alternative (T's own variant), which
  // g++ 12 with ASan reports as maybe-uninitialized.
  Expected() : v_(std::in_place_index<0>) {}
  Expected(T value) : v_(std::in_place_index<0>, std::move(value)) {}
  Expected(Error error) : v_(std::in_place_index<1>, std::move(error)) {}

  bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  /// The value; throws BadExpectedAccess when this holds an error.
  T& value() & {
    check();
    return std::get<0>(v_);
  }
  const T& value() const& {
    check();
    return std::get<0>(v_);
  }
  T&& value() && {
    check();
    return std::get<0>(std::move(v_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  /// The error. PRECONDITION: !has_value() (otherwise a static empty Error).
  const Error& error() const noexcept {
    static const Error no_error;
    return has_value() ? no_error : std::get<1>(v_);
  }

private:
  void check() const {
    if (!has_value())
      throw BadExpectedAccess(std::get<1>(v_));
  }
  std::variant<T, Error> v_;
};

} // namespace gk
