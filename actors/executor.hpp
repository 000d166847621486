#pragma once

/// Executors: where the interpreter runs. The thread executor runs it on one
/// dedicated OS thread of the host process; each request is a `Job` with a
/// `ReplySlot` that guarantees exactly one reply.
///
/// Deadlines are enforced here at every stage:
/// - in the queue: a job whose deadline passed before it started never runs
///   (`deadline_exceeded`, phase `queued`);
/// - in flight: at the deadline the watchdog interrupts the running Python
///   code (a thread-directed real-time signal whose Python-level handler raises
///   `gilkeeper.DeadlineExceeded`); a reply produced after the deadline is a
///   `deadline_exceeded` (phase `soft`);
/// - stuck in native code: `grace` after the deadline the executor reports
///   itself wedged, answers the stuck request (for a batch: the calls before
///   it with their results, those after it as not run) and fails queued and
///   new requests fast until the call returns; in a worker process
///   (`exit_when_stuck`) the process ends itself instead.
/// The caller is told at its deadline by the runtime's DeadlineWatch,
/// independently of the executor. Only PyRuntime::submit reaches an
/// executor (SubmitKey).

#include "actors/detail/target_table.hpp"
#include "gilkeeper/config/config.hpp"
#include "gilkeeper/interop/context.hpp"
#include "gilkeeper/interop/request.hpp"

#include <deque>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <variant>

namespace gk {

/// Any request an executor runs.
using AnyRequest = std::variant<ImportRequest, CallRequest, EvalRequest, ExecRequest,
                                GetattrRequest, ReleaseRequest, BatchRequest>;
/// Any reply an executor produces.
using AnyReply = std::variant<Expected<Value>, BatchReply>;

class DeadlineWatch;
namespace detail {
struct HostNest;
class HostFunctions;
}

/// Where a job's replies are counted by target (detail::TargetTable): filled
/// by the front door (PyRuntime::submit) for a job with a caller. Small on
/// purpose: a Job above 256 bytes would take a std::deque node (an
/// allocation) of its own in an executor's queue.
struct TargetTally {
  /// A request that is not a batch: its target's counters.
  detail::TargetCounts* one = nullptr;
  /// A batch: its calls' counters.
  std::unique_ptr<detail::BatchTargets> batch;

  /// The table the counters belong to; null when the job is not counted.
  detail::TargetTable* table() const noexcept;
};

/// The arbiter of one request's reply: the executor and the caller's
/// deadline (the runtime's `DeadlineWatch`) race to complete it; exactly one
/// wins. Thread-safe.
class ReplySlot {
public:
  enum State : int { queued = 0, running = 1, done = 2 };
  virtual ~ReplySlot() = default;

  /// queued -> running; false when the request was already answered (the
  /// caller gave up), in which case it must not run.
  bool start() noexcept {
    int s = queued;
    return state_.compare_exchange_strong(s, running, std::memory_order_acq_rel);
  }
  /// The current state (queued, running or done).
  int state() const noexcept { return state_.load(std::memory_order_acquire); }
  /// Claims and delivers; drops the reply when already answered. Returns
  /// true when this reply was the one delivered.
  bool complete(AnyReply&& reply);
  /// Claims the slot without a reply: whoever waits has given up on it (a
  /// stopped pipeline), and a later reply is dropped.
  void abandon();
  /// True once the request was cancelled (PyRuntime::cancel): an executor
  /// about to start it, or running it, interrupts it with `cancelled`.
  bool cancel_requested() const noexcept { return cancel_requested_.load(std::memory_order_seq_cst); }

protected:
  /// Hands the reply over; called exactly once, by whoever won the claim.
  virtual void deliver(AnyReply&& reply) = 0;

private:
  friend class DeadlineWatch;
  friend class PyRuntime;
  /// Returns the state before (queued or running), or -1 when someone else
  /// already replied.
  int claim() noexcept {
    int s = state_.load(std::memory_order_acquire);
    while (s != done)
      if (state_.compare_exchange_weak(s, done, std::memory_order_acq_rel))
        return s;
    return -1;
  }

  std::atomic<int> state_{queued};
  std::atomic<bool> cancel_requested_{false};
  // The parent request's cancellation reaches this request through it.
  CancelRegistration cancel_registration_;
  // Set while the caller's deadline is watched (see DeadlineWatch).
  std::shared_ptr<DeadlineWatch> watch_;
  std::uint64_t watch_key_ = 0;
  Deadline::time_point watch_at_{};
};

/// A unit of work for an executor.
struct Job {
  AnyRequest request;
  /// Resolved: finite or never (never unset).
  Deadline deadline = Deadline::never();
  /// The message type ("call") and a label for messages ("call json:dumps").
  std::string type;
  std::string label;
  Deadline::time_point enqueued{};
  /// Null for fire-and-forget jobs (a Ref's release).
  std::shared_ptr<ReplySlot> slot;
  /// Where its replies are counted by target (set on admission).
  TargetTally targets;

  /// The deadline of the job once it started at `start`: its own, except
  /// for a batch whose calls time out from their own start (then the bound
  /// of every call running to its timeout one after another).
  Deadline run_deadline(Deadline::time_point start) const {
    auto* b = std::get_if<BatchRequest>(&request);
    if (!b || b->call_timeout.count() <= 0)
      return deadline;
    return Deadline::at(start + b->call_timeout * static_cast<std::int64_t>(std::max<std::size_t>(1, b->calls.size())));
  }
};

inline detail::TargetTable* TargetTally::table() const noexcept {
  return one ? one->table : batch ? batch->table : nullptr;
}

/// The fire-and-forget job a Ref's last copy sends to release its object.
inline Job release_job(std::uint64_t id, std::uint64_t epoch) {
  Job job;
  job.request = ReleaseRequest{id, epoch};
  job.type = "release";
  job.label = "release";
  return job;
}

/// A dump's lines for a queue (Executor::dump): how many, then each one
/// oldest first (at most 50) with its age and deadline.
std::string describe_queue(const std::deque<Job>& queue, Deadline::time_point now);

/// A duration as a dump writes it: "12 ms".
std::string dump_ms(std::chrono::nanoseconds d);

/// The target named by a request's label (`Error::where`): `m:f` of
/// "call m:f", `<T>.m` of "call <T>.m", the module of "import m"; empty for
/// eval, exec and batches.
std::string where_of(const std::string& label);

/// The error a caller gets when its deadline passes: phase `queued` when the
/// job had not started, `soft` when it was running.
Error deadline_error(int slot_state, const std::string& label);
/// The error a caller gets when its request is cancelled before its own
/// (interrupted) reply: it never ran, or it was still running.
Error cancelled_error(int slot_state, const std::string& label);

class PyRuntime;

/// The permission to queue a job: only the PyRuntime actor's submission path
/// can make one, so nothing else reaches an executor.
class SubmitKey {
  SubmitKey() = default;
  friend class PyRuntime;
};

/// Where requests run. Thread-safe: every member may be called from any thread.
class Executor {
public:
  virtual ~Executor() = default;
  /// Queues a job. Never blocks on Python; when the executor is stopped or
  /// wedged the job's slot is completed at once with `runtime_stopped` or
  /// `wedged`.
  virtual void submit(Job job, SubmitKey) = 0;
  /// Counters and timings; answers even while a call is stuck.
  virtual Stats stats() const = 0;
  /// What the interpreter(s) are doing now, as text (Runtime::dump): the
  /// running request with its Python stack, what is queued, and (process
  /// isolation) each worker process's state. Waits at most about `wait` for
  /// the stacks. Any thread; never stops a request.
  virtual std::string dump(std::chrono::milliseconds wait) = 0;
  /// Capability denials so far (cheap; `stats()` has it too).
  virtual std::uint64_t capability_denials() const = 0;
  /// From now on, whenever its queue is empty, the interpreter's own thread
  /// calls `fetch` (without the GIL) to wait for and submit more work, and
  /// so runs it without a hand-off; `fetch` returns false when no more will
  /// come. A worker process reads its socket this way. False when this
  /// executor cannot (the process executor).
  virtual bool pull_from(std::function<bool()> fetch) {
    (void)fetch;
    return false;
  }
  /// Queues a request made on behalf of host call `nest` (a host function
  /// calling back into this runtime) for the interpreter that waits for
  /// that call. False, with `job` untouched, when that call has ended (the
  /// job is then submitted as any other).
  virtual bool submit_nested(Job& job, detail::HostNest& nest, SubmitKey);

  /// Interrupts the request of `slot` with `cancelled` if it is running now
  /// (a request that starts later sees `cancel_requested()` itself). Never
  /// blocks on Python.
  virtual void cancel(const std::shared_ptr<ReplySlot>& slot) = 0;
  /// Stops: queued jobs get `runtime_stopped`, the running one is
  /// interrupted, Python is finalized within `grace` (see ShutdownReport).
  /// Idempotent: later calls return the first report.
  virtual ShutdownReport shutdown(std::chrono::nanoseconds grace) = 0;

  /// Replies by target and outcome, and slow calls: the front door points
  /// each job at its counters here (Job::targets), the executor's
  /// collector counts into them. Thread-safe; lives as long as the executor.
  detail::TargetTable& targets() noexcept { return targets_; }
  const detail::TargetTable& targets() const noexcept { return targets_; }

private:
  detail::TargetTable targets_;
};

/// Options of the thread executor beyond the config.
struct ThreadExecutorOptions {
  /// The epoch stamped on Refs (0: a fresh one).
  std::uint64_t epoch = 0;
  /// True in a worker process: Refs made here belong to the host, which
  /// releases them with `release` requests; dropping the local copy (after
  /// sending it) must not release the object.
  bool host_owned_refs = false;
  /// True in a worker process: a call still running `grace` after its own
  /// deadline (native code that ignores interrupts) ends the process with
  /// kStuckExitStatus instead of wedging it, so that a call stuck inside a
  /// batch is cut off at its own hard deadline, not at the batch's bound.
  bool exit_when_stuck = false;
  /// Answers an interrupted request's caller from the soft interrupt itself,
  /// with the Python type and the traceback of where the code was, before
  /// the exception unwinds (except/finally blocks, freeing what the code
  /// built). Off in a worker process: its reply must mean that its
  /// interpreter is free again (the host sends the next request at once).
  bool answer_at_interrupt = true;
  /// In a worker process: called once, from the watchdog thread, when the
  /// interrupt of a call at its deadline found it holding the GIL and has
  /// not reached Python code `kNativeProbe` later: it runs native code that
  /// does not check for signals, and will not reply in time. The host then
  /// stops the worker at once instead of waiting for a reply.
  std::function<void(const std::shared_ptr<ReplySlot>&)> on_stuck_in_native;
  /// The runtime's host functions (Runtime::expose); null: none.
  std::shared_ptr<detail::HostFunctions> hosts;
  /// In a worker process: starts a host call at the host (over the socket)
  /// and returns the nest to wait on, instead of `hosts`.
  std::function<Expected<std::shared_ptr<detail::HostNest>>(const std::string& name, List args, Deadline deadline)>
      start_host_call;
};

/// How long an interrupt that found its call holding the GIL may go
/// untaken before the call counts as stuck in native code (see
/// ThreadExecutorOptions::on_stuck_in_native). Python code takes one within
/// microseconds; a blocking call that released the GIL is never counted.
inline constexpr std::chrono::microseconds kNativeProbe{200};

/// The exit status of a worker process that ended itself because a call
/// was stuck past its deadline and grace period (see exit_when_stuck).
inline constexpr int kStuckExitStatus = 86;

/// Starts the thread executor: a dedicated thread initialises Python
/// (becoming Python's main thread) and serves jobs in order. Fails when the
/// interpreter cannot start (e.g. another one is alive in this process).
Expected<std::shared_ptr<Executor>> start_thread_executor(const Config& config,
                                                          ThreadExecutorOptions options = {});

/// Starts the process executor: `runtime.workers` child processes (plus a
/// warm spare when `runtime.spare`), each running the same request loop in
/// its own interpreter. Calls stuck past `deadline + grace` are killed with
/// their process group and the call fails with `deadline_exceeded` / `hard`;
/// crashed children fail their call with `worker_crashed` and are replaced;
/// every child is reaped. Fails when the worker program cannot be found or
/// the first worker cannot start.
Expected<std::shared_ptr<Executor>> start_process_executor(const Config& config,
                                                           std::shared_ptr<detail::HostFunctions> hosts = nullptr);

/// The program started as a worker: `$GILKEEPER_WORKER`, else the
/// `gilkeeper` executable next to the library or in `../bin`.
/// Empty when none is found.
std::string find_worker_executable();

} // namespace gk
