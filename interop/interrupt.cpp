#include "interop/detail/interrupt.hpp"

#include <atomic>
#include <ctime>

namespace gk::detail {

namespace {
std::atomic<std::uint64_t> g_target{0};
// Written before g_target (release), read after consuming it (acquire).
std::atomic<InterruptReason> g_reason{InterruptReason::deadline};
// When the signal arrived (0: not yet), negated when the GIL was released.
std::atomic<std::int64_t> g_delivered{0};
}

void aim_interrupt(std::uint64_t seq, InterruptReason reason) noexcept {
  g_delivered.store(0, std::memory_order_relaxed);
  g_reason.store(reason, std::memory_order_relaxed);
  g_target.store(seq, std::memory_order_release);
}

bool consume_interrupt(std::uint64_t seq, InterruptReason& reason) noexcept {
  std::uint64_t expected = seq;
  if (!g_target.compare_exchange_strong(expected, 0, std::memory_order_acq_rel))
    return false;
  reason = g_reason.load(std::memory_order_relaxed);
  return true;
}

void clear_interrupt() noexcept {
  g_target.store(0, std::memory_order_release);
}

bool interrupt_aimed_at(std::uint64_t seq) noexcept {
  return seq != 0 && g_target.load(std::memory_order_acquire) == seq;
}

void note_delivery(bool gil_held) noexcept {
  if (g_target.load(std::memory_order_acquire) == 0)
    return;
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);  // async-signal-safe; steady_clock's clock
  std::int64_t at = static_cast<std::int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
  g_delivered.store(gil_held ? at : -at, std::memory_order_release);
}

Delivery delivery() noexcept {
  std::int64_t v = g_delivered.load(std::memory_order_acquire);
  return Delivery{v < 0 ? -v : v, v > 0};
}

} // namespace gk::detail
