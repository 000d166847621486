#pragma once

/// The worker side of process isolation: the request loop a child process
/// runs (`gilkeeper worker --fd 3 --parent PID`).

namespace gk {

/// Serves requests from the host over the socket `fd` until the host says
/// goodbye or goes away: reads the setup, applies rlimits, starts the
/// interpreter with the same request loop as the thread executor (soft
/// deadlines included), answers `ready`, then runs requests in order.
/// Dies with the host: sets a parent-death signal and exits when `parent`
/// is no longer its parent. Returns the process exit status.
int run_worker(int fd, int parent);

/// The signal the host sends a worker process to cancel the request it
/// runs (`sigqueue`, the request's wire id as the value): `SIGRTMAX - 1`.
/// A worker blocks it in every thread and waits for it on its main thread.
int worker_cancel_signal() noexcept;
/// The value of that signal that asks for a dump instead (Runtime::dump):
/// the worker answers with a `stack_dump` event frame. Never a request id.
inline constexpr unsigned long long kWorkerDumpRequest = ~0ull;

} // namespace gk
