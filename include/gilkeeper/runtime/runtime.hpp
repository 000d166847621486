#pragma once

/// `gk::Runtime`: a Python runtime for a multi-threaded host.
///
/// ```
/// gk::Runtime rt(gk::load_config_file("gilkeeper.toml"));
/// auto r = rt.call("json:dumps", {gk::Value::dict({{"a", 1}})});
/// if (r) std::cout << r->as_string();
/// else   std::cerr << r.error().to_string();
/// ```
///
/// Every Python interaction goes through the runtime's one interpreter; each
/// request runs to completion before the next starts (so a check-then-set on
/// a Python object cannot race between requests). Every request carries a
/// deadline (see `DeadlinePolicy` for which one) and gets exactly one reply;
/// at the deadline the caller gets `deadline_exceeded` even if the
/// interpreter is stuck, and the running Python code is interrupted.
///
/// Thread-safety: every member function may be called from any number of
/// threads at once. Errors are values (`Expected`), except in the
/// constructor, which throws `ConfigError` for a bad config and
/// `RuntimeStartError` when the interpreter cannot start.
///
/// The synchronous calls block the calling thread. Where that cannot end
/// well — a worker actor's handler, a scheduler thread of the runtime's own
/// actor system, the interpreter's own thread — they answer `deadlock` at
/// once and submit nothing (`[debug.gil] detect_deadlock`, on by default;
/// see docs/composition.md). The `_async` forms never block.

#include "gilkeeper/config/config.hpp"
#include "gilkeeper/interop/context.hpp"
#include "gilkeeper/interop/deadline.hpp"
#include "gilkeeper/interop/expected.hpp"
#include "gilkeeper/interop/host.hpp"
#include "gilkeeper/interop/request.hpp"
#include "gilkeeper/interop/value.hpp"
#include "gilkeeper/runtime/future.hpp"

#include <caf/fwd.hpp>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace gk {

namespace detail {
struct RuntimeAccess;
}

/// The runtime could not start (Python failed, or another thread-mode
/// runtime is alive in this process). `error()` holds the details.
class RuntimeStartError : public std::runtime_error {
public:
  explicit RuntimeStartError(Error e) : std::runtime_error(e.to_string()), error_(std::move(e)) {}
  const Error& error() const noexcept { return error_; }

private:
  Error error_;
};

/// Options of one request.
struct RequestOptions {
  /// The deadline; unset means "from config".
  Deadline deadline;
  /// Return a Ref to the result instead of converting it.
  bool want_ref = false;
  /// A stage timeout (used by jobs and pipelines; below a per-call deadline
  /// and above the per-target one in precedence).
  std::optional<Timeout> stage_timeout;
  /// The request this one is made on behalf of (a worker handler's or a
  /// pipeline stage's context): this request's deadline is at most the
  /// parent's, and cancelling the parent cancels it.
  std::optional<RequestContext> parent;

  static RequestOptions with_deadline(Deadline d) {
    RequestOptions o;
    o.deadline = d;
    return o;
  }
  /// Options of a request made on behalf of `parent`.
  static RequestOptions within(RequestContext parent) {
    RequestOptions o;
    o.parent = std::move(parent);
    return o;
  }
};

/// A Python runtime. Not copyable or movable.
class Runtime {
public:
  /// Starts the runtime: the executor, the interpreter, and an actor system
  /// of its own (`runtime.scheduler_threads` threads). Throws
  /// RuntimeStartError.
  explicit Runtime(Config config);
  /// Starts the runtime on a host's own actor system (no second scheduler):
  /// the PyRuntime actor, worker actors and pipelines' listeners live on
  /// `system`. PRECONDITION: `system` was made from a config that went
  /// through `configure_actor_system`, and outlives this Runtime's
  /// shutdown(). Throws RuntimeStartError.
  Runtime(Config config, caf::actor_system& system);
  /// Loads a TOML config file and starts. Throws ConfigError or
  /// RuntimeStartError.
  static std::unique_ptr<Runtime> from_file(const std::string& path);
  /// Shuts down (see shutdown()).
  ~Runtime();

  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  /// Calls `target` ("module:qualname") with positional and keyword
  /// arguments and waits for the result, at most until the deadline.
  Expected<Value> call(const std::string& target, List args = {}, Dict kwargs = {},
                       RequestOptions options = {});
  /// Calls a method of (or, with an empty name, the object behind) a Ref.
  Expected<Value> call(const Ref& self, const std::string& method, List args = {},
                       Dict kwargs = {}, RequestOptions options = {});
  /// The full form: any CallRequest.
  Expected<Value> call(CallRequest request, const std::optional<Timeout>& stage_timeout = std::nullopt);
  /// Like call(), but keeps the result in the runtime and returns a Ref.
  Expected<Ref> call_ref(const std::string& target, List args = {}, Dict kwargs = {},
                         RequestOptions options = {});

  /// Evaluates an expression in `__main__`.
  Expected<Value> eval(const std::string& expression, RequestOptions options = {});
  /// Evaluates an expression in `__main__` and keeps the result as a Ref.
  Expected<Ref> eval_ref(const std::string& expression, RequestOptions options = {});
  /// Runs statements in `__main__`; returns null.
  Expected<Value> exec(const std::string& code, RequestOptions options = {});
  /// Imports a module; returns null.
  Expected<Value> import_module(const std::string& module, RequestOptions options = {});
  /// Reads `"module:attr.path"`.
  Expected<Value> getattr(const std::string& target, RequestOptions options = {});
  /// Reads a dotted attribute path of a Ref'd object.
  Expected<Value> getattr(const Ref& object, const std::string& path, RequestOptions options = {});
  /// Runs many calls in one request; one result per call, in order.
  Expected<std::vector<Expected<Value>>> batch(std::vector<CallRequest> calls,
                                               RequestOptions options = {});
  /// Releases a Ref's object now (it is released anyway when the last copy
  /// of the Ref goes away). Later uses of the Ref give `stale_ref`.
  Expected<Value> release(const Ref& ref);

  /// Asynchronous forms: submit and return at once; the Future gets the one
  /// reply (see gilkeeper/runtime/future.hpp) and can cancel the request.
  /// One thread can keep thousands in flight. After shutdown() the future
  /// is ready with `runtime_stopped`.
  Future<Value> call_async(const std::string& target, List args = {}, Dict kwargs = {},
                           RequestOptions options = {});
  /// A method of (or the object behind) a Ref, asynchronously.
  Future<Value> call_async(const Ref& self, const std::string& method, List args = {}, Dict kwargs = {},
                           RequestOptions options = {});
  /// Any CallRequest, asynchronously.
  Future<Value> call_async(CallRequest request, RequestOptions options = {});
  /// Evaluates an expression in `__main__`, asynchronously.
  Future<Value> eval_async(const std::string& expression, RequestOptions options = {});
  /// Runs statements in `__main__`, asynchronously.
  Future<Value> exec_async(const std::string& code, RequestOptions options = {});
  /// Runs many calls in one request, asynchronously.
  Future<std::vector<Expected<Value>>> batch_async(std::vector<CallRequest> calls, RequestOptions options = {});

  /// Exposes a C++ function to the Python code this runtime runs, as
  /// `gilkeeper.host.NAME(*args)` (also `from gilkeeper import host`).
  /// `fn` is called with the positional arguments as Values and the call's
  /// `HostCall` (its deadline: what is left of the calling request's; its
  /// token: cancelled when Python stops waiting). It runs on a `gk-host`
  /// thread while the Python call waits with the GIL released; requests it
  /// makes to this runtime (on its own thread, or with
  /// `RequestOptions::within(call.context())`) are served re-entrantly by the
  /// waiting interpreter, any number of levels deep. An error, an exception
  /// or a result with no Python form raises `gilkeeper.HostError` in
  /// Python. Process isolation: the same, over the worker's socket.
  /// Registering a name again replaces it; may be called at any time.
  /// Errors: bad_request for a name that is not a Python identifier or
  /// starts with '_'. See docs/host-functions.md.
  Error expose(const std::string& name, HostFunction fn);
  /// The short form: `fn(const gk::List& args)` returning anything
  /// `Expected<Value>` is made from (a Value, an Error, an Expected).
  template <class F, class = std::enable_if_t<std::is_invocable_v<F&, const List&>
                                              && !std::is_invocable_v<F&, const List&, const HostCall&>>>
  Error expose(const std::string& name, F fn) {
    return expose(name, HostFunction([fn = std::move(fn)](const List& args, const HostCall&) mutable
                                         -> Expected<Value> { return fn(args); }));
  }
  /// An actor as a host function: each Python call is a request
  /// `gk::HostCallMessage` (name, args, deadline) sent to `handler` from a
  /// gk-host thread, with the call's remaining deadline as the request's
  /// timeout; the actor replies a `gk::Value` or a `caf::error`. Errors:
  /// bad_request for an invalid handle or name.
  Error expose(const std::string& name, caf::actor handler);
  /// Removes a host function; false when `name` was not exposed. Python
  /// calls to it then raise HostError (bad_request).
  bool unexpose(const std::string& name);
  /// The names exposed now.
  std::vector<std::string> exposed() const;

  /// Counters and timings; answers even while the interpreter is stuck.
  Stats stats() const;

  /// What the runtime is doing now, as text for a person (an incident's
  /// first look; `kill -QUIT` prints it for `gilkeeper run`): the running
  /// request of each interpreter with its current Python stack, the
  /// requests queued (oldest first, with their ages and deadlines), and in
  /// process isolation each worker process's pid, state and request. Takes
  /// the stacks without stopping anything; waits at most about 1 s for a
  /// worker process's answer. Thread-safe.
  std::string dump() const;

  /// Every counter, histogram and gauge of stats() in the Prometheus text
  /// exposition format 0.0.4 (`text/plain; version=0.0.4`), the body of a
  /// scrape; docs/metrics.md lists the metrics. Thread-safe; answers even
  /// while the interpreter is stuck, and after shutdown() (the last counts).
  std::string metrics() const;

  /// Stops the runtime: queued requests get `runtime_stopped`, the running
  /// call is interrupted, non-daemon Python threads get
  /// `runtime.shutdown_grace` to end; the report lists leaked Refs and what
  /// could not be stopped. Bounded in time. Idempotent.
  ShutdownReport shutdown();

  /// The deadline a request would get (see DeadlinePolicy).
  Deadline resolve_deadline(const std::string& type, const std::string& target,
                            const Deadline& requested,
                            const std::optional<Timeout>& stage = std::nullopt) const;

  /// The config the runtime was started with.
  const Config& config() const noexcept;

  /// The actor system: the host's own when it passed one, else the
  /// runtime's (for hosts that are CAF programs). See also
  /// `runtime_actor()` in actors/py_runtime.hpp.
  /// PRECONDITION: before shutdown() (the system is gone after it; see
  /// stopped()).
  caf::actor_system& system() noexcept;

  /// True once shutdown() started. Every entry point answers
  /// `runtime_stopped` from then on.
  bool stopped() const noexcept;

private:
  friend struct detail::RuntimeAccess;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Prepares a host's actor system config for a Runtime: announces the
/// message vocabulary and gilkeeper's error category. Call it before
/// constructing the `caf::actor_system` you pass to `Runtime`.
void configure_actor_system(caf::actor_system_config& config);

} // namespace gk
