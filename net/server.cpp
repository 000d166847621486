// A runtime published to remote clients: a second CAF face of its
// PyRuntime (the same front door, in remote mode) on an actor system with
// CAF's middleman, published with or without TLS.

#include "gilkeeper/net/remote.hpp"

#include "actors/py_runtime_core.hpp"
#include "net/detail/caf_setup.hpp"
#include "runtime/detail/runtime_impl.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/all.hpp>

#include <mutex>

namespace gk {

struct Server::Impl {
  std::unique_ptr<caf::actor_system_config> cfg;
  std::unique_ptr<caf::actor_system> sys;
  py_runtime_actor front;
  std::string address;
  std::uint16_t port = 0;
  bool tls = false;
  std::mutex m;
  bool open = false;
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  close();
}

Expected<std::unique_ptr<Server>> Server::start(Runtime& runtime, ServeOptions options) {
  using Result = Expected<std::unique_ptr<Server>>;
  if (auto e = detail::check_tls_files(options.tls, "--tls-cert", "--tls-key", "--tls-ca"); e)
    return Result(e);
  if (!options.tls.enabled() && !options.insecure && !is_loopback(options.address)) {
    Error e(ErrorCode::bad_request, "refusing to listen on " + options.address
                                        + " without TLS: anyone who reaches the port could run code; give "
                                          "--tls-cert, --tls-key and --tls-ca, or --insecure");
    e.where = "--listen";
    return Result(e);
  }
  auto& parts = detail::RuntimeAccess::impl(runtime);
  if (parts.stopped.load())
    return Result(Error(ErrorCode::runtime_stopped, "the runtime to serve is stopped"));
  auto impl = std::make_unique<Impl>();
  impl->cfg = detail::network_config(options.tls);
  impl->sys = std::make_unique<caf::actor_system>(*impl->cfg);
  impl->front = spawn_py_runtime(*impl->sys, parts.core, node_info_base(parts.config), FrontOptions{true});
  impl->address = options.address;
  impl->tls = options.tls.enabled();
  auto port = impl->tls ? caf::openssl::publish(impl->front, options.port, options.address.c_str(), true)
                        : impl->sys->middleman().publish(impl->front, options.port, options.address.c_str(), true);
  if (!port) {
    Error e(ErrorCode::bad_request, "cannot listen on " + options.address + ":" + std::to_string(options.port) + ": "
                                        + impl->sys->render(port.error()));
    e.where = "--listen";
    stop_py_runtime(impl->front);
    return Result(e);
  }
  impl->port = *port;
  impl->open = true;
  return Result(std::unique_ptr<Server>(new Server(std::move(impl))));
}

std::uint16_t Server::port() const noexcept {
  return impl_->port;
}

std::string Server::endpoint() const {
  auto host = impl_->address.find(':') != std::string::npos ? "[" + impl_->address + "]" : impl_->address;
  return host + ":" + std::to_string(impl_->port);
}

void Server::drain() {
  std::lock_guard<std::mutex> g(impl_->m);
  if (impl_->open)
    drain_py_runtime(impl_->front);
}

void Server::close() {
  std::lock_guard<std::mutex> g(impl_->m);
  if (!impl_->open)
    return;
  impl_->open = false;
  if (impl_->tls) {
    // (caf/openssl/unpublish.hpp does not compile in 0.17.6: ask the
    // OpenSSL manager's actor directly, as the middleman's unpublish does.)
    caf::scoped_actor self{*impl_->sys};
    self->request(impl_->sys->openssl_manager().actor_handle(), std::chrono::seconds(2), caf::unpublish_atom::value,
                  impl_->front.address(), impl_->port)
        .receive([] {}, [](caf::error&) {});
  } else {
    impl_->sys->middleman().unpublish(impl_->front, impl_->port);
  }
  stop_py_runtime(impl_->front);
  impl_->front = nullptr;
  // The system's end closes every connection (its destructor waits for its
  // actors, the front among them).
  impl_->sys.reset();
}

} // namespace gk
