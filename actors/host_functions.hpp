#pragma once

// Internal: host functions (Runtime::expose) on the runtime's side.
//
// - HostFunctions: the registry of a runtime's host functions and the
//   elastic pool of `gk-host` threads they run on (a host function that
//   calls back into the runtime holds its thread while the nested request
//   runs, so ten levels deep need ten threads: the pool grows when every
//   thread is busy, and idle threads end after a while).
// - HostNest: one host call in flight, seen from both sides: the host
//   function's result goes into it, and the requests the host function
//   makes on the call's behalf are queued in it for the interpreter that
//   waits (re-entrancy, see the thread executor's host wait), instead of in
//   the runtime's queue behind the request that waits for them.
// - The host context of the calling thread: set while a host function runs,
//   so that requests it makes on its own thread nest without being told.
//
// Thread-safety: every member may be called from any thread.

#include "actors/executor.hpp"
#include "gilkeeper/interop/host.hpp"

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

namespace gk::detail {

struct HostNest {
  /// `executor`: whose interpreter waits; `nestable`: false when the call
  /// came from a Python thread other than the interpreter's, whose requests
  /// could not be served while it waits (see PyRuntime::ask).
  HostNest(const Executor* executor, bool nestable, std::string name);
  ~HostNest();
  HostNest(const HostNest&) = delete;
  HostNest& operator=(const HostNest&) = delete;

  const Executor* const executor;
  const bool nestable;
  const std::string name;
  /// The Python request's remaining deadline, and the token cancelled when
  /// it stops waiting (what the host function sees in its HostCall).
  Deadline deadline = Deadline::never();
  CancelToken token;
  /// Process isolation, on the host's side: the worker whose interpreter
  /// waits (its epoch) and the call's id there.
  std::uint64_t child_epoch = 0;
  std::uint64_t call_id = 0;

  /// The waiting side polls `fd` and calls `pump` when it is readable: an
  /// eventfd of this nest's by default; a worker process waits on its
  /// socket instead (see run_worker).
  int fd = -1;
  bool eventfd = false;  ///< `fd` is an eventfd: notified and drained here
  bool owns_fd = false;  ///< ... and closed here
  std::shared_ptr<const void> fd_keep;  ///< keeps a shared `fd` open
  std::function<void()> pump;
  /// Told when the waiting side gave up (its deadline, a cancel).
  std::function<void()> on_abandon;
  /// Told instead of the eventfd when the result arrives (the process
  /// executor's supervisor, which relays it to the worker).
  std::function<void()> on_finish;

  /// Queues a nested request for the waiting interpreter; false (and the
  /// job untouched) when the wait has ended: the request then queues as
  /// any other.
  bool push(Job& job);
  /// The host function's result; the first one counts.
  void finish(Expected<Value> result);
  /// Ends the wait: later pushes are refused. Returns the nested requests
  /// that were still queued.
  std::deque<Job> close();
  /// False once the wait ended (close).
  bool open();

  /// For the waiting side: the result when it arrived, else the next
  /// nested request (or nothing). Never blocks.
  struct Next {
    std::optional<Expected<Value>> result;
    std::optional<Job> job;
  };
  Next take();
  /// Reads what arrived: `pump`, or resets the eventfd.
  void drain();

private:
  void notify() noexcept;
  std::mutex m_;
  std::deque<Job> nested_;
  std::optional<Expected<Value>> result_;
  bool finished_ = false;  // a result arrived (later ones are dropped)
  bool open_ = true;
};

/// The context of the host call running on this thread, or null.
const RequestContext* current_host_context() noexcept;

/// A runtime's host functions and their threads.
class HostFunctions {
public:
  HostFunctions() = default;
  /// Waits for idle threads to end; a thread still inside a host function
  /// is left to finish on its own (it never blocks the runtime's end).
  ~HostFunctions();
  HostFunctions(const HostFunctions&) = delete;
  HostFunctions& operator=(const HostFunctions&) = delete;

  /// Registers (or replaces) `name`. Errors: bad_request for a name that is
  /// not a Python identifier or starts with '_', or an empty function.
  Error expose(const std::string& name, HostFunction fn);
  /// Removes `name`; false when it was not registered.
  bool remove(const std::string& name);
  std::shared_ptr<const HostFunction> find(const std::string& name) const;
  std::vector<std::string> names() const;
  /// The error of a call to `name`, which is not exposed (bad_request
  /// naming the exposed ones).
  Error not_exposed(const std::string& name) const;

  /// Starts host function `fn` for `nest` on a gk-host thread: it sees the
  /// nest's deadline and token, requests it makes on that thread nest, and
  /// its result (an exception is an `internal` error naming it) goes to
  /// `nest->finish`.
  void start(std::shared_ptr<HostNest> nest, std::shared_ptr<const HostFunction> fn, List args);

  /// A thread-isolation host call from the interpreter: finds `name` and
  /// starts it with a nest waited on through its eventfd. Errors:
  /// bad_request naming the exposed functions when there is no such one.
  /// `wake_fd`: the waiting thread's own eventfd, or -1 for one of the
  /// call's own.
  Expected<std::shared_ptr<HostNest>> call(const Executor* executor, const std::string& name, List args,
                                           Deadline deadline, bool nestable, int wake_fd = -1);

  /// gk-host threads now (idle or busy), for tests.
  std::size_t threads() const;

private:
  // The threads: shared with them, so that one still inside a host function
  // when the runtime ends finishes on its own.
  struct Pool {
    std::mutex mutex;
    std::condition_variable cv;
    std::condition_variable ended;
    std::deque<std::function<void()>> tasks;
    std::size_t idle = 0;
    std::size_t live = 0;
    bool stop = false;
  };
  static void serve(const std::shared_ptr<Pool>& pool);
  void run(std::function<void()> task);

  mutable std::shared_mutex fns_mutex_;
  std::map<std::string, std::shared_ptr<const HostFunction>> fns_;
  std::shared_ptr<Pool> pool_ = std::make_shared<Pool>();
};

} // namespace gk::detail
