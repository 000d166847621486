#include "gilkeeper/runtime/runtime.hpp"
#include "gilkeeper/config/log.hpp"
#include "runtime/detail/future_state.hpp"
#include "runtime/detail/metrics.hpp"
#include "runtime/detail/runtime_impl.hpp"

#include "gilkeeper/actors/messages.hpp"

#include "actors/detail/blocking_context.hpp"

#include <caf/all.hpp>
#include <caf/thread_hook.hpp>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <pthread.h>

namespace gk {

namespace {

Expected<Ref> to_ref(Expected<Value> v) {
  if (!v)
    return v.error();
  if (!v->is_ref())
    return Error(ErrorCode::internal, "expected a Ref result");
  return v->as_ref();
}

} // namespace

namespace {

// The environment switches applied, and the process's logger set when the
// config or the environment says how (docs/observability.md); otherwise the
// logger stays as the host set it.
Config observed(Config config) {
  apply_environment(config);
  if (config.log.configured)
    log::configure(config.log);
  else if (std::getenv("GILKEEPER_LOG_LEVEL") || std::getenv("GILKEEPER_TRACE"))
    log::set_level(config.log.level);
  return config;
}

std::shared_ptr<PyRuntime> start_core(const Config& config, const std::shared_ptr<detail::HostFunctions>& hosts) {
  ThreadExecutorOptions options;
  options.hosts = hosts;
  auto ex = config.runtime.isolation == Isolation::process ? start_process_executor(config, hosts)
                                                           : start_thread_executor(config, options);
  if (!ex)
    throw RuntimeStartError(ex.error());
  return std::make_shared<PyRuntime>(std::move(*ex), config);
}

Expected<Value> value_of(AnyReply&& reply) {
  return std::get<Expected<Value>>(std::move(reply));
}

SubmitOptions submit_options(const RequestOptions& options) {
  SubmitOptions o;
  o.stage_timeout = options.stage_timeout;
  o.parent = options.parent;
  return o;
}

Expected<Value> ask_value(PyRuntime& core, AnyRequest request, const RequestOptions& options) {
  return value_of(core.ask(std::move(request), submit_options(options)));
}

template <class T>
Future<T> submit_async(const std::shared_ptr<PyRuntime>& core, const std::shared_ptr<detail::CallbackQueue>& callbacks,
                       AnyRequest request, const RequestOptions& options) {
  auto state = std::make_shared<detail::FutureState>(core, callbacks);
  auto o = submit_options(options);
  o.cancellable = true;
  state->deadline = core->submit(std::move(request), state, o);
  return Future<T>(std::move(state));
}

CallRequest make_call(const std::string& target, Ref self, List args, Dict kwargs, const RequestOptions& options) {
  CallRequest r;
  r.target = target;
  r.self = std::move(self);
  r.args = std::move(args);
  r.kwargs = std::move(kwargs);
  r.want_ref = options.want_ref;
  r.deadline = options.deadline;
  return r;
}

} // namespace

namespace {

// Marks the scheduler threads of the actor system a Runtime makes for
// itself: a blocking call there answers `deadlock` (see
// actors/detail/blocking_context.hpp). CAF 0.17 calls thread_started() on
// every thread the system starts, each already named: its scheduler's
// workers ("caf.multiplexer"), the timer ("caf.clock"), and the private
// thread of each detached or blocking actor ("caf.actor"), which is that
// actor's alone and may block. Only the workers are marked.
class SchedulerThreadMark final : public caf::thread_hook {
public:
  void init(caf::actor_system&) override {}
  void thread_started() override {
    char name[16] = {};
    if (pthread_getname_np(pthread_self(), name, sizeof name) == 0 && std::strcmp(name, "caf.multiplexer") == 0)
      detail::mark_thread(detail::kSchedulerThread);
  }
  void thread_terminates() override { detail::mark_thread(nullptr); }
};

} // namespace

void configure_actor_system(caf::actor_system_config& config) {
  register_error_category(config);
  announce_message_types(config);
}

Runtime::Runtime(Config config) : impl_(std::make_unique<Impl>()) {
  auto& impl = *impl_;
  impl.config = observed(std::move(config));
  impl.caf_config = std::make_unique<caf::actor_system_config>();
  impl.caf_config->set("scheduler.max-threads", static_cast<std::size_t>(impl.config.runtime.scheduler_threads));
  configure_actor_system(*impl.caf_config);
  if (impl.config.debug.gil.detect_deadlock)
    impl.caf_config->add_thread_hook<SchedulerThreadMark>();
  impl.core = start_core(impl.config, impl.hosts);
  impl.owned_system = std::make_unique<caf::actor_system>(*impl.caf_config);
  impl.system = impl.owned_system.get();
  impl.front = spawn_py_runtime(*impl.system, impl.core, node_info_base(impl.config));
}

Runtime::Runtime(Config config, caf::actor_system& system) : impl_(std::make_unique<Impl>()) {
  auto& impl = *impl_;
  impl.config = observed(std::move(config));
  impl.core = start_core(impl.config, impl.hosts);
  impl.system = &system;
  impl.front = spawn_py_runtime(system, impl.core, node_info_base(impl.config));
}

Error Runtime::expose(const std::string& name, HostFunction fn) {
  return impl_->hosts->expose(name, std::move(fn));
}

Error Runtime::expose(const std::string& name, caf::actor handler) {
  if (!handler)
    return Error(ErrorCode::bad_request, "expose: the actor for '" + name + "' is an invalid handle");
  caf::actor_system* sys = impl_->system;
  return expose(name, HostFunction([sys, handler](const List& args, const HostCall& call) -> Expected<Value> {
    caf::scoped_actor self{*sys};
    Expected<Value> out = Error(ErrorCode::internal, "no reply");
    auto left = call.deadline().is_finite() ? caf::duration(std::max(call.deadline().remaining(), std::chrono::nanoseconds(1)))
                                            : caf::infinite;
    self->request(handler, left, HostCallMessage{call.name(), args, call.deadline()})
        .receive([&](Value& v) { out = std::move(v); }, [&](caf::error& e) { out = from_caf_error(e); });
    return out;
  }));
}

bool Runtime::unexpose(const std::string& name) {
  return impl_->hosts->remove(name);
}

std::vector<std::string> Runtime::exposed() const {
  return impl_->hosts->names();
}

std::unique_ptr<Runtime> Runtime::from_file(const std::string& path) {
  return std::make_unique<Runtime>(load_config_file(path));
}

Runtime::~Runtime() {
  shutdown();
}

Expected<Value> Runtime::call(const std::string& target, List args, Dict kwargs, RequestOptions options) {
  return ask_value(*impl_->core, make_call(target, Ref(), std::move(args), std::move(kwargs), options), options);
}

Expected<Value> Runtime::call(const Ref& self, const std::string& method, List args, Dict kwargs,
                              RequestOptions options) {
  return ask_value(*impl_->core, make_call(method, self, std::move(args), std::move(kwargs), options), options);
}

Expected<Value> Runtime::call(CallRequest request, const std::optional<Timeout>& stage_timeout) {
  SubmitOptions o;
  o.stage_timeout = stage_timeout;
  return value_of(impl_->core->ask(std::move(request), o));
}

Expected<Ref> Runtime::call_ref(const std::string& target, List args, Dict kwargs, RequestOptions options) {
  options.want_ref = true;
  return to_ref(call(target, std::move(args), std::move(kwargs), std::move(options)));
}

Expected<Value> Runtime::eval(const std::string& expression, RequestOptions options) {
  return ask_value(*impl_->core, EvalRequest{expression, options.want_ref, options.deadline}, options);
}

Expected<Ref> Runtime::eval_ref(const std::string& expression, RequestOptions options) {
  options.want_ref = true;
  return to_ref(eval(expression, std::move(options)));
}

Expected<Value> Runtime::exec(const std::string& code, RequestOptions options) {
  return ask_value(*impl_->core, ExecRequest{code, options.deadline}, options);
}

Expected<Value> Runtime::import_module(const std::string& module, RequestOptions options) {
  return ask_value(*impl_->core, ImportRequest{module, options.deadline}, options);
}

Expected<Value> Runtime::getattr(const std::string& target, RequestOptions options) {
  return ask_value(*impl_->core, GetattrRequest{target, Ref(), options.want_ref, options.deadline}, options);
}

Expected<Value> Runtime::getattr(const Ref& object, const std::string& path, RequestOptions options) {
  return ask_value(*impl_->core, GetattrRequest{path, object, options.want_ref, options.deadline}, options);
}

Expected<std::vector<Expected<Value>>> Runtime::batch(std::vector<CallRequest> calls, RequestOptions options) {
  auto reply = impl_->core->ask(BatchRequest{std::move(calls), options.deadline}, submit_options(options));
  if (auto* e = std::get_if<Expected<Value>>(&reply))
    return e->error();
  return std::move(std::get<BatchReply>(reply).results);
}

Expected<Value> Runtime::release(const Ref& ref) {
  return value_of(impl_->core->ask(ReleaseRequest{ref.id(), ref.epoch()}));
}

Future<Value> Runtime::call_async(const std::string& target, List args, Dict kwargs, RequestOptions options) {
  return submit_async<Value>(impl_->core, impl_->callbacks, make_call(target, Ref(), std::move(args), std::move(kwargs), options), options);
}

Future<Value> Runtime::call_async(const Ref& self, const std::string& method, List args, Dict kwargs,
                                  RequestOptions options) {
  return submit_async<Value>(impl_->core, impl_->callbacks, make_call(method, self, std::move(args), std::move(kwargs), options), options);
}

Future<Value> Runtime::call_async(CallRequest request, RequestOptions options) {
  return submit_async<Value>(impl_->core, impl_->callbacks, std::move(request), options);
}

Future<Value> Runtime::eval_async(const std::string& expression, RequestOptions options) {
  return submit_async<Value>(impl_->core, impl_->callbacks, EvalRequest{expression, options.want_ref, options.deadline}, options);
}

Future<Value> Runtime::exec_async(const std::string& code, RequestOptions options) {
  return submit_async<Value>(impl_->core, impl_->callbacks, ExecRequest{code, options.deadline}, options);
}

Future<std::vector<Expected<Value>>> Runtime::batch_async(std::vector<CallRequest> calls, RequestOptions options) {
  return submit_async<std::vector<Expected<Value>>>(impl_->core, impl_->callbacks, BatchRequest{std::move(calls), options.deadline}, options);
}

Stats Runtime::stats() const {
  return impl_->core->stats();
}

std::string Runtime::dump() const {
  return impl_->core->dump(std::chrono::milliseconds(1000));
}

std::string Runtime::metrics() const {
  return detail::metrics_text(stats(), GK_VERSION);
}

ShutdownReport Runtime::shutdown() {
  auto& impl = *impl_;
  std::call_once(impl.shutdown_once, [&] {
    impl.stopped.store(true, std::memory_order_release);
    impl.report = impl.core->shutdown(impl.config.runtime.shutdown_grace);
    log::flush();
    // Every reply is in: run the continuations still queued.
    impl.callbacks->stop();
    {
      std::lock_guard<std::mutex> g(impl.actors_mutex);
      // A pool and its members told to exit together race inside CAF's
      // actor_pool (the members' down messages against the pool's own exit).
      // So each pool first drops its members and stops monitoring them (the
      // pool handles that message on the sender's thread, before anon_send
      // returns), then exits with none; the members exit on their own below.
      for (auto& pool : impl.pools) {
        caf::anon_send(pool, caf::sys_atom_v, caf::delete_atom_v);
        caf::anon_send_exit(pool, caf::exit_reason::user_shutdown);
      }
      impl.pools.clear();
      for (auto& a : impl.actors)
        caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
      impl.actors.clear();
    }
    stop_py_runtime(impl.front);
    impl.front = py_runtime_actor{};
    impl.system = nullptr;
    impl.owned_system.reset();  // waits for the actors to finish
  });
  return impl.report;
}

Deadline Runtime::resolve_deadline(const std::string& type, const std::string& target,
                                   const Deadline& requested, const std::optional<Timeout>& stage) const {
  return impl_->core->resolve(type, target, requested, stage);
}

const Config& Runtime::config() const noexcept {
  return impl_->config;
}

caf::actor_system& Runtime::system() noexcept {
  return *impl_->system;
}

bool Runtime::stopped() const noexcept {
  return impl_->stopped.load(std::memory_order_acquire);
}

py_runtime_actor runtime_actor(const Runtime& runtime) {
  return detail::RuntimeAccess::impl(runtime).front;
}

} // namespace gk
