// A client's handle to a remote runtime. One event-based actor (the mux)
// sends every request to the node's typed handle and watches it (a monitor
// for disconnects, a heartbeat for a node that stops answering); the
// pending table here says which requests are still owed a reply, so a
// request lost with its node is answered `node_lost` exactly once and a
// late reply is dropped. A thread reconnects with back-off.

#include "gilkeeper/net/remote.hpp"

#include "net/detail/caf_setup.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/all.hpp>

#include <algorithm>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <variant>

namespace gk {

namespace {

using send_atom = caf::atom_constant<caf::atom("gksend")>;
using attach_atom = caf::atom_constant<caf::atom("gkattach")>;
using tick_atom = caf::atom_constant<caf::atom("gktick")>;
using close_atom = caf::atom_constant<caf::atom("gkclose")>;

using Outgoing = std::variant<ImportRequest, CallRequest, EvalRequest, ExecRequest, GetattrRequest, BatchRequest,
                              StatsRequest>;
using Incoming = std::variant<Value, BatchReply, Stats>;
using Done = std::function<void(Expected<Incoming>&&)>;

} // namespace

// The state the mux actor and the handle share (the actor holds it; it
// owns no actor, so there is no cycle).
struct RemoteCore {
  std::string endpoint;
  ConnectOptions options;
  mutable std::mutex m;
  std::condition_variable cv;  // the reconnect thread's
  bool up = false;
  bool closing = false;
  std::uint64_t generation = 0;  // one per connection
  py_runtime_actor remote;
  NodeInfo info;
  std::string last_loss;
  std::uint64_t losses = 0, reconnects = 0;
  struct Pending {
    Outgoing request;
    Done done;
    bool sent = false;
  };
  std::unordered_map<std::uint64_t, Pending> pending;
  std::uint64_t next_id = 0;
  caf::actor mux;

  Error lost_error(const std::string& why) const {
    Error e(ErrorCode::node_lost, "node " + endpoint + " was lost: " + why);
    e.where = endpoint;
    return e;
  }

  // Queues a request; its reply (or node_lost) goes to `done` once.
  std::uint64_t send(Outgoing request, Done done) {
    std::unique_lock<std::mutex> lk(m);
    if (!up || closing) {
      auto e = closing ? Error(ErrorCode::runtime_stopped, "the connection to node " + endpoint + " is closed")
                       : lost_error(last_loss.empty() ? "not connected" : last_loss);
      lk.unlock();
      done(Expected<Incoming>(e));
      return 0;
    }
    auto id = ++next_id;
    pending.emplace(id, Pending{std::move(request), std::move(done)});
    auto target = mux;
    lk.unlock();
    caf::anon_send(target, send_atom::value, id);
    return id;
  }

  // The request for the mux to send, or nothing when it was answered.
  std::optional<Outgoing> take_for_sending(std::uint64_t id) {
    std::lock_guard<std::mutex> g(m);
    auto i = pending.find(id);
    if (i == pending.end())
      return std::nullopt;
    i->second.sent = true;
    return std::move(i->second.request);
  }

  void complete(std::uint64_t id, Expected<Incoming>&& result) {
    Done done;
    {
      std::lock_guard<std::mutex> g(m);
      auto i = pending.find(id);
      if (i == pending.end())
        return;  // answered node_lost already: the late reply is dropped
      done = std::move(i->second.done);
      pending.erase(i);
    }
    done(std::move(result));
  }

  // The connection of `gen` is gone: everything pending fails node_lost.
  void lost(std::uint64_t gen, const std::string& why) {
    std::unordered_map<std::uint64_t, Pending> failed;
    {
      std::lock_guard<std::mutex> g(m);
      if (gen != generation || !up)
        return;
      up = false;
      remote = nullptr;
      last_loss = why;
      ++losses;
      failed.swap(pending);
    }
    cv.notify_all();
    auto e = lost_error(why);
    for (auto& [id, p] : failed)
      p.done(Expected<Incoming>(e));
  }

  void alive(std::uint64_t gen, NodeInfo&& i) {
    std::lock_guard<std::mutex> g(m);
    if (gen == generation)
      info = std::move(i);
  }
};

namespace {

struct mux_state {
  static inline const char* name = "gk.remote_mux";
  std::shared_ptr<RemoteCore> core;
  py_runtime_actor remote;
  std::uint64_t generation = 0;
  bool ticking = false;
};

bool network_failure(const caf::error& e) {
  return e.category() == caf::atom("system");
}


caf::behavior mux(caf::stateful_actor<mux_state>* self, std::shared_ptr<RemoteCore> core) {
  self->state.core = std::move(core);
  self->set_down_handler([self](caf::down_msg& msg) {
    auto& st = self->state;
    if (st.remote && msg.source == st.remote.address()) {
      st.core->lost(st.generation, "disconnected (" + self->system().render(msg.reason) + ")");
      st.remote = nullptr;
    }
  });
  return {
      [self](attach_atom, std::uint64_t gen, py_runtime_actor& remote) {
        auto& st = self->state;
        st.remote = remote;
        st.generation = gen;
        self->monitor(remote);
        if (!st.ticking) {
          st.ticking = true;
          self->send(self, tick_atom::value);
        }
      },
      [self](send_atom, std::uint64_t id) {
        auto& st = self->state;
        auto core = st.core;
        auto request = core->take_for_sending(id);
        if (!request)
          return;
        if (!st.remote) {
          core->complete(id, Expected<Incoming>(core->lost_error("disconnected")));
          return;
        }
        auto gen = st.generation;
        auto on_error = [self, core, id, gen](caf::error& e) {
          if (network_failure(e)) {
            core->lost(gen, self->system().render(e));
            core->complete(id, Expected<Incoming>(core->lost_error(self->system().render(e))));
            return;
          }
          auto reply = Expected<Incoming>(from_caf_error(e));
          bool stopping = reply.error().code == ErrorCode::runtime_stopped;
          core->complete(id, std::move(reply));
          if (stopping)
            core->lost(gen, "the node is stopping");
        };
        std::visit(
            [&](auto& req) {
              using Req = std::decay_t<decltype(req)>;
              if constexpr (std::is_same_v<Req, BatchRequest>) {
                self->request(st.remote, caf::infinite, std::move(req))
                    .then(
                        [core, id, gen](BatchReply& r) {
                          // Calls not run because the node is stopping:
                          // the batch is answered, then the node is out of
                          // rotation.
                          bool stopping = std::any_of(r.results.begin(), r.results.end(), [](auto& x) {
                            return !x && x.error().code == ErrorCode::runtime_stopped;
                          });
                          core->complete(id, Expected<Incoming>(Incoming(std::move(r))));
                          if (stopping)
                            core->lost(gen, "the node is stopping");
                        },
                        on_error);
              } else if constexpr (std::is_same_v<Req, StatsRequest>) {
                self->request(st.remote, caf::infinite, std::move(req))
                    .then([core, id](Stats& r) { core->complete(id, Expected<Incoming>(Incoming(std::move(r)))); },
                          on_error);
              } else {
                self->request(st.remote, caf::infinite, std::move(req))
                    .then([core, id](Value& r) { core->complete(id, Expected<Incoming>(Incoming(std::move(r)))); },
                          on_error);
              }
            },
            *request);
      },
      [self](tick_atom) {
        auto& st = self->state;
        auto core = st.core;
        if (st.remote) {
          auto gen = st.generation;
          auto patience = core->options.heartbeat * std::max(1, core->options.heartbeat_misses);
          self->request(st.remote, patience, NodeInfoRequest{})
              .then([core, gen](NodeInfo& info) { core->alive(gen, std::move(info)); },
                    [self, core, gen, patience](caf::error& e) {
                      if (e == caf::sec::request_timeout)
                        core->lost(gen, "no heartbeat answered within "
                                            + std::to_string(patience.count()) + " ms");
                      else
                        core->lost(gen, self->system().render(e));
                    });
        }
        self->delayed_send(self, core->options.heartbeat, tick_atom::value);
      },
      [self](close_atom) { self->quit(); },
  };
}

} // namespace

struct RemoteRuntime::Impl {
  std::string host;
  std::uint16_t port = 0;
  std::unique_ptr<caf::actor_system_config> cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::shared_ptr<RemoteCore> core = std::make_shared<RemoteCore>();
  std::thread reconnector;

  // One connection attempt: the node's handle and what it says of itself.
  Expected<std::pair<py_runtime_actor, NodeInfo>> connect_once() {
    using Result = Expected<std::pair<py_runtime_actor, NodeInfo>>;
    auto& opts = core->options;
    // The middleman's (or its OpenSSL manager's) connect, with a timeout:
    // CAF's remote_actor() waits without one, and a host that accepts the
    // connection but never answers would hold this thread forever.
    caf::expected<py_runtime_actor> handle{caf::sec::request_timeout};
    {
      caf::scoped_actor self{*sys};
      auto manager = opts.tls.enabled() ? sys->openssl_manager().actor_handle() : sys->middleman().actor_handle();
      self->request(manager, opts.connect_timeout, caf::connect_atom::value, host, port)
          .receive(
              [&](caf::node_id&, caf::strong_actor_ptr& found, std::set<std::string>& interface) {
                if (!found)
                  handle = caf::make_error(caf::sec::no_actor_published_at_port);
                else if (interface != sys->message_types<py_runtime_actor>())
                  handle = caf::make_error(caf::sec::unexpected_actor_messaging_interface);
                else
                  handle = caf::actor_cast<py_runtime_actor>(std::move(found));
              },
              [&](caf::error& e) { handle = std::move(e); });
    }
    if (!handle) {
      auto why = sys->render(handle.error());
      if (handle.error() == caf::sec::request_timeout)
        why = "no answer within " + std::to_string(opts.connect_timeout.count()) + " ms";
      std::string hint;
      if (why.find("unexpected_actor_messaging_interface") != std::string::npos
          || why.find("incompatible") != std::string::npos)
        hint = " (it offers another interface: a different gilkeeper version?)";
      else if (why.find("handshake") != std::string::npos)
        hint = opts.tls.enabled() ? " (the TLS handshake failed: is it serving TLS, and do both sides trust the "
                                    "same CA?)"
                                  : " (is it serving TLS? then give the client's certificate, key and CA)";
      Error e(ErrorCode::node_lost, "cannot connect to node " + core->endpoint + ": " + why + hint);
      e.where = core->endpoint;
      return Result(e);
    }
    std::optional<NodeInfo> info;
    Error failed;
    caf::scoped_actor self{*sys};
    self->request(*handle, opts.connect_timeout, NodeInfoRequest{})
        .receive([&](NodeInfo& i) { info = std::move(i); },
                 [&](caf::error& err) {
                   failed = Error(ErrorCode::node_lost, "node " + core->endpoint + " did not answer within "
                                                            + std::to_string(opts.connect_timeout.count())
                                                            + " ms: " + sys->render(err));
                   failed.where = core->endpoint;
                 });
    if (!info)
      return Result(failed);
    if (info->version != GK_VERSION) {
      Error e(ErrorCode::bad_request, "node " + core->endpoint + " runs gilkeeper " + info->version
                                          + " and this client gilkeeper " GK_VERSION
                                          ": every node must run the same version");
      e.where = core->endpoint;
      return Result(e);
    }
    return std::make_pair(*handle, std::move(*info));
  }

  void attach(py_runtime_actor handle, NodeInfo info, bool again) {
    std::uint64_t gen;
    {
      std::lock_guard<std::mutex> g(core->m);
      gen = ++core->generation;
      core->remote = handle;
      core->info = std::move(info);
      core->up = true;
      if (again)
        ++core->reconnects;
    }
    caf::anon_send(core->mux, attach_atom::value, gen, handle);
  }

  void reconnect_loop() {
    pthread_setname_np(pthread_self(), "gk-reconnect");
    auto wait = core->options.reconnect_min;
    std::unique_lock<std::mutex> lk(core->m);
    for (;;) {
      core->cv.wait(lk, [&] { return core->closing || !core->up; });
      if (core->closing)
        return;
      if (core->cv.wait_for(lk, wait, [&] { return core->closing; }))
        return;
      lk.unlock();
      auto attempt = connect_once();
      lk.lock();
      if (core->closing)
        return;
      if (attempt) {
        lk.unlock();
        attach(attempt->first, std::move(attempt->second), true);
        lk.lock();
        wait = core->options.reconnect_min;
      } else {
        core->last_loss = attempt.error().message;
        wait = std::min(wait * 2, core->options.reconnect_max);
      }
    }
  }

  // Sends and waits for the reply: at most the deadline plus reply_slack
  // (the node enforces the deadline; past that it is treated as lost).
  Expected<Incoming> ask(Outgoing request, const Deadline& deadline) {
    auto promise = std::make_shared<std::promise<Expected<Incoming>>>();
    auto future = promise->get_future();
    auto id = core->send(std::move(request), [promise](Expected<Incoming>&& r) { promise->set_value(std::move(r)); });
    if (!deadline.is_finite()) {
      return future.get();
    }
    if (future.wait_until(deadline.when() + core->options.reply_slack) == std::future_status::ready)
      return future.get();
    core->complete(id, Expected<Incoming>(core->lost_error(
                           "no reply " + std::to_string(core->options.reply_slack.count()) + " ms after the deadline")));
    return future.get();
  }
};

RemoteRuntime::RemoteRuntime(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

RemoteRuntime::~RemoteRuntime() {
  auto& core = *impl_->core;
  std::unordered_map<std::uint64_t, RemoteCore::Pending> left;
  {
    std::lock_guard<std::mutex> g(core.m);
    core.closing = true;
    core.up = false;
    left.swap(core.pending);
  }
  core.cv.notify_all();
  if (impl_->reconnector.joinable())
    impl_->reconnector.join();
  Error e(ErrorCode::runtime_stopped, "the connection to node " + core.endpoint + " was closed");
  for (auto& [id, p] : left)
    p.done(Expected<Incoming>(e));
  caf::anon_send(core.mux, close_atom::value);
  core.mux = nullptr;
  core.remote = nullptr;
  impl_->sys.reset();
}

Expected<std::unique_ptr<RemoteRuntime>> connect(const std::string& endpoint, ConnectOptions options) {
  using Result = Expected<std::unique_ptr<RemoteRuntime>>;
  auto where = parse_endpoint(endpoint);
  if (!where)
    return Result(where.error());
  if (auto e = detail::check_tls_files(options.tls, "tls certificate", "tls key", "tls ca"); e)
    return Result(e);
  auto impl = std::make_unique<RemoteRuntime::Impl>();
  impl->host = where->first;
  impl->port = where->second;
  impl->core->endpoint = endpoint;
  impl->core->options = options;
  impl->cfg = detail::network_config(options.tls);
  impl->sys = std::make_unique<caf::actor_system>(*impl->cfg);
  impl->core->mux = impl->sys->spawn(mux, impl->core);
  auto first = impl->connect_once();
  if (!first) {
    caf::anon_send(impl->core->mux, close_atom::value);
    return Result(first.error());
  }
  impl->attach(first->first, std::move(first->second), false);
  if (options.reconnect) {
    auto* raw = impl.get();
    impl->reconnector = std::thread([raw] { raw->reconnect_loop(); });
  }
  return Result(std::unique_ptr<RemoteRuntime>(new RemoteRuntime(std::move(impl))));
}

namespace {

Expected<Value> as_value(Expected<Incoming>&& r) {
  if (!r)
    return Expected<Value>(r.error());
  if (auto* v = std::get_if<Value>(&*r))
    return Expected<Value>(std::move(*v));
  return Expected<Value>(Error(ErrorCode::internal, "a remote reply of the wrong kind"));
}

Deadline effective(const RequestOptions& options) {
  Deadline d = options.deadline;
  if (options.parent)
    d = d.min(options.parent->deadline);
  return d;
}

} // namespace

Expected<Value> RemoteRuntime::call(const std::string& target, List args, Dict kwargs, RequestOptions options) {
  CallRequest r{target, std::move(args), std::move(kwargs)};
  r.want_ref = options.want_ref;
  r.deadline = effective(options);
  auto d = r.deadline;
  return as_value(impl_->ask(Outgoing(std::move(r)), d));
}

Expected<Value> RemoteRuntime::eval(const std::string& expression, RequestOptions options) {
  EvalRequest r{expression, options.want_ref, effective(options)};
  auto d = r.deadline;
  return as_value(impl_->ask(Outgoing(std::move(r)), d));
}

Expected<Value> RemoteRuntime::exec(const std::string& code, RequestOptions options) {
  ExecRequest r{code, effective(options)};
  auto d = r.deadline;
  return as_value(impl_->ask(Outgoing(std::move(r)), d));
}

Expected<Value> RemoteRuntime::import_module(const std::string& module, RequestOptions options) {
  ImportRequest r{module, effective(options)};
  auto d = r.deadline;
  return as_value(impl_->ask(Outgoing(std::move(r)), d));
}

Expected<Value> RemoteRuntime::getattr(const std::string& target, RequestOptions options) {
  GetattrRequest r;
  r.target = target;
  r.want_ref = options.want_ref;
  r.deadline = effective(options);
  auto d = r.deadline;
  return as_value(impl_->ask(Outgoing(std::move(r)), d));
}

Expected<std::vector<Expected<Value>>> RemoteRuntime::batch(std::vector<CallRequest> calls, RequestOptions options) {
  using Result = Expected<std::vector<Expected<Value>>>;
  BatchRequest b;
  b.calls = std::move(calls);
  b.deadline = effective(options);
  auto d = b.deadline;
  auto r = impl_->ask(Outgoing(std::move(b)), d);
  if (!r)
    return Result(r.error());
  if (auto* reply = std::get_if<BatchReply>(&*r))
    return Result(std::move(reply->results));
  return Result(Error(ErrorCode::internal, "a remote reply of the wrong kind"));
}

Expected<Stats> RemoteRuntime::stats() {
  auto r = impl_->ask(Outgoing(StatsRequest{}), Deadline::after(impl_->core->options.connect_timeout));
  if (!r)
    return Expected<Stats>(r.error());
  if (auto* s = std::get_if<Stats>(&*r))
    return Expected<Stats>(std::move(*s));
  return Expected<Stats>(Error(ErrorCode::internal, "a remote reply of the wrong kind"));
}

NodeInfo RemoteRuntime::info() const {
  std::lock_guard<std::mutex> g(impl_->core->m);
  return impl_->core->info;
}

std::string RemoteRuntime::last_loss() const {
  std::lock_guard<std::mutex> g(impl_->core->m);
  return impl_->core->last_loss;
}

std::uint64_t RemoteRuntime::losses() const {
  std::lock_guard<std::mutex> g(impl_->core->m);
  return impl_->core->losses;
}

std::uint64_t RemoteRuntime::reconnects() const {
  std::lock_guard<std::mutex> g(impl_->core->m);
  return impl_->core->reconnects;
}

py_runtime_actor RemoteRuntime::actor() const {
  std::lock_guard<std::mutex> g(impl_->core->m);
  return impl_->core->remote;
}

caf::actor_system& RemoteRuntime::system() {
  return *impl_->sys;
}

std::string RemoteRuntime::name() const {
  return impl_->core->endpoint;
}

bool RemoteRuntime::up() const {
  std::lock_guard<std::mutex> g(impl_->core->m);
  return impl_->core->up;
}

int RemoteRuntime::credit() const {
  return std::max(1, impl_->core->options.credit);
}

void RemoteRuntime::send(BatchRequest batch, std::function<void(Expected<BatchReply>&&)> done) {
  impl_->core->send(Outgoing(std::move(batch)), [done = std::move(done)](Expected<Incoming>&& r) {
    if (!r) {
      done(Expected<BatchReply>(r.error()));
      return;
    }
    if (auto* reply = std::get_if<BatchReply>(&*r)) {
      done(Expected<BatchReply>(std::move(*reply)));
      return;
    }
    done(Expected<BatchReply>(Error(ErrorCode::internal, "a remote reply of the wrong kind")));
  });
}

} // namespace gk
