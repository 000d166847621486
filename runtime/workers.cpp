#include "gilkeeper/runtime/workers.hpp"

#include "gilkeeper/actors/messages.hpp"
#include "gilkeeper/actors/py_runtime.hpp"
#include "gilkeeper/runtime/runtime.hpp"
#include "runtime/detail/future_state.hpp"
#include "runtime/detail/runtime_impl.hpp"

#include "actors/detail/blocking_context.hpp"

#include <caf/actor_pool.hpp>
#include <caf/all.hpp>

#include <unordered_map>

namespace gk {

namespace {

struct worker_state {
  static inline const char* name = "gk.worker";
  std::shared_ptr<PyRuntime> core;
  ContextWorkerHandler handler;
  // What a blocking call from the handler is told (`[debug.gil]
  // detect_deadlock`); empty when detection is off.
  std::string blocking_context;
  std::uint64_t next_id = 0;
  // Python calls in flight, by id: what to do with each one's result.
  std::unordered_map<std::uint64_t, std::function<void(Expected<Value>)>> pending;
};

using worker_self = caf::stateful_actor<worker_state>;

// Marks the thread while the worker's own code runs (its handler, its
// continuations): a blocking call there answers `deadlock` (see
// actors/detail/blocking_context.hpp).
detail::BlockingScope handler_scope(worker_self* self) {
  auto& context = self->state.blocking_context;
  return detail::BlockingScope(context.empty() ? nullptr : context.c_str());
}

// Follows a reply until it is a value or an error, then delivers it. Each
// Python call is made on behalf of the request (`context`).
void settle(worker_self* self, WorkerReply reply, const RequestContext& context, caf::response_promise rp) {
  if (!reply.pending()) {
    if (reply.error())
      rp.deliver(to_caf_error(reply.error()));
    else
      rp.deliver(reply.value());
    return;
  }
  auto next = reply.next();
  auto on_result = [self, next, context, rp](Expected<Value> r) mutable {
    if (!next) {
      settle(self, WorkerReply(std::move(r)), context, rp);
      return;
    }
    WorkerReply follow = Error(ErrorCode::internal, "the worker's continuation failed");
    try {
      auto in_handler = handler_scope(self);
      follow = next(std::move(r));
    } catch (const std::exception& e) {
      follow = Error(ErrorCode::internal, std::string("the worker's continuation threw: ") + e.what());
    }
    settle(self, std::move(follow), context, rp);
  };
  auto id = ++self->state.next_id;
  self->state.pending.emplace(id, std::move(on_result));
  SubmitOptions o;
  o.parent = context;
  self->state.core->submit(*reply.call(), std::make_shared<ActorSlot>(caf::actor_cast<caf::actor>(self), id), o);
}

caf::response_promise handle(worker_self* self, const Value& input, const RequestContext& context) {
  auto rp = self->make_response_promise();
  WorkerReply reply = Error(ErrorCode::internal, "the worker's handler failed");
  try {
    auto in_handler = handler_scope(self);
    reply = self->state.handler(input, context);
  } catch (const std::exception& e) {
    reply = Error(ErrorCode::internal, std::string("the worker's handler threw: ") + e.what());
  }
  settle(self, std::move(reply), context, rp);
  return rp;
}

caf::behavior worker(worker_self* self, std::shared_ptr<PyRuntime> core, ContextWorkerHandler handler,
                     bool detect_deadlock) {
  self->state.core = std::move(core);
  self->state.handler = std::move(handler);
  if (detect_deadlock)
    self->state.blocking_context = "from the handler of worker actor \"" + std::string(worker_state::name) + "#"
                                   + std::to_string(self->id()) + "\": a handler must not block; use WorkerReply::python";
  return {
      [=](Value& input) { return handle(self, input, RequestContext{}); },
      [=](Value& input, RequestContext& context) { return handle(self, input, context); },
      [=](reply_atom, std::uint64_t id, AnyReply& reply) {
        auto i = self->state.pending.find(id);
        if (i == self->state.pending.end())
          return;
        auto on_result = std::move(i->second);
        self->state.pending.erase(i);
        on_result(std::get<Expected<Value>>(std::move(reply)));
      },
  };
}

ContextWorkerHandler with_context(WorkerHandler handler) {
  return [handler = std::move(handler)](const Value& input, const RequestContext&) { return handler(input); };
}

caf::duration timeout_of(const Deadline& deadline) {
  return deadline.is_finite() ? caf::duration{deadline.remaining()} : caf::duration{caf::infinite};
}

Error ask_refused(Runtime& runtime, const worker_actor& w) {
  if (runtime.stopped())
    return Error(ErrorCode::runtime_stopped, "ask: the runtime is stopped");
  if (!w)
    return Error(ErrorCode::bad_request, "ask: the worker handle is invalid");
  return Error();
}

Error ask_timed_out() {
  return Error::deadline(DeadlinePhase::soft, "ask: the worker did not answer by its deadline");
}

} // namespace

worker_actor spawn_worker(Runtime& runtime, ContextWorkerHandler handler) {
  auto& impl = detail::RuntimeAccess::impl(runtime);
  if (runtime.stopped())
    return {};
  auto a = runtime.system().spawn(worker, impl.core, std::move(handler), impl.config.debug.gil.detect_deadlock);
  impl.track(a);
  return caf::actor_cast<worker_actor>(a);
}

worker_actor spawn_worker(Runtime& runtime, WorkerHandler handler) {
  return spawn_worker(runtime, with_context(std::move(handler)));
}

worker_actor spawn_worker_pool(Runtime& runtime, std::size_t n, ContextWorkerHandler handler) {
  if (runtime.stopped())
    return {};
  auto& sys = runtime.system();
  auto* impl = &detail::RuntimeAccess::impl(runtime);
  auto core = impl->core;
  auto factory = [&sys, core, handler, impl, detect = impl->config.debug.gil.detect_deadlock] {
    auto a = sys.spawn(worker, core, handler, detect);
    impl->track(a);
    return a;
  };
  auto pool = caf::actor_pool::make(sys.dummy_execution_unit(), n, factory, caf::actor_pool::round_robin());
  impl->track_pool(pool);
  return caf::actor_cast<worker_actor>(pool);
}

worker_actor spawn_worker_pool(Runtime& runtime, std::size_t n, WorkerHandler handler) {
  return spawn_worker_pool(runtime, n, with_context(std::move(handler)));
}

Expected<Value> ask(Runtime& runtime, const worker_actor& w, Value input, Deadline deadline) {
  if (Error e = ask_refused(runtime, w))
    return e;
  // It would hold this thread until the worker answers (see
  // actors/detail/blocking_context.hpp).
  if (const char* context = detail::blocking_context())
    return detail::deadlock_error("ask", context);
  caf::scoped_actor self{runtime.system()};
  Expected<Value> out = Error(ErrorCode::internal, "no reply");
  self->request(w, timeout_of(deadline), std::move(input), RequestContext{deadline, CancelToken::none()})
      .receive([&](Value& v) { out = std::move(v); },
               [&](caf::error& e) { out = e == caf::sec::request_timeout ? ask_timed_out() : from_caf_error(e); });
  return out;
}

Future<Value> ask_async(Runtime& runtime, const worker_actor& w, Value input, Deadline deadline) {
  if (Error e = ask_refused(runtime, w))
    return Future<Value>(detail::FutureState::answered(Expected<Value>(std::move(e))));
  auto& impl = detail::RuntimeAccess::impl(runtime);
  auto state = std::make_shared<detail::FutureState>(std::weak_ptr<PyRuntime>(), impl.callbacks);
  state->deadline = deadline;
  state->token = CancelToken();
  RequestContext context{deadline, state->token};
  // A one-shot actor carries the request: no thread waits for it.
  runtime.system().spawn([w, input = std::move(input), context, state](caf::event_based_actor* self) mutable {
    self->request(w, timeout_of(context.deadline), std::move(input), context)
        .then([state](Value& v) { state->complete(Expected<Value>(std::move(v))); },
              [state](caf::error& e) {
                state->complete(Expected<Value>(e == caf::sec::request_timeout ? ask_timed_out() : from_caf_error(e)));
              });
  });
  return Future<Value>(std::move(state));
}

} // namespace gk
