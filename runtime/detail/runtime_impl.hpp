#pragma once

// Internal: the Runtime's parts, for the library's own use (pipelines,
// workers). Not installed.

#include "gilkeeper/actors/deadline_policy.hpp"
#include "gilkeeper/actors/detail/sync_slot.hpp"
#include "gilkeeper/actors/executor.hpp"
#include "gilkeeper/actors/py_runtime.hpp"
#include "gilkeeper/runtime/runtime.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <mutex>

namespace gk {

/// Writes a resolved deadline into a request: a worker process takes its
/// deadline (and so its soft interrupt) from the request itself.
inline void set_deadline(AnyRequest& request, const Deadline& d) {
  std::visit(
      [&](auto& r) {
        if constexpr (!std::is_same_v<std::decay_t<decltype(r)>, ReleaseRequest>)
          r.deadline = d;
      },
      request);
}

struct Runtime::Impl {
  Config config;
  std::shared_ptr<const DeadlinePolicy> policy;
  std::unique_ptr<caf::actor_system_config> caf_config;
  std::unique_ptr<caf::actor_system> system;
  std::shared_ptr<Executor> executor;
  py_runtime_actor front;
  std::once_flag shutdown_once;
  // Actors spawned for the host (workers): told to exit at shutdown, so that
  // the actor system can stop while the host still holds their handles.
  std::mutex actors_mutex;
  std::vector<caf::actor> actors;
  void track(caf::actor a) {
    std::lock_guard<std::mutex> g(actors_mutex);
    actors.push_back(std::move(a));
  }
  ShutdownReport report;

  // Submits a job and waits for its one reply, at most until its deadline.
  AnyReply run(AnyRequest request, std::string type, std::string label, Deadline deadline) {
    auto slot = std::make_shared<detail::SyncSlot>();
    Job job;
    job.request = std::move(request);
    job.type = std::move(type);
    job.label = label;
    job.deadline = deadline;
    job.slot = slot;
    executor->submit(std::move(job));
    return slot->wait(deadline, label);
  }

  Expected<Value> run_value(AnyRequest request, const std::string& type, const std::string& target,
                            const RequestOptions& options) {
    Deadline d = policy->resolve(type, target, options.deadline, options.stage_timeout);
    set_deadline(request, d);
    std::string label = target.empty() ? type : type + " " + target;
    return std::get<Expected<Value>>(run(std::move(request), type, std::move(label), d));
  }
};


} // namespace gk
