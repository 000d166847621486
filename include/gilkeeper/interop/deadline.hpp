#pragma once

/// Deadlines: when a request stops being worth an answer.
///
/// Every request carries a `Deadline`. It is either *unset* (the runtime fills
/// it in from config: per-target, per-message-type, then default timeout),
/// *never* (no deadline; must be asked for explicitly), or a finite point in
/// time on the steady clock. Across processes a deadline travels as its
/// remaining budget (`budget()`), and is turned back into a local absolute
/// deadline on arrival (`Deadline::after(budget)`), as gRPC does.
///
/// A host actor that handles one request and makes further calls hands them
/// its own deadline (or `deadline.min(Deadline::after(...))`), so the whole
/// chain respects the original budget.

#include <chrono>
#include <cstdint>
#include <string>

namespace gk {

/// A point in time after which a request is not worth answering.
/// Thread-safe: a plain value.
class Deadline {
public:
  using clock = std::chrono::steady_clock;
  using time_point = clock::time_point;
  using duration = std::chrono::nanoseconds;

  /// Unset: "use the configured timeout". The default.
  Deadline() = default;
  static Deadline unset() { return Deadline{}; }
  /// No deadline at all.
  static Deadline never() { return Deadline{kind::never, {}}; }
  /// The deadline at an absolute time.
  static Deadline at(time_point when) { return Deadline{kind::finite, when}; }
  /// The deadline `budget` from now (a negative budget is already expired).
  /// A budget that reaches past the end of the clock's range (centuries) is
  /// no deadline: never().
  static Deadline after(duration budget) {
    const time_point now = clock::now();
    if (budget > time_point::max() - now)
      return never();
    return Deadline{kind::finite, now + budget};
  }
  template <class Rep, class Period>
  static Deadline after(std::chrono::duration<Rep, Period> budget) {
    return after(std::chrono::duration_cast<duration>(budget));
  }

  bool is_set() const noexcept { return kind_ != kind::unset; }
  bool is_never() const noexcept { return kind_ == kind::never; }
  bool is_finite() const noexcept { return kind_ == kind::finite; }

  /// The absolute time. PRECONDITION: is_finite().
  time_point when() const noexcept { return when_; }

  /// Remaining time, clamped at zero; `duration::max()` when not finite.
  duration remaining(time_point now = clock::now()) const noexcept {
    if (!is_finite())
      return duration::max();
    return when_ > now ? std::chrono::duration_cast<duration>(when_ - now)
                       : duration::zero();
  }

  /// True when finite and passed.
  bool expired(time_point now = clock::now()) const noexcept {
    return is_finite() && now >= when_;
  }

  /// The earlier of two deadlines (unset counts as later than anything).
  Deadline min(const Deadline& other) const noexcept {
    if (!other.is_finite())
      return is_set() ? *this : other;
    if (!is_finite())
      return other;
    return other.when_ < when_ ? other : *this;
  }

  /// The wire form: remaining nanoseconds (>= 0), -1 for never, -2 for unset.
  std::int64_t budget(time_point now = clock::now()) const noexcept {
    if (kind_ == kind::unset)
      return -2;
    if (kind_ == kind::never)
      return -1;
    return remaining(now).count();
  }
  static Deadline from_budget(std::int64_t ns) {
    if (ns == -2)
      return unset();
    if (ns < 0)
      return never();
    return after(duration{ns});
  }

  friend bool operator==(const Deadline& a, const Deadline& b) noexcept {
    return a.kind_ == b.kind_ && (a.kind_ != kind::finite || a.when_ == b.when_);
  }
  friend bool operator!=(const Deadline& a, const Deadline& b) noexcept {
    return !(a == b);
  }

  /// "unset", "never" or "in 250ms" / "expired 3ms ago".
  std::string to_string() const;

private:
  enum class kind : std::uint8_t { unset, never, finite };
  Deadline(kind k, time_point when) : kind_(k), when_(when) {}
  kind kind_ = kind::unset;
  time_point when_{};
};

} // namespace gk
