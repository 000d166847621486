#pragma once

/// The PyRuntime actor: the typed interface hosts that are CAF programs use.
///
/// Every request gets exactly one reply: its result, or a `caf::error`
/// carrying a `gk::Error` (decode it with `gk::from_caf_error`). An unset
/// deadline is resolved from config (see DeadlinePolicy). The reply
/// `deadline_exceeded` reaches the requester at its deadline even when the
/// interpreter is stuck: the actor arms its own timer for each request and
/// never blocks.
///
/// ```
/// auto rt_actor = gk::runtime_actor(runtime);
/// self->request(rt_actor, caf::infinite, gk::CallRequest{"math:sqrt", {2.0}})
///   .then([](const gk::Value& v) { ... },
///         [](const caf::error& e) { auto err = gk::from_caf_error(e); ... });
/// ```
/// Use `caf::infinite` (or a bound above the deadline) as CAF's own request
/// timeout: the deadline is enforced by the runtime and reported as a
/// gilkeeper error with its phase.

#include "gilkeeper/actors/deadline_policy.hpp"
#include "gilkeeper/actors/executor.hpp"
#include "gilkeeper/actors/messages.hpp"

#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <memory>

namespace gk {

/// The typed interface of the PyRuntime actor.
using py_runtime_actor = caf::typed_actor<
    caf::replies_to<ImportRequest>::with<Value>, caf::replies_to<CallRequest>::with<Value>,
    caf::replies_to<EvalRequest>::with<Value>, caf::replies_to<ExecRequest>::with<Value>,
    caf::replies_to<GetattrRequest>::with<Value>, caf::replies_to<ReleaseRequest>::with<Value>,
    caf::replies_to<BatchRequest>::with<BatchReply>, caf::replies_to<StatsRequest>::with<Stats>,
    caf::replies_to<ShutdownRequest>::with<ShutdownReport>>;

/// Spawns the PyRuntime front actor over an executor. Thread-safe.
py_runtime_actor spawn_py_runtime(caf::actor_system& sys, std::shared_ptr<Executor> executor,
                                  std::shared_ptr<const DeadlinePolicy> policy);

/// Tells the front to answer every pending request with `runtime_stopped`
/// and exit. Thread-safe.
void stop_py_runtime(const py_runtime_actor& front);

class Runtime;
/// The typed handle of a Runtime's PyRuntime actor. Thread-safe.
py_runtime_actor runtime_actor(const Runtime& runtime);

} // namespace gk

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gk::AnyReply)
