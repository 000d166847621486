#pragma once

// Internal: the hand-off between the thread that decides a request is late
// (the watchdog) and the Python signal handler on the interpreter's thread.

#include <cstdint>

namespace gk::detail {

/// Why a request is interrupted.
enum class InterruptReason : std::uint8_t { deadline, cancelled };

/// Aims the next interrupt at request `seq`. Thread-safe.
void aim_interrupt(std::uint64_t seq, InterruptReason reason = InterruptReason::deadline) noexcept;

/// True (once) when an interrupt is aimed at `seq`; clears the aim and
/// says why in `reason`. Called by the signal handler on the interpreter's
/// thread.
bool consume_interrupt(std::uint64_t seq, InterruptReason& reason) noexcept;

/// Forgets any aim (at the end of a request).
void clear_interrupt() noexcept;

/// True while an interrupt aimed at `seq` has not been taken by the signal
/// handler. Thread-safe.
bool interrupt_aimed_at(std::uint64_t seq) noexcept;

/// Called from the interrupt signal's C-level handler, on the interpreter's
/// thread, before Python's own handler: notes when the signal arrived and
/// whether it found that thread holding the GIL (running bytecode, or
/// native code that holds it). Async-signal-safe.
void note_delivery(bool gil_held) noexcept;

/// What the interrupt aimed now found: when it reached the interpreter's
/// thread (steady clock, ns since its epoch; 0 when it has not yet), and
/// whether that thread held the GIL then.
struct Delivery {
  std::int64_t at = 0;
  bool gil_held = false;
};
Delivery delivery() noexcept;

/// A stack sample asked of the interpreter's thread (Interpreter::
/// sample_stack): the front handler, when one is pending, writes that
/// thread's Python stack to `probe_fd()` and marks it taken; Python's own
/// handler then runs as for any delivery (it interrupts nothing unless an
/// interrupt is aimed). Async-signal-safe.
enum class SampleState : int { idle = 0, pending = 1, taken = 2 };
bool sample_pending() noexcept;
int probe_fd() noexcept;
void note_sample(bool gil_held) noexcept;
void set_probe_fd(int fd) noexcept;
void set_sample_state(SampleState s) noexcept;
SampleState sample_state() noexcept;
bool sample_gil_held() noexcept;

} // namespace gk::detail
