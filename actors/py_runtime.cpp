// The PyRuntime actor's CAF face: event-based, never blocks, arms no timer;
// every request takes the runtime's one submission path (PyRuntime::submit),
// and the executor's reply, or the deadline watch's, comes back here once.

#include "gilkeeper/actors/py_runtime.hpp"
#include "actors/py_runtime_core.hpp"

#include <caf/all.hpp>

#include <unordered_map>

namespace gk {

namespace {

using stop_atom = caf::atom_constant<caf::atom("gkstop")>;

struct py_runtime_state {
  static inline const char* name = "gk.py_runtime";
  std::shared_ptr<PyRuntime> core;
  std::uint64_t next_id = 0;
  std::unordered_map<std::uint64_t, caf::response_promise> pending;
};

using front_actor = caf::stateful_actor<py_runtime_state>;

void answer(caf::response_promise& rp, AnyReply&& reply) {
  if (auto* v = std::get_if<Expected<Value>>(&reply)) {
    if (v->has_value())
      rp.deliver(std::move(**v));
    else
      rp.deliver(to_caf_error(v->error()));
  } else {
    rp.deliver(std::get<BatchReply>(std::move(reply)));
  }
}

template <class Req>
caf::response_promise forward(front_actor* self, Req& req) {
  auto& st = self->state;
  auto rp = self->make_response_promise();
  auto id = ++st.next_id;
  st.pending.emplace(id, rp);
  st.core->submit(AnyRequest(std::move(req)), std::make_shared<ActorSlot>(caf::actor_cast<caf::actor>(self), id));
  return rp;
}

caf::behavior front(front_actor* self, std::shared_ptr<PyRuntime> core) {
  self->state.core = std::move(core);
  return {
      [=](ImportRequest& r) { return forward(self, r); },
      [=](CallRequest& r) { return forward(self, r); },
      [=](EvalRequest& r) { return forward(self, r); },
      [=](ExecRequest& r) { return forward(self, r); },
      [=](GetattrRequest& r) { return forward(self, r); },
      [=](ReleaseRequest& r) { return forward(self, r); },
      [=](BatchRequest& r) { return forward(self, r); },
      [=](StatsRequest&) { return self->state.core->stats(); },
      [=](ShutdownRequest& r) {
        // Shutting down waits for Python: do it off the scheduler's threads.
        auto core = self->state.core;
        auto helper = self->spawn<caf::detached>([core](caf::blocking_actor* b) {
          b->receive([&](ShutdownRequest& req) { return core->shutdown(req.grace); });
        });
        return self->delegate(helper, r);
      },
      [=](reply_atom, std::uint64_t id, AnyReply& reply) {
        auto i = self->state.pending.find(id);
        if (i == self->state.pending.end())
          return;
        answer(i->second, std::move(reply));
        self->state.pending.erase(i);
      },
      [=](stop_atom) {
        for (auto& [id, rp] : self->state.pending)
          rp.deliver(to_caf_error(Error(ErrorCode::runtime_stopped, "the runtime stopped")));
        self->state.pending.clear();
        self->quit();
      },
  };
}

} // namespace

void ActorSlot::deliver(AnyReply&& reply) {
  caf::anon_send(owner_, reply_atom::value, id_, std::move(reply));
}

py_runtime_actor spawn_py_runtime(caf::actor_system& sys, std::shared_ptr<PyRuntime> core) {
  return caf::actor_cast<py_runtime_actor>(sys.spawn(front, std::move(core)));
}

void stop_py_runtime(const py_runtime_actor& front) {
  caf::anon_send(caf::actor_cast<caf::actor>(front), stop_atom::value);
}

} // namespace gk
