// The PyRuntime actor's CAF face: event-based, never blocks, arms no timer;
// every request takes the runtime's one submission path (PyRuntime::submit),
// and the executor's reply, or the deadline watch's, comes back here once.

#include "gilkeeper/actors/py_runtime.hpp"
#include "actors/py_runtime_core.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <unistd.h>
#include <unordered_map>

namespace gk {

namespace {

using stop_atom = caf::atom_constant<caf::atom("gkstop")>;
using draining_atom = caf::atom_constant<caf::atom("gkdrain")>;

struct py_runtime_state {
  static inline const char* name = "gk.py_runtime";
  std::shared_ptr<PyRuntime> core;
  NodeInfo info;
  FrontOptions options;
  // A published face whose node is stopping: new requests and heartbeats
  // are answered runtime_stopped, so clients take the node out of rotation.
  bool draining = false;
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

bool holds_ref(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::ref: return true;
    case Value::Kind::list:
      for (auto& x : v.as_list())
        if (holds_ref(x))
          return true;
      return false;
    case Value::Kind::dict:
      for (auto& [k, x] : v.as_dict())
        if (holds_ref(x))
          return true;
      return false;
    default: return false;
  }
}

// Why a request from another node is refused, or "" when it is served.
// Refs name objects in one interpreter's table: across a node border they
// would be forgeable ids that nothing releases.
std::string remote_refusal(const CallRequest& r) {
  if (r.want_ref)
    return "a Ref cannot travel to another node: ask for the value (want_ref is refused)";
  if (r.self || std::any_of(r.args.begin(), r.args.end(), holds_ref)
      || std::any_of(r.kwargs.begin(), r.kwargs.end(), [](auto& kv) { return holds_ref(kv.second); }))
    return "a Ref cannot travel to another node: pass values";
  return {};
}
std::string remote_refusal(const EvalRequest& r) {
  return r.want_ref ? "a Ref cannot travel to another node: ask for the value (want_ref is refused)" : "";
}
std::string remote_refusal(const GetattrRequest& r) {
  if (r.want_ref)
    return "a Ref cannot travel to another node: ask for the value (want_ref is refused)";
  return !r.object ? "" : "a Ref cannot travel to another node: name the attribute by module:path";
}
std::string remote_refusal(const ReleaseRequest&) {
  return "a Ref cannot travel to another node: there is nothing to release";
}
std::string remote_refusal(const BatchRequest& r) {
  for (auto& c : r.calls)
    if (auto why = remote_refusal(c); !why.empty())
      return why;
  return {};
}
template <class Req>
std::string remote_refusal(const Req&) {
  return {};
}

template <class Req>
caf::result<typename std::conditional<std::is_same_v<Req, BatchRequest>, BatchReply, Value>::type>
serve(front_actor* self, Req& req) {
  if (self->state.draining) {
    Error e(ErrorCode::runtime_stopped, "the node is stopping");
    e.where = std::string(kind_name(req)) + " from a remote client";
    return to_caf_error(e);
  }
  if (self->state.options.remote) {
    if (auto why = remote_refusal(req); !why.empty()) {
      Error e(ErrorCode::bad_request, why);
      e.where = std::string(kind_name(req)) + " from a remote client";
      return to_caf_error(e);
    }
  }
  return forward(self, req);
}

caf::behavior front(front_actor* self, std::shared_ptr<PyRuntime> core, NodeInfo info, FrontOptions options) {
  self->state.core = std::move(core);
  self->state.info = std::move(info);
  self->state.options = options;
  return {
      [=](ImportRequest& r) { return serve(self, r); },
      [=](CallRequest& r) { return serve(self, r); },
      [=](EvalRequest& r) { return serve(self, r); },
      [=](ExecRequest& r) { return serve(self, r); },
      [=](GetattrRequest& r) { return serve(self, r); },
      [=](ReleaseRequest& r) { return serve(self, r); },
      [=](BatchRequest& r) { return serve(self, r); },
      [=](StatsRequest&) { return self->state.core->stats(); },
      [=](NodeInfoRequest&) -> caf::result<NodeInfo> {
        if (self->state.draining)
          return to_caf_error(Error(ErrorCode::runtime_stopped, "the node is stopping"));
        NodeInfo info = self->state.info;
        auto stats = self->state.core->stats();
        info.workers = stats.workers;
        info.queued = stats.queued;
        info.python_version = stats.python_version;
        return info;
      },
      [=](ShutdownRequest& r) {
        auto rp = self->make_response_promise<ShutdownReport>();
        if (self->state.options.remote) {
          Error e(ErrorCode::bad_request, "a remote client cannot shut a node down: stop its gilkeeper serve");
          e.where = "shutdown from a remote client";
          rp.deliver(to_caf_error(e));
          return rp;
        }
        // Shutting down waits for Python: do it off the scheduler's threads.
        auto core = self->state.core;
        auto helper = self->spawn<caf::detached>([core](caf::blocking_actor* b) {
          b->receive([&](ShutdownRequest& req) { return core->shutdown(req.grace); });
        });
        self->request(helper, caf::infinite, r)
            .then([rp](ShutdownReport& report) mutable { rp.deliver(std::move(report)); },
                  [rp](caf::error& e) mutable { rp.deliver(std::move(e)); });
        return rp;
      },
      [=](reply_atom, std::uint64_t id, AnyReply& reply) {
        auto i = self->state.pending.find(id);
        if (i == self->state.pending.end())
          return;
        answer(i->second, std::move(reply));
        self->state.pending.erase(i);
      },
      [=](draining_atom) { self->state.draining = true; },
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

NodeInfo node_info_base(const Config& config) {
  NodeInfo info;
  info.version = GK_VERSION;
  info.isolation = config.runtime.isolation == Isolation::process ? "process" : "thread";
  info.pid = ::getpid();
  auto& caps = config.capabilities;
  if (caps.configured) {
    auto join = [](const std::vector<std::string>& xs) {
      std::string out;
      for (auto& x : xs)
        out += (out.empty() ? "" : ", ") + x;
      return out;
    };
    if (!caps.profile.empty())
      info.capabilities.push_back("profile: " + caps.profile);
    if (!caps.allow_modules.empty())
      info.capabilities.push_back("allow_modules: " + join(caps.allow_modules));
    if (!caps.deny_modules.empty())
      info.capabilities.push_back("deny_modules: " + join(caps.deny_modules));
    info.capabilities.push_back(std::string("native_extensions: ")
                                + (caps.native_extensions == NativePolicy::allow  ? "allow"
                                   : caps.native_extensions == NativePolicy::deny ? "deny"
                                                                                  : "allowlist"));
    info.capabilities.push_back(std::string("fork: ") + (caps.fork ? "allow" : "deny"));
    info.capabilities.push_back(std::string("subprocess: ") + (caps.subprocess ? "allow" : "deny"));
    info.capabilities.push_back(std::string("network: ")
                                + (caps.network == NetworkPolicy::allow      ? "allow"
                                   : caps.network == NetworkPolicy::loopback ? "loopback"
                                                                             : "deny"));
    if (caps.write_paths_set)
      info.capabilities.push_back("write_paths: " + join(caps.write_paths));
    if (!caps.allow_host.empty())
      info.capabilities.push_back("allow_host: " + join(caps.allow_host));
    if (!caps.deny_host.empty())
      info.capabilities.push_back("deny_host: " + join(caps.deny_host));
  }
  return info;
}

py_runtime_actor spawn_py_runtime(caf::actor_system& sys, std::shared_ptr<PyRuntime> core, NodeInfo info,
                                  FrontOptions options) {
  return caf::actor_cast<py_runtime_actor>(sys.spawn(front, std::move(core), std::move(info), options));
}

void drain_py_runtime(const py_runtime_actor& front) {
  caf::anon_send(caf::actor_cast<caf::actor>(front), draining_atom::value);
}

void stop_py_runtime(const py_runtime_actor& front) {
  caf::anon_send(caf::actor_cast<caf::actor>(front), stop_atom::value);
}

} // namespace gk
