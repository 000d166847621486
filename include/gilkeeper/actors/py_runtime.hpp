#pragma once

/// The PyRuntime actor's typed interface, for hosts that are CAF programs.
///
/// This handle is the CAF face of the runtime's one front door: a request
/// sent here takes the same submission path as `Runtime::call` (deadline
/// resolution, labels, the caller-side deadline), and gets exactly one
/// reply: its result, or a `caf::error` carrying a `gk::Error` (decode it
/// with `gk::from_caf_error`). The reply `deadline_exceeded` reaches the
/// requester at its deadline even when the interpreter is stuck; the handle
/// never blocks and arms no timer of its own.
///
/// ```
/// auto rt_actor = gk::runtime_actor(runtime);
/// gk::request(self, rt_actor, 500ms, gk::CallRequest{"math:sqrt", {2.0}})
///   .then([](const gk::Value& v) { ... },
///         [](const caf::error& e) { auto err = gk::from_caf_error(e); ... });
/// ```
/// Give the timeout to `gk::request` (it becomes the request's deadline, so
/// Python is interrupted at it), or set `deadline` in the request and use
/// `caf::infinite` as CAF's own timeout. CAF 0.17 does not tell a receiver
/// the timeout of a plain `self->request(h, timeout, msg)`: such a timeout
/// only stops the requester from waiting, and the call runs on to its own
/// deadline.

#include "gilkeeper/actors/messages.hpp"

#include <caf/replies_to.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/typed_actor.hpp>

#include <chrono>

namespace gk {

/// The typed interface of the PyRuntime actor.
using py_runtime_actor = caf::typed_actor<
    caf::replies_to<ImportRequest>::with<Value>, caf::replies_to<CallRequest>::with<Value>,
    caf::replies_to<EvalRequest>::with<Value>, caf::replies_to<ExecRequest>::with<Value>,
    caf::replies_to<GetattrRequest>::with<Value>, caf::replies_to<ReleaseRequest>::with<Value>,
    caf::replies_to<BatchRequest>::with<BatchReply>, caf::replies_to<StatsRequest>::with<Stats>,
    caf::replies_to<ShutdownRequest>::with<ShutdownReport>, caf::replies_to<NodeInfoRequest>::with<NodeInfo>>;

/// `self->request(rt, ...)` whose `timeout` becomes the request's deadline
/// (unless the request carries an earlier one): at the timeout the running
/// Python code is interrupted and the reply is `deadline_exceeded`, with its
/// phase. `Req` is any request of the interface but `StatsRequest`,
/// `ShutdownRequest` and `ReleaseRequest`. Call from an actor (`self`:
/// event-based, blocking or scoped).
template <class Self, class Req, class Rep, class Period>
auto request(Self* self, const py_runtime_actor& rt, std::chrono::duration<Rep, Period> timeout, Req req) {
  req.deadline = req.deadline.min(Deadline::after(timeout));
  return self->request(rt, caf::infinite, std::move(req));
}
/// The same for a scoped actor (`caf::scoped_actor`).
template <class Req, class Rep, class Period>
auto request(caf::scoped_actor& self, const py_runtime_actor& rt, std::chrono::duration<Rep, Period> timeout,
             Req req) {
  req.deadline = req.deadline.min(Deadline::after(timeout));
  return self->request(rt, caf::infinite, std::move(req));
}

class Runtime;
/// The typed handle of a Runtime's PyRuntime actor. Thread-safe.
py_runtime_actor runtime_actor(const Runtime& runtime);

} // namespace gk
