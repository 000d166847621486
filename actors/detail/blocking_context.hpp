#pragma once

// Internal: where a blocking call cannot make progress (`[debug.gil]
// detect_deadlock`).
//
// A thread marks itself while it runs code that must not block: the
// interpreter's own thread (it would wait for itself), a worker actor's
// handler (it holds a scheduler thread; it answers with
// WorkerReply::python), the scheduler threads of the runtime's own actor
// system. Every blocking entry point (PyRuntime::ask, Future::get and its
// waits, gk::ask) reads the mark first and, when it is set, answers
// `deadlock` at once instead of waiting: one thread-local read on the
// normal path.
//
// The mark is a phrase naming the context, read as "<what>: a blocking
// call made <phrase>" ("on the interpreter's own thread: it would wait for
// itself"). Whoever sets it keeps the text alive while it is set. A context
// whose runtime has detection switched off simply does not mark itself.
//
// Thread-safety: the mark belongs to the calling thread.

#include "gilkeeper/interop/error.hpp"

#include <string>

namespace gk::detail {

/// The interpreter's own thread (thread isolation, and a worker process's
/// interpreter thread).
inline constexpr const char kInterpreterThread[] = "on the interpreter's own thread: it would wait for itself";

/// A scheduler thread of the actor system a Runtime made for itself.
inline constexpr const char kSchedulerThread[] =
    "on a scheduler thread of the runtime's own actor system: the thread may be one its reply needs"
    " (use call_async, gk::ask_async or gk::request, which do not block)";

/// A host function called from a Python thread other than the interpreter's
/// (a `threading.Thread` of the code's own), calling back into its runtime.
inline constexpr const char kHostFromPythonThread[] =
    "by a host function called from a Python thread of the code's own: only the interpreter's thread serves "
    "requests nested in a host call, and it may be waiting for that Python thread (call from the request's "
    "thread, or use call_async)";

/// The phrase naming this thread's context, or nullptr when the thread may
/// block.
const char* blocking_context() noexcept;

/// Sets this thread's mark for good (a thread hook: until the thread ends,
/// or `nullptr` clears it). `context` must outlive the mark.
void mark_thread(const char* context) noexcept;

/// Marks this thread while it lives, then restores the mark it found (so
/// contexts nest: a worker's handler on a marked scheduler thread). A null
/// `context` leaves the mark as it is.
class BlockingScope {
public:
  explicit BlockingScope(const char* context) noexcept : previous_(blocking_context()), set_(context != nullptr) {
    if (set_)
      mark_thread(context);
  }
  ~BlockingScope() {
    if (set_)
      mark_thread(previous_);
  }
  BlockingScope(const BlockingScope&) = delete;
  BlockingScope& operator=(const BlockingScope&) = delete;

private:
  const char* previous_;
  bool set_;
};

/// The `deadlock` error of the blocking call `what` ("call m:f",
/// "Future::get") refused in `context`.
Error deadlock_error(const std::string& what, const char* context);

} // namespace gk::detail
