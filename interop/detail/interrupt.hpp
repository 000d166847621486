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
/// thread, before Python's own handler: notes when the signal found that
/// thread holding the GIL (running bytecode, or native code that holds it).
/// Async-signal-safe.
void note_delivery(bool gil_held) noexcept;

/// When (steady clock, ns since its epoch) the interrupt aimed now reached
/// the interpreter's thread while it held the GIL; 0 if it has not (yet),
/// or found the GIL released (a blocking call, woken by the signal).
std::int64_t delivered_holding_gil() noexcept;

} // namespace gk::detail
