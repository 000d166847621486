#include "interop/detail/interrupt.hpp"

#include <atomic>

namespace gk::detail {

namespace {
std::atomic<std::uint64_t> g_target{0};
// Written before g_target (release), read after consuming it (acquire).
std::atomic<InterruptReason> g_reason{InterruptReason::deadline};
}

void aim_interrupt(std::uint64_t seq, InterruptReason reason) noexcept {
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

} // namespace gk::detail
