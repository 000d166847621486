#pragma once

// Internal: the PyRuntime actor's core, the one way into an interpreter.
//
// The PyRuntime actor is one mailbox and one thread of execution: its
// mailbox is the executor's queue, its thread the interpreter thread (or,
// in process isolation, the supervisor that hands each request to a worker
// process's interpreter). Every entry point (`Runtime::call` and the other
// synchronous calls, the typed CAF handle, worker actors, pipelines and so
// the CLI) sends its typed request through `PyRuntime::submit`, where the
// rules live once:
//   - the deadline is resolved (DeadlinePolicy) and stamped into the request
//     (a worker process reads it from there);
//   - the request gets its message type and its label for messages;
//   - the caller's side of the deadline is handed to the runtime's one
//     DeadlineWatch (no timer per request);
//   - the request is counted, by type, as it passes (`TypeStats::submitted`),
//     and a request with a caller is pointed at its target's counters in
//     the executor's TargetTable, where its reply is counted by outcome.
// Only this class holds the key (`SubmitKey`) that `Executor::submit` needs,
// so no other code can reach an executor.
//
// Thread-safety: every member may be called from any thread.

#include "actors/deadline_policy.hpp"
#include "actors/deadline_watch.hpp"
#include "actors/executor.hpp"
#include "gilkeeper/actors/py_runtime.hpp"

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>

#include <array>
#include <atomic>
#include <memory>
#include <optional>

namespace gk {

/// How one request is submitted.
struct SubmitOptions {
  /// A stage timeout (pipelines, jobs): below a deadline set on the request
  /// and above the per-target one in precedence.
  std::optional<Timeout> stage_timeout;
  /// How long the caller waits past the deadline for a running request's
  /// own reply (see DeadlineWatch).
  Patience patience = Patience::prompt;
  /// The request this one is made on behalf of: its deadline bounds this
  /// one's, and its cancellation cancels this one.
  std::optional<RequestContext> parent;
  /// The caller may cancel this request through `PyRuntime::cancel` (a
  /// request with a cancellable parent always may).
  bool cancellable = false;
};

class PyRuntime {
public:
  /// Whether callers' deadlines are watched here: on, except at the far end
  /// of a host's path (a worker process), whose host watches them.
  enum class Watch { on, off };
  /// Takes ownership of a started executor.
  PyRuntime(std::shared_ptr<Executor> executor, const Config& config, Watch watch = Watch::on);
  ~PyRuntime();
  PyRuntime(const PyRuntime&) = delete;
  PyRuntime& operator=(const PyRuntime&) = delete;

  /// The one submission path: resolves and stamps the deadline, labels the
  /// request, watches the caller's deadline and queues the request. The
  /// slot gets exactly one reply (at once when the runtime is stopped,
  /// wedged or degraded).
  /// Returns the request's resolved deadline.
  Deadline submit(AnyRequest request, std::shared_ptr<ReplySlot> slot, const SubmitOptions& options = {});
  /// Submits and waits for the one reply (at the latest at the deadline plus
  /// the patience). For plain threads: blocks the calling thread. On a
  /// thread marked as one that must not block (detail::BlockingScope: the
  /// interpreter's own, a worker actor's handler, the runtime's own
  /// scheduler) it answers `deadlock` at once and submits nothing.
  AnyReply ask(AnyRequest request, const SubmitOptions& options = {});
  /// Cancels the request of `slot` (submitted with `cancellable`, or with
  /// a cancellable parent): a queued request is answered `cancelled` now
  /// and never runs; a running one is interrupted (`gilkeeper.Cancelled`
  /// in Python) and answered with its own reply, or `cancelled` after the
  /// prompt patience. No-op when it was answered already. Thread-safe.
  void cancel(const std::shared_ptr<ReplySlot>& slot);

  /// The deadline a request would get.
  Deadline resolve(const std::string& type, const std::string& target, const Deadline& requested,
                   const std::optional<Timeout>& stage = std::nullopt) const {
    return policy_.resolve(type, target, requested, stage);
  }
  const DeadlinePolicy& policy() const noexcept { return policy_; }

  /// The executor's counters with the submissions counted here and the
  /// replies by target.
  Stats stats() const;
  /// See Executor::dump.
  std::string dump(std::chrono::milliseconds wait) const { return executor_->dump(wait); }
  /// Capability denials so far (cheap).
  std::uint64_t capability_denials() const { return executor_->capability_denials(); }
  /// Stops the executor (every request still inside gets its reply), then
  /// the deadline watch. Idempotent.
  ShutdownReport shutdown(std::chrono::nanoseconds grace);
  /// Requests whose caller-side deadline is being watched now.
  std::size_t watched() const { return watch_ ? watch_->watched() : 0; }

private:
  static void cancel(const std::shared_ptr<ReplySlot>& slot, DeadlineWatch* watch, Executor& executor);

  std::shared_ptr<Executor> executor_;
  DeadlinePolicy policy_;
  std::shared_ptr<DeadlineWatch> watch_;
  std::array<std::atomic<std::uint64_t>, std::variant_size_v<AnyRequest>> submitted_{};
};

/// A reply slot that hands the reply to an actor as the message
/// `(reply_atom, id, AnyReply)` (the CAF face, worker actors): the actor
/// stays event-based and never blocks on a request.
class ActorSlot final : public ReplySlot {
public:
  ActorSlot(caf::actor owner, std::uint64_t id) : owner_(std::move(owner)), id_(id) {}

protected:
  void deliver(AnyReply&& reply) override;

private:
  caf::actor owner_;
  std::uint64_t id_;
};

/// How a CAF face of a PyRuntime serves.
struct FrontOptions {
  /// Published to other nodes (gilkeeper serve): refuses what must not
  /// cross a node border (shutdown, Refs in either direction, release).
  bool remote = false;
};

/// What `node_info` answers for a runtime with this config (the live parts,
/// workers and queue, are filled in at each answer).
NodeInfo node_info_base(const Config& config);

/// Spawns the CAF face of a PyRuntime (the typed handle) on `sys`.
py_runtime_actor spawn_py_runtime(caf::actor_system& sys, std::shared_ptr<PyRuntime> core, NodeInfo info,
                                  FrontOptions options = {});

/// Tells a published handle that its node is stopping: from then on it
/// answers new requests and `node_info` with `runtime_stopped` (requests
/// already submitted get their replies). Thread-safe.
void drain_py_runtime(const py_runtime_actor& front);

/// Tells the handle to answer every pending request with `runtime_stopped`
/// and exit. Thread-safe.
void stop_py_runtime(const py_runtime_actor& front);

/// The target config keys a request's timeout by: "module:function" for a
/// call without `self`, the module of an import, "module:attr" of a getattr
/// without an object; empty otherwise.
std::string target_of(const AnyRequest& request);

} // namespace gk

// The executor's reply, inside one process only: never serialized.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gk::AnyReply)
