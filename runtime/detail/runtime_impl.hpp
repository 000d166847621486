#pragma once

// Internal: the Runtime's parts, for the library's own use (pipelines,
// workers). Not installed.

#include "gilkeeper/actors/py_runtime.hpp"
#include "actors/py_runtime_core.hpp"
#include "actors/host_functions.hpp"
#include "gilkeeper/runtime/runtime.hpp"
#include "runtime/detail/callback_queue.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <atomic>
#include <mutex>

namespace gk {

struct Runtime::Impl {
  Config config;
  // The actor system: the host's, or owned_system.
  std::unique_ptr<caf::actor_system_config> caf_config;
  std::unique_ptr<caf::actor_system> owned_system;
  caf::actor_system* system = nullptr;
  // Host functions (Runtime::expose), shared with the executor.
  std::shared_ptr<detail::HostFunctions> hosts = std::make_shared<detail::HostFunctions>();
  // The one front door, and its CAF face.
  std::shared_ptr<PyRuntime> core;
  py_runtime_actor front;
  // Runs Future::then continuations.
  std::shared_ptr<detail::CallbackQueue> callbacks = std::make_shared<detail::CallbackQueue>();
  std::once_flag shutdown_once;
  // Set when shutdown() starts: entry points that need the actor system
  // (ask, spawn_worker, pipelines) answer runtime_stopped from then on.
  std::atomic<bool> stopped{false};
  // Actors spawned for the host (workers): told to exit at shutdown, so that
  // the actor system can stop while the host still holds their handles.
  std::mutex actors_mutex;
  std::vector<caf::actor> actors;
  // Worker pools, told at shutdown to let go of their members before anything
  // exits (Runtime::shutdown); their members are in `actors`.
  std::vector<caf::actor> pools;
  void track(caf::actor a) {
    std::lock_guard<std::mutex> g(actors_mutex);
    actors.push_back(std::move(a));
  }
  void track_pool(caf::actor pool) {
    std::lock_guard<std::mutex> g(actors_mutex);
    pools.push_back(std::move(pool));
  }
  ShutdownReport report;
};

namespace detail {
/// The library's own way to a Runtime's parts.
struct RuntimeAccess {
  static Runtime::Impl& impl(Runtime& rt) { return *rt.impl_; }
  static const Runtime::Impl& impl(const Runtime& rt) { return *rt.impl_; }
};
} // namespace detail

} // namespace gk
