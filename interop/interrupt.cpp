#include "interop/detail/interrupt.hpp"

#include <atomic>

namespace gk::detail {

namespace {
std::atomic<std::uint64_t> g_target{0};
}

void aim_interrupt(std::uint64_t seq) noexcept {
  g_target.store(seq, std::memory_order_release);
}

bool consume_interrupt(std::uint64_t seq) noexcept {
  std::uint64_t expected = seq;
  return g_target.compare_exchange_strong(expected, 0, std::memory_order_acq_rel);
}

void clear_interrupt() noexcept {
  g_target.store(0, std::memory_order_release);
}

} // namespace gk::detail
