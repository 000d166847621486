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

namespace {
std::atomic<int> g_sample{0};
std::atomic<int> g_probe_fd{-1};
std::atomic<bool> g_sample_gil{false};
}

bool sample_pending() noexcept { return g_sample.load(std::memory_order_acquire) == static_cast<int>(SampleState::pending); }
int probe_fd() noexcept { return g_probe_fd.load(std::memory_order_acquire); }
void note_sample(bool gil_held) noexcept {
  g_sample_gil.store(gil_held, std::memory_order_relaxed);
  g_sample.store(static_cast<int>(SampleState::taken), std::memory_order_release);
}

// For Interpreter::sample_stack (interpreter.cpp).
void set_probe_fd(int fd) noexcept { g_probe_fd.store(fd, std::memory_order_release); }
void set_sample_state(SampleState s) noexcept { g_sample.store(static_cast<int>(s), std::memory_order_release); }
SampleState sample_state() noexcept { return static_cast<SampleState>(g_sample.load(std::memory_order_acquire)); }
bool sample_gil_held() noexcept { return g_sample_gil.load(std::memory_order_relaxed); }

Delivery delivery() noexcept {
  std::int64_t v = g_delivered.load(std::memory_order_acquire);
  return Delivery{v < 0 ? -v : v, v > 0};
}

} // namespace gk::detail
