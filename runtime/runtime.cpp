#include "gilkeeper/runtime/runtime.hpp"
#include "gilkeeper/runtime/detail/runtime_impl.hpp"

#include "gilkeeper/actors/deadline_policy.hpp"
#include "gilkeeper/actors/detail/sync_slot.hpp"
#include "gilkeeper/actors/executor.hpp"
#include "gilkeeper/actors/messages.hpp"
#include "gilkeeper/actors/py_runtime.hpp"

#include <caf/all.hpp>

#include <mutex>

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

Runtime::Runtime(Config config) : impl_(std::make_unique<Impl>()) {
  auto& impl = *impl_;
  impl.config = std::move(config);
  impl.policy = std::make_shared<DeadlinePolicy>(impl.config.timeouts);
  impl.caf_config = std::make_unique<caf::actor_system_config>();
  impl.caf_config->set("scheduler.max-threads", static_cast<std::size_t>(impl.config.runtime.scheduler_threads));
  register_error_category(*impl.caf_config);
  announce_message_types(*impl.caf_config);
  auto ex = impl.config.runtime.isolation == Isolation::process ? start_process_executor(impl.config)
                                                                 : start_thread_executor(impl.config);
  if (!ex)
    throw RuntimeStartError(ex.error());
  impl.executor = std::move(*ex);
  impl.system = std::make_unique<caf::actor_system>(*impl.caf_config);
  impl.front = spawn_py_runtime(*impl.system, impl.executor, impl.policy);
}

std::unique_ptr<Runtime> Runtime::from_file(const std::string& path) {
  return std::make_unique<Runtime>(load_config_file(path));
}

Runtime::~Runtime() {
  shutdown();
}

Expected<Value> Runtime::call(const std::string& target, List args, Dict kwargs, RequestOptions options) {
  CallRequest r;
  r.target = target;
  r.args = std::move(args);
  r.kwargs = std::move(kwargs);
  r.want_ref = options.want_ref;
  r.deadline = options.deadline;
  return call(std::move(r), options.stage_timeout);
}

Expected<Value> Runtime::call(const Ref& self, const std::string& method, List args, Dict kwargs,
                              RequestOptions options) {
  CallRequest r;
  r.target = method;
  r.self = self;
  r.args = std::move(args);
  r.kwargs = std::move(kwargs);
  r.want_ref = options.want_ref;
  r.deadline = options.deadline;
  return call(std::move(r), options.stage_timeout);
}

Expected<Value> Runtime::call(CallRequest request, const std::optional<Timeout>& stage_timeout) {
  RequestOptions o;
  o.deadline = request.deadline;
  o.stage_timeout = stage_timeout;
  std::string target = request.self ? std::string() : request.target;
  std::string label = request.self ? "call <" + request.self.type_name() + ">." + request.target : target;
  Deadline d = impl_->policy->resolve("call", target, o.deadline, o.stage_timeout);
  request.deadline = d;
  return std::get<Expected<Value>>(impl_->run(std::move(request), "call", "call " + label, d));
}

Expected<Ref> Runtime::call_ref(const std::string& target, List args, Dict kwargs, RequestOptions options) {
  options.want_ref = true;
  return to_ref(call(target, std::move(args), std::move(kwargs), std::move(options)));
}

Expected<Value> Runtime::eval(const std::string& expression, RequestOptions options) {
  EvalRequest r{expression, options.want_ref, options.deadline};
  return impl_->run_value(std::move(r), "eval", "", options);
}

Expected<Ref> Runtime::eval_ref(const std::string& expression, RequestOptions options) {
  options.want_ref = true;
  return to_ref(eval(expression, std::move(options)));
}

Expected<Value> Runtime::exec(const std::string& code, RequestOptions options) {
  ExecRequest r{code, options.deadline};
  return impl_->run_value(std::move(r), "exec", "", options);
}

Expected<Value> Runtime::import_module(const std::string& module, RequestOptions options) {
  ImportRequest r{module, options.deadline};
  return impl_->run_value(std::move(r), "import", module, options);
}

Expected<Value> Runtime::getattr(const std::string& target, RequestOptions options) {
  GetattrRequest r{target, Ref(), options.want_ref, options.deadline};
  return impl_->run_value(std::move(r), "getattr", target, options);
}

Expected<Value> Runtime::getattr(const Ref& object, const std::string& path, RequestOptions options) {
  GetattrRequest r{path, object, options.want_ref, options.deadline};
  return impl_->run_value(std::move(r), "getattr", "", options);
}

Expected<std::vector<Expected<Value>>> Runtime::batch(std::vector<CallRequest> calls, RequestOptions options) {
  Deadline d = impl_->policy->resolve("batch", "", options.deadline, options.stage_timeout);
  std::string label = "batch of " + std::to_string(calls.size());
  BatchRequest r{std::move(calls), d};
  auto reply = impl_->run(std::move(r), "batch", std::move(label), d);
  if (auto* e = std::get_if<Expected<Value>>(&reply))
    return e->error();
  return std::move(std::get<BatchReply>(reply).results);
}

Expected<Value> Runtime::release(const Ref& ref) {
  ReleaseRequest r{ref.id(), ref.epoch()};
  RequestOptions o;
  o.deadline = Deadline::never();
  return impl_->run_value(std::move(r), "release", "", o);
}

Stats Runtime::stats() const {
  return impl_->executor->stats();
}

ShutdownReport Runtime::shutdown() {
  auto& impl = *impl_;
  std::call_once(impl.shutdown_once, [&] {
    impl.report = impl.executor->shutdown(impl.config.runtime.shutdown_grace);
    {
      std::lock_guard<std::mutex> g(impl.actors_mutex);
      for (auto& a : impl.actors)
        caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
      impl.actors.clear();
    }
    stop_py_runtime(impl.front);
    impl.front = py_runtime_actor{};
    impl.system.reset();  // waits for the front actor to finish
  });
  return impl.report;
}

Deadline Runtime::resolve_deadline(const std::string& type, const std::string& target,
                                   const Deadline& requested, const std::optional<Timeout>& stage) const {
  return impl_->policy->resolve(type, target, requested, stage);
}

const Config& Runtime::config() const noexcept {
  return impl_->config;
}

caf::actor_system& Runtime::system() noexcept {
  return *impl_->system;
}

py_runtime_actor runtime_actor(const Runtime& runtime) {
  return runtime.impl().front;
}

} // namespace gk
