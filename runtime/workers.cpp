#include "gilkeeper/runtime/workers.hpp"

#include "gilkeeper/actors/messages.hpp"
#include "gilkeeper/actors/py_runtime.hpp"
#include "gilkeeper/runtime/runtime.hpp"
#include "runtime/detail/runtime_impl.hpp"

#include <caf/actor_pool.hpp>
#include <caf/all.hpp>

namespace gk {

namespace {

// Follows a reply until it is a value or an error, then delivers it.
void settle(caf::event_based_actor* self, py_runtime_actor rt, WorkerReply reply, caf::response_promise rp) {
  if (!reply.pending()) {
    if (reply.error())
      rp.deliver(to_caf_error(reply.error()));
    else
      rp.deliver(reply.value());
    return;
  }
  auto next = reply.next();
  auto on_result = [self, rt, next, rp](Expected<Value> r) mutable {
    if (!next) {
      settle(self, rt, WorkerReply(std::move(r)), rp);
      return;
    }
    WorkerReply follow = Error(ErrorCode::internal, "the worker's continuation failed");
    try {
      follow = next(std::move(r));
    } catch (const std::exception& e) {
      follow = Error(ErrorCode::internal, std::string("the worker's continuation threw: ") + e.what());
    }
    settle(self, rt, std::move(follow), rp);
  };
  self->request(rt, caf::infinite, *reply.call())
      .then([on_result](Value& v) mutable { on_result(Expected<Value>(std::move(v))); },
            [on_result](caf::error& e) mutable { on_result(Expected<Value>(from_caf_error(e))); });
}

caf::behavior worker(caf::event_based_actor* self, py_runtime_actor rt, WorkerHandler handler) {
  return {[=](Value& input) {
    auto rp = self->make_response_promise();
    WorkerReply reply = Error(ErrorCode::internal, "the worker's handler failed");
    try {
      reply = handler(input);
    } catch (const std::exception& e) {
      reply = Error(ErrorCode::internal, std::string("the worker's handler threw: ") + e.what());
    }
    settle(self, rt, std::move(reply), rp);
    return rp;
  }};
}

} // namespace

worker_actor spawn_worker(Runtime& runtime, WorkerHandler handler) {
  auto a = runtime.system().spawn(worker, runtime_actor(runtime), std::move(handler));
  detail::RuntimeAccess::impl(runtime).track(a);
  return caf::actor_cast<worker_actor>(a);
}

worker_actor spawn_worker_pool(Runtime& runtime, std::size_t n, WorkerHandler handler) {
  auto& sys = runtime.system();
  auto rt = runtime_actor(runtime);
  auto* impl = &detail::RuntimeAccess::impl(runtime);
  auto factory = [&sys, rt, handler, impl] {
    auto a = sys.spawn(worker, rt, handler);
    impl->track(a);
    return a;
  };
  auto pool = caf::actor_pool::make(sys.dummy_execution_unit(), n, factory, caf::actor_pool::round_robin());
  impl->track(pool);
  return caf::actor_cast<worker_actor>(pool);
}

Expected<Value> ask(Runtime& runtime, const worker_actor& w, Value input, Deadline deadline) {
  caf::scoped_actor self{runtime.system()};
  Expected<Value> out = Error(ErrorCode::internal, "no reply");
  auto timeout = deadline.is_finite() ? caf::duration{deadline.remaining()} : caf::duration{caf::infinite};
  self->request(w, timeout, std::move(input))
      .receive([&](Value& v) { out = std::move(v); },
               [&](caf::error& e) {
                 if (e == caf::sec::request_timeout)
                   out = Error::deadline(DeadlinePhase::soft, "ask: the worker did not answer by its deadline");
                 else
                   out = from_caf_error(e);
               });
  return out;
}

} // namespace gk
