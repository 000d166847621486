#pragma once

/// `Error`: the one shape every failure takes, from Python to the host.
///
/// Errors are values: the host API returns `Expected<T>`, actors reply with a
/// `caf::error` whose context holds the `Error` (see actors/messages.hpp).

#include <cstdint>
#include <string>

namespace gk {

/// What went wrong. Every reply that is not a result carries one of these.
enum class ErrorCode : std::uint8_t {
  /// Not an error (a default-constructed Error).
  none = 0,
  /// Python raised. `type`, `message` and `traceback` say what and where.
  python_exception,
  /// The request's deadline passed; `phase` says where it was:
  /// `queued` (it never ran), `soft` (interrupted or the caller was told
  /// while it ran), `hard` (the process running it was killed).
  deadline_exceeded,
  /// A value has no form on the other side (a result with no `Value` form,
  /// an int beyond int64, a string that is not UTF-8); `where` names the
  /// place (`result[2]["when"]`).
  conversion,
  /// A capability rule denied an action; `where` names the rule.
  capability_denied,
  /// The process running the call died; `signal` or `exit_status` says how.
  worker_crashed,
  /// The runtime is stuck in native code past the grace period and fails
  /// new requests fast until that code returns.
  wedged,
  /// Workers keep crashing; the runtime backs off and refuses work.
  degraded,
  /// A `Ref` whose object was released or whose interpreter is gone.
  stale_ref,
  /// Too many requests are queued.
  overloaded,
  /// The request itself is malformed (bad target, empty module name...).
  bad_request,
  /// The runtime is shutting down or gone.
  runtime_stopped,
  /// A record that is not valid input (the CLI: a line that is not JSON).
  bad_input,
  /// A bug or an unexpected failure inside gilkeeper itself.
  internal,
  /// The request was cancelled (`Future::cancel`, a cancelled
  /// `CancelToken`, a stopped pipeline): a queued request never ran; a
  /// running one was interrupted like a soft deadline (the Python type and
  /// traceback say where it was).
  cancelled,
  /// A blocking call was made where it cannot make progress (`[debug.gil]
  /// detect_deadlock`): on the interpreter's own thread, in a worker
  /// actor's handler, or on a scheduler thread of the runtime's own actor
  /// system. It was refused at once and never submitted; the message names
  /// the context. Use an asynchronous entry point there instead.
  deadlock,
  /// The remote node running the request disconnected or stopped answering
  /// its heartbeats (`gk::connect`, `gilkeeper run --nodes`). The request
  /// may or may not have run there; its reply, should it come, is dropped.
  node_lost,
};

/// The last code (for loops over every code).
inline constexpr ErrorCode kLastErrorCode = ErrorCode::node_lost;

/// Where a deadline was missed.
enum class DeadlinePhase : std::uint8_t { none = 0, queued, soft, hard };

/// "python_exception", "deadline_exceeded", ...
const char* to_string(ErrorCode code) noexcept;
/// "", "queued", "soft", "hard".
const char* to_string(DeadlinePhase phase) noexcept;
/// Parses a code name; returns ErrorCode::none for an unknown name.
ErrorCode error_code_from_string(const std::string& name) noexcept;

/// A structured error. Thread-safe: a plain value.
struct Error {
  ErrorCode code = ErrorCode::none;
  /// For deadline_exceeded.
  DeadlinePhase phase = DeadlinePhase::none;
  /// Human-readable message (for python_exception: `str(exc)`).
  std::string message;
  /// Python exception type, qualified unless builtin (`ValueError`,
  /// `mymod.BadRecord`, `gilkeeper.DeadlineExceeded`).
  std::string type;
  /// Formatted Python traceback (as `traceback.format_exception` gives it).
  std::string traceback;
  /// Where: the value path for conversion errors (`result[2]["when"]`,
  /// `args[0]`), the rule for capability denials; otherwise the target of
  /// the request: `module:function` of a call, `<Type>.method` of a call on
  /// a Ref, the module of an import, `module:attr` of a getattr; empty for
  /// eval, exec and a batch as a whole (each call of a batch names its own).
  std::string where;
  /// For worker_crashed: the signal that killed the worker (0 if none).
  int signal = 0;
  /// For worker_crashed: the exit status (-1 if killed by a signal).
  int exit_status = -1;

  Error() = default;
  Error(ErrorCode c, std::string msg) : code(c), message(std::move(msg)) {}

  static Error deadline(DeadlinePhase p, std::string msg) {
    Error e(ErrorCode::deadline_exceeded, std::move(msg));
    e.phase = p;
    return e;
  }

  explicit operator bool() const noexcept { return code != ErrorCode::none; }

  /// One line: `deadline_exceeded (soft): call "m:f" ran past its deadline`.
  std::string to_string() const;
};

bool operator==(const Error& a, const Error& b);
inline bool operator!=(const Error& a, const Error& b) { return !(a == b); }

} // namespace gk
