#pragma once

/// The embedded CPython interpreter and everything that touches `PyObject*`.
///
/// There can be only one interpreter per process at a time: `start` fails
/// with a clear error when another is alive (or when a previous one could not
/// be finalized because Python threads never ended).
///
/// The thread that calls `start` becomes Python's main thread (Python-level
/// signal handlers run on it) and must be the only thread that calls the
/// other member functions, except `interrupt`, which any thread may call.
/// This header does not include Python.h.

#include "gilkeeper/config/config.hpp"
#include "gilkeeper/interop/expected.hpp"
#include "gilkeeper/interop/request.hpp"
#include "gilkeeper/interop/value.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <pthread.h>
#include <string>
#include <vector>

namespace gk {

/// Where Python code called a host function from (InterpreterOptions::
/// host_call).
struct HostCallSite {
  /// The request running on the interpreter's thread, and its deadline
  /// (0 and never when none runs, or the call came from another thread).
  std::uint64_t seq = 0;
  Deadline deadline;
  /// Called on the interpreter's own thread (the thread that runs
  /// requests), not on a Python thread of the code's own.
  bool request_thread = false;
};

/// How to start an interpreter.
struct InterpreterOptions {
  /// Prepended to sys.path, in order.
  std::vector<std::string> python_path;
  /// The real interpreter: becomes `sys.executable`, which `multiprocessing`
  /// starts (an embedded interpreter would otherwise point at the host).
  std::string executable = "/usr/bin/python3";
  /// Real-time signal offset for soft interrupts (SIGRTMIN + n); nullopt
  /// installs no handler and makes `interrupt` a no-op.
  std::optional<int> interrupt_signal = 2;
  /// What Python code may do (`[capabilities]`), enforced by an audit hook
  /// from the end of `start` until the interpreter is finalized. The
  /// default denies only `os.fork`. See docs/capabilities.md.
  CapabilitiesConfig capabilities;
  /// Called (on any thread) when the last copy of a Ref made by this
  /// interpreter goes away. Must not block.
  std::function<void(std::uint64_t id, std::uint64_t epoch)> release_ref;
  /// Called (on any thread) when the last copy of a Buffer over a Python
  /// object's memory goes away: the object must be released on this
  /// interpreter's thread (a `release` request). Must not block. Empty:
  /// such Buffers are copies instead.
  std::function<void(std::uint64_t id, std::uint64_t epoch)> release_buffer;
  /// The epoch stamped on this interpreter's Refs; 0 picks a fresh one
  /// (a worker process gets its epoch from the host, so that Refs of
  /// different workers never collide).
  std::uint64_t epoch = 0;
  /// Called when a soft interrupt (a deadline, a cancel) raises in the
  /// running request, with the error the request will fail with: code,
  /// Python type, message and the traceback of where the code was. It runs
  /// on the interpreter's thread inside the signal handler, with the GIL
  /// held, before the exception unwinds; it must not call into Python or
  /// block. The request's own error, when it unwinds uncaught, carries the
  /// same traceback.
  std::function<void(Error)> on_interrupted;
  /// Runs host function `name` for Python code (`gilkeeper.host.NAME(...)`)
  /// and returns its result: called on the calling Python thread with the
  /// GIL released, after the capability rules allowed it. It returns
  /// `deadline_exceeded` or `cancelled` when an interrupt aimed at
  /// `site.seq` ended the wait (see interrupt_pending); Python then gets
  /// that interrupt's exception. Empty: no host functions.
  std::function<Expected<Value>(const std::string& name, List args, const HostCallSite& site)> host_call;
  /// The names of the host functions, for `dir(gilkeeper.host)`.
  std::function<std::vector<std::string>()> host_names;
};

/// The interpreter. Not copyable. Thread-safety: owner thread only, except
/// `interrupt` and `signal_number`.
/// See Interpreter::probe_native.
enum class NativeProbe {
  taken,        ///< Python code took the interrupt (or none is aimed at it)
  undelivered,  ///< not delivered yet, or delivered less than the probe ago
  blocking,     ///< it found the GIL released: a blocking call, woken by it
  stuck,        ///< native code holding the GIL, not taking it
};

/// The Python stack of the interpreter's thread, taken while it runs.
struct StackSample {
  /// False when it could not be taken (`note` says why).
  bool taken = false;
  /// Most recent call first, as faulthandler writes it:
  /// `Stack (most recent call first):` then `  File "f.py", line 3 in g`.
  std::string stack;
  /// The innermost Python frame (`File "f.py", line 3 in g`).
  std::string where;
  /// The thread held the GIL when the signal arrived.
  bool gil_held = false;
  /// It runs native code: a blocking call that released the GIL, or code
  /// that holds the GIL and does not let Python code run.
  bool in_native = false;
  std::string note;
};

/// One allocation site of Python's (tracemalloc, by line).
struct AllocationSite {
  std::string file;
  int line = 0;
  std::int64_t size = 0;   ///< bytes (or bytes grown, in a LeakCheck)
  std::int64_t count = 0;  ///< blocks (or blocks grown)
};

/// One look of the leak check: Python's traced memory at the last three
/// looks, and the sites that grew since the previous look, most first.
struct LeakCheck {
  bool tracing = false;  ///< false: tracemalloc is off
  std::vector<std::int64_t> totals;
  std::vector<AllocationSite> grown;
};

class Interpreter {
public:
  /// Initialises Python on the calling thread and returns with the GIL
  /// released. Errors: `internal` (Python failed to start) or `bad_request`
  /// (another interpreter is alive in this process).
  static Expected<std::unique_ptr<Interpreter>> start(InterpreterOptions options);

  ~Interpreter();
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  /// Takes / drops the GIL. PRECONDITION: owner thread.
  void acquire_gil();
  void release_gil();

  /// Marks the start and end of a request so that an interrupt aimed at
  /// request `seq` never hits another one. `label` names it in messages.
  /// PRECONDITION: owner thread, GIL held.
  void begin_request(std::uint64_t seq, const std::string& label, Deadline deadline);
  void end_request();

  /// Runs one request. PRECONDITION: owner thread, GIL held. Never throws.
  Expected<Value> run(const ImportRequest& r);
  Expected<Value> run(const CallRequest& r);
  Expected<Value> run(const EvalRequest& r);
  Expected<Value> run(const ExecRequest& r);
  Expected<Value> run(const GetattrRequest& r);
  Expected<Value> run(const ReleaseRequest& r);

  /// Within a batch, a call target resolved once is reused by the calls
  /// after it (no re-resolution of the same "module:function" per call).
  /// PRECONDITION: owner thread, GIL held; every begin has its end.
  void begin_batch();
  void end_batch();

  /// Handles in the table. PRECONDITION: owner thread.
  std::size_t live_refs() const;
  /// The epoch stamped on this interpreter's Refs (unique per process).
  std::uint64_t epoch() const noexcept;
  /// "3.11.2".
  static std::string python_version();
  /// True for a free-threaded build (3.13t and later; never Debian's 3.11).
  static bool free_threaded() noexcept;
  /// Whether the GIL is on (`sys._is_gil_enabled()`; always true on a
  /// build with a GIL). An extension that does not declare itself safe
  /// without the GIL turns it on when imported. PRECONDITION: owner thread,
  /// GIL held (on a free-threaded build: attached).
  bool gil_enabled();

  /// Ends the interpreter: waits up to `grace` for non-daemon Python threads,
  /// reports leaked handles, and finalizes. When threads do not end, Python is
  /// left running (never finalized) and the report says which threads; no new
  /// interpreter can start in this process afterwards.
  /// PRECONDITION: owner thread, GIL held. Returns with the GIL released (or
  /// the interpreter gone).
  ShutdownReport finalize(std::chrono::nanoseconds grace);

  /// Asks the owner thread to raise `gilkeeper.DeadlineExceeded` (or, with
  /// `cancel`, `gilkeeper.Cancelled`) in the Python code of request `seq`,
  /// if it is still running it when the signal is handled. Thread-safe,
  /// async-signal-unsafe. No-op without a signal.
  void interrupt(pthread_t owner, std::uint64_t seq, bool cancel = false) noexcept;

  /// Where the interrupt aimed at request `seq` stands, `probe` after it
  /// reached the owner thread: `stuck` when it found the thread holding the
  /// GIL at least `probe` ago and Python code has not taken it since (the
  /// thread runs native code that holds the GIL and does not check for
  /// signals: Python code takes an interrupt within microseconds).
  /// Thread-safe.
  static NativeProbe probe_native(std::uint64_t seq, std::chrono::nanoseconds probe) noexcept;

  /// True while an interrupt is aimed at request `seq` and Python code has
  /// not taken it (a host call's wait ends on it). Thread-safe.
  static bool interrupt_pending(std::uint64_t seq) noexcept;
  /// From now on the interrupt signal also writes 1 to the eventfd `fd`
  /// (-1: no longer), so that a wait in poll on the interpreter's thread
  /// wakes whenever the signal comes (a host call's wait). Thread-safe.
  static void wake_on_interrupt(int fd) noexcept;

  /// Takes the Python stack of the owner thread without stopping it: the
  /// interrupt signal, with no interrupt aimed (Python's handler then does
  /// nothing), makes that thread write its own stack; a pending call that
  /// the signal lets run tells Python code from native code. Waits at most `wait` for the signal (plus
  /// 5 ms for the pending call). Any thread; one sample at a time.
  StackSample sample_stack(pthread_t owner, std::chrono::nanoseconds wait) const;

  /// Memory (`[debug.memory]`). PRECONDITION: owner thread, GIL held.
  /// Starts tracemalloc (one frame per allocation: its line).
  bool start_tracing_memory();
  /// The `top` sites holding the most memory now (empty when not tracing).
  std::vector<AllocationSite> top_allocations(int top);
  /// Takes a snapshot and compares it with the previous one.
  LeakCheck check_leaks(int top);

  /// The signal used for interrupts, or 0.
  int signal_number() const noexcept;

  /// How many actions the capability rules denied so far (each raised
  /// `gilkeeper.CapabilityDenied` in Python, caught or not). Thread-safe.
  std::uint64_t capability_denials() const;

  struct Impl;

private:
  explicit Interpreter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

} // namespace gk
