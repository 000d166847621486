// The PyRuntime front actor: event-based, never blocks; forwards requests to
// the executor and answers each exactly once, at its deadline at the latest.

#include "gilkeeper/actors/py_runtime.hpp"

#include <caf/all.hpp>

#include <unordered_map>

namespace gk {

namespace {

using stop_atom = caf::atom_constant<caf::atom("gkstop")>;

// Tells the front actor that the executor replied.
class ActorSlot final : public ReplySlot {
public:
  ActorSlot(caf::actor front, std::uint64_t id) : front_(std::move(front)), id_(id) {}
  void deliver(AnyReply&& reply) override {
    caf::anon_send(front_, reply_atom::value, id_, std::move(reply));
  }

private:
  caf::actor front_;
  std::uint64_t id_;
};

struct Pending {
  caf::response_promise promise;
  std::shared_ptr<ActorSlot> slot;
  std::string label;
  bool extended = false;  // gave a running request kInterruptedReplyWait
};

struct py_runtime_state {
  static inline const char* name = "gk.py_runtime";
  std::shared_ptr<Executor> executor;
  std::shared_ptr<const DeadlinePolicy> policy;
  std::uint64_t next_id = 0;
  std::unordered_map<std::uint64_t, Pending> pending;
};

using front_actor = caf::stateful_actor<py_runtime_state>;

std::string target_of(const ImportRequest& r) { return r.module; }
std::string target_of(const CallRequest& r) { return r.self ? std::string() : r.target; }
std::string target_of(const EvalRequest&) { return {}; }
std::string target_of(const ExecRequest&) { return {}; }
std::string target_of(const GetattrRequest& r) { return r.object ? std::string() : r.target; }
std::string target_of(const ReleaseRequest&) { return {}; }
std::string target_of(const BatchRequest&) { return {}; }

template <class Req>
std::string label_of(const Req& r) {
  std::string t = target_of(r);
  return t.empty() ? std::string(kind_name(r)) : std::string(kind_name(r)) + " " + t;
}

Deadline deadline_of(const ReleaseRequest&) { return Deadline::never(); }
void set_request_deadline(ReleaseRequest&, const Deadline&) {}
template <class Req>
void set_request_deadline(Req& r, const Deadline& d) { r.deadline = d; }
template <class Req>
Deadline deadline_of(const Req& r) { return r.deadline; }

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
  Job job;
  job.type = kind_name(req);
  job.label = label_of(req);
  job.deadline = st.policy->resolve(job.type, target_of(req), deadline_of(req));
  set_request_deadline(req, job.deadline);  // a worker process reads it from the request
  auto slot = std::make_shared<ActorSlot>(caf::actor_cast<caf::actor>(self), id);
  job.slot = slot;
  st.pending.emplace(id, Pending{rp, slot, job.label});
  if (job.deadline.is_finite())
    self->delayed_send(self, job.deadline.remaining(), timeout_atom::value, id);
  job.request = std::move(req);
  st.executor->submit(std::move(job));
  return rp;
}

caf::behavior front(front_actor* self, std::shared_ptr<Executor> executor,
                    std::shared_ptr<const DeadlinePolicy> policy) {
  self->state.executor = std::move(executor);
  self->state.policy = std::move(policy);
  return {
      [=](ImportRequest& r) { return forward(self, r); },
      [=](CallRequest& r) { return forward(self, r); },
      [=](EvalRequest& r) { return forward(self, r); },
      [=](ExecRequest& r) { return forward(self, r); },
      [=](GetattrRequest& r) { return forward(self, r); },
      [=](ReleaseRequest& r) { return forward(self, r); },
      [=](BatchRequest& r) { return forward(self, r); },
      [=](StatsRequest&) { return self->state.executor->stats(); },
      [=](ShutdownRequest& r) {
        // Shutting down waits for Python: do it off the scheduler's threads.
        auto ex = self->state.executor;
        auto helper = self->spawn<caf::detached>([ex](caf::blocking_actor* b) {
          b->receive([&](ShutdownRequest& req) { return ex->shutdown(req.grace); });
        });
        return self->delegate(helper, r);
      },
      [=](reply_atom, std::uint64_t id, AnyReply& reply) {
        auto i = self->state.pending.find(id);
        if (i == self->state.pending.end())
          return;
        answer(i->second.promise, std::move(reply));
        self->state.pending.erase(i);
      },
      [=](timeout_atom, std::uint64_t id) {
        auto i = self->state.pending.find(id);
        if (i == self->state.pending.end())
          return;
        if (!i->second.extended && i->second.slot->state() == ReplySlot::running) {
          // Give the interrupted call a moment to reply with its traceback.
          i->second.extended = true;
          self->delayed_send(self, kInterruptedReplyWait, timeout_atom::value, id);
          return;
        }
        int before = i->second.slot->claim();
        if (before < 0)
          return;  // the executor's reply is already on its way
        i->second.promise.deliver(to_caf_error(deadline_error(before, i->second.label)));
        self->state.pending.erase(i);
      },
      [=](stop_atom) {
        for (auto& [id, p] : self->state.pending)
          p.promise.deliver(to_caf_error(Error(ErrorCode::runtime_stopped, p.label + ": the runtime stopped")));
        self->state.pending.clear();
        self->quit();
      },
  };
}

} // namespace

py_runtime_actor spawn_py_runtime(caf::actor_system& sys, std::shared_ptr<Executor> executor,
                                  std::shared_ptr<const DeadlinePolicy> policy) {
  auto a = sys.spawn(front, std::move(executor), std::move(policy));
  return caf::actor_cast<py_runtime_actor>(a);
}

void stop_py_runtime(const py_runtime_actor& front) {
  caf::anon_send(caf::actor_cast<caf::actor>(front), stop_atom::value);
}

} // namespace gk
