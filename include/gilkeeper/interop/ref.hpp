#pragma once

/// `Ref`: a handle to a Python object that stays inside the runtime.
///
/// A call made with `want_ref` returns a Ref instead of a converted value; a
/// Ref passed as an argument (or as the object of a call/getattr) stands for
/// the object itself. Copies share one handle; when the last copy goes away
/// the runtime is told to release the object (asynchronously, without
/// waiting). A Ref whose object was released, or whose interpreter died or
/// was restarted, is *stale*: using it gives a `stale_ref` error, never a
/// crash. Thread-safe: copies may be used and destroyed on any thread.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace gk {

namespace detail {
/// The shared part of a Ref. When the last Ref goes, `release` is called
/// once with the id and epoch (if set).
struct RefState {
  std::uint64_t id = 0;
  std::uint64_t epoch = 0;
  std::string type_name;
  std::function<void(std::uint64_t id, std::uint64_t epoch)> release;
  RefState() = default;
  RefState(std::uint64_t i, std::uint64_t e, std::string t,
           std::function<void(std::uint64_t, std::uint64_t)> r)
    : id(i), epoch(e), type_name(std::move(t)), release(std::move(r)) {}
  RefState(const RefState&) = delete;
  RefState& operator=(const RefState&) = delete;
  ~RefState() {
    if (release)
      release(id, epoch);
  }
};
} // namespace detail

/// A shared handle to a Python object in the runtime's handle table.
class Ref {
public:
  /// An empty Ref (refers to nothing).
  Ref() = default;
  explicit Ref(std::shared_ptr<const detail::RefState> state) : state_(std::move(state)) {}

  /// False for an empty Ref.
  explicit operator bool() const noexcept { return state_ != nullptr; }
  /// The handle id in the runtime's table (0 when empty).
  std::uint64_t id() const noexcept { return state_ ? state_->id : 0; }
  /// Which interpreter incarnation the handle belongs to.
  std::uint64_t epoch() const noexcept { return state_ ? state_->epoch : 0; }
  /// The Python type name of the object when the Ref was made.
  const std::string& type_name() const noexcept {
    static const std::string empty;
    return state_ ? state_->type_name : empty;
  }
  /// Number of Ref copies sharing this handle (for tests and diagnostics).
  long use_count() const noexcept { return state_.use_count(); }

  friend bool operator==(const Ref& a, const Ref& b) noexcept {
    return a.id() == b.id() && a.epoch() == b.epoch();
  }
  friend bool operator!=(const Ref& a, const Ref& b) noexcept { return !(a == b); }

private:
  std::shared_ptr<const detail::RefState> state_;
};

} // namespace gk
