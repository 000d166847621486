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

struct Runtime::Impl {
  Config config;
  std::shared_ptr<const DeadlinePolicy> policy;
  std::unique_ptr<caf::actor_system_config> caf_config;
  std::unique_ptr<caf::actor_system> system;
  std::shared_ptr<Executor> executor;
  py_runtime_actor front;
  std::once_flag shutdown_once;
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
    std::string label = target.empty() ? type : type + " " + target;
    return std::get<Expected<Value>>(run(std::move(request), type, std::move(label), d));
  }
};


} // namespace gk
