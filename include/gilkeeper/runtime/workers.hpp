#pragma once

/// Worker actors: host C++ code that calls Python through the runtime
/// without blocking a scheduler thread.
///
/// A worker handles one input at a time from its mailbox; its handler runs
/// C++ code and returns a value, an error, or a Python call still in flight
/// (`WorkerReply::python(call)`), optionally followed by more C++ code
/// (`.then(...)`). While the call is in flight the worker's thread is free:
/// the call is an asynchronous request to the runtime's PyRuntime actor.
///
/// ```
/// auto pool = gk::spawn_worker_pool(rt, 8, [](const gk::Value& text) {
///   auto words = count_words(text.as_string());            // C++
///   return gk::WorkerReply::python(gk::CallRequest{"nlp:score", {words}})
///       .then([](gk::Expected<gk::Value> score) -> gk::WorkerReply {
///         if (!score) return score.error();
///         return gk::Value::dict({{"score", *score}});       // C++ again
///       });
/// });
/// auto r = gk::ask(rt, pool, "some text");                // from a plain thread
/// ```
///
/// The request context travels: a handler may take the `RequestContext` of
/// the request it answers (its deadline and cancellation), and every Python
/// call it makes through `WorkerReply::python` is made on that request's
/// behalf: its deadline is at most the asker's, and it is cancelled when
/// the asker cancels. So when `gk::ask(..., Deadline::after(100ms))` gives
/// up, the Python call made for it is interrupted at the same moment.

#include "gilkeeper/interop/context.hpp"
#include "gilkeeper/interop/deadline.hpp"
#include "gilkeeper/interop/error.hpp"
#include "gilkeeper/interop/expected.hpp"
#include "gilkeeper/interop/request.hpp"
#include "gilkeeper/interop/value.hpp"
#include "gilkeeper/runtime/future.hpp"

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <chrono>
#include <functional>
#include <memory>

namespace gk {

class Runtime;

/// What a worker's handler returns. Thread-safe: a plain value.
class WorkerReply {
public:
  using Continuation = std::function<WorkerReply(Expected<Value>)>;

  WorkerReply(Value value) : value_(std::move(value)) {}
  WorkerReply(Error error) : error_(std::move(error)) {}
  WorkerReply(Expected<Value> result) {
    if (result)
      value_ = std::move(*result);
    else
      error_ = result.error();
  }

  /// A Python call whose result becomes the reply (or goes to `then`). It
  /// is made on behalf of the request the worker answers: its deadline is
  /// at most that request's, and it is cancelled with it.
  static WorkerReply python(CallRequest call) {
    WorkerReply r{Value()};
    r.call_ = std::make_shared<CallRequest>(std::move(call));
    return r;
  }
  /// What to do with the Python call's result (runs on the worker).
  WorkerReply then(Continuation next) && {
    next_ = std::move(next);
    return std::move(*this);
  }

  bool pending() const noexcept { return call_ != nullptr; }
  const std::shared_ptr<CallRequest>& call() const noexcept { return call_; }
  const Continuation& next() const noexcept { return next_; }
  const Value& value() const noexcept { return value_; }
  const Error& error() const noexcept { return error_; }

private:
  Value value_;
  Error error_;
  std::shared_ptr<CallRequest> call_;
  Continuation next_;
};

/// A worker's handler. Runs on a scheduler thread: it must not block (call
/// Python through `WorkerReply::python`, not through `Runtime::call`). With
/// `[debug.gil] detect_deadlock` (the default) a blocking call made in a
/// handler or in a `.then` continuation (`Runtime::call` and the other
/// synchronous calls, `Future::get` and its waits, `gk::ask`) answers
/// `deadlock` at once, naming the worker (`gk.worker#ID`, the actor's id);
/// asynchronous ones (`call_async`, `ask_async`) are allowed.
using WorkerHandler = std::function<WorkerReply(const Value& input)>;
/// A handler that also receives the context of the request it answers
/// (deadline and cancellation), e.g. to skip work already too late.
using ContextWorkerHandler = std::function<WorkerReply(const Value& input, const RequestContext& context)>;

/// The typed interface of a worker (or a pool): a Value in, a Value (or a
/// caf::error carrying a gk::Error) out. A CAF host sends `(input,
/// context)` to hand the worker its deadline and cancellation; a bare
/// `input` has no deadline of its own (its Python calls get the configured
/// ones).
using worker_actor = caf::typed_actor<caf::replies_to<Value>::with<Value>,
                                      caf::replies_to<Value, RequestContext>::with<Value>>;

/// Spawns one worker. Thread-safe. After the runtime's shutdown(): an
/// invalid handle (ask() on it answers `runtime_stopped`).
worker_actor spawn_worker(Runtime& runtime, WorkerHandler handler);
worker_actor spawn_worker(Runtime& runtime, ContextWorkerHandler handler);

/// Spawns `n` workers behind one handle; requests go round robin.
/// Thread-safe. After shutdown(): an invalid handle.
worker_actor spawn_worker_pool(Runtime& runtime, std::size_t n, WorkerHandler handler);
worker_actor spawn_worker_pool(Runtime& runtime, std::size_t n, ContextWorkerHandler handler);

/// Asks a worker from a plain thread and waits for its reply, at most until
/// `deadline` (then `deadline_exceeded`); the worker's Python calls for it
/// end by the same deadline. After shutdown(), or with an invalid handle:
/// `runtime_stopped` (resp. `bad_request`). Thread-safe. Blocks: from a
/// worker's handler or an actor on the runtime's own scheduler it answers
/// `deadlock` (`[debug.gil] detect_deadlock`; use `gk::request` there).
Expected<Value> ask(Runtime& runtime, const worker_actor& worker, Value input,
                    Deadline deadline = Deadline::after(std::chrono::seconds(30)));

/// `self->request(worker, ...)` from a CAF actor that hands the worker its
/// deadline (`timeout` from now) and, optionally, a cancel token: the
/// worker's Python calls for this request end by then, or when `cancel` is
/// cancelled. The requester stops waiting at the same time
/// (`sec::request_timeout`).
template <class Self, class Rep, class Period>
auto request(Self* self, const worker_actor& worker, std::chrono::duration<Rep, Period> timeout, Value input,
             CancelToken cancel = CancelToken::none()) {
  RequestContext context{Deadline::after(timeout), std::move(cancel)};
  return self->request(worker, timeout, std::move(input), std::move(context));
}

/// Asks a worker without waiting: the Future gets the reply, and its
/// cancel() cancels the request and the Python call made for it.
/// Thread-safe.
Future<Value> ask_async(Runtime& runtime, const worker_actor& worker, Value input,
                        Deadline deadline = Deadline::after(std::chrono::seconds(30)));

} // namespace gk

// A context travels within one process only (its token is shared state).
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gk::RequestContext)
