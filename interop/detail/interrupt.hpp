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

} // namespace gk::detail
