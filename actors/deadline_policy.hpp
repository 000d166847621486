#pragma once

/// Which deadline a request gets.
///
/// The first that applies wins:
/// 1. the deadline set on the request (the per-call value from the API);
/// 2. the stage's `timeout` (jobs and pipelines);
/// 3. `[timeouts.targets]."module:function"` (calls only);
/// 4. `[timeouts].<message type>` (`import`, `call`, `eval`, `exec`,
///    `getattr`, `batch`);
/// 5. `[timeouts].default` (30 s unless configured).
/// `"none"` at any level means no deadline.

#include "gilkeeper/config/config.hpp"
#include "gilkeeper/interop/deadline.hpp"

#include <optional>
#include <string>

namespace gk {

/// Resolves deadlines from a config. Thread-safe (immutable after
/// construction).
class DeadlinePolicy {
public:
  explicit DeadlinePolicy(TimeoutsConfig timeouts) : timeouts_(std::move(timeouts)) {}

  /// The timeout that applies to a request of `type` to `target` (empty
  /// when the request has no target), given a stage timeout if any.
  Timeout timeout_for(const std::string& type, const std::string& target,
                      const std::optional<Timeout>& stage = std::nullopt) const {
    if (stage)
      return *stage;
    return resolve_timeout(timeouts_, type, target);
  }

  /// `requested` if set, else the deadline from config, counted from now.
  Deadline resolve(const std::string& type, const std::string& target, const Deadline& requested,
                   const std::optional<Timeout>& stage = std::nullopt) const {
    if (requested.is_set())
      return requested;
    Timeout t = timeout_for(type, target, stage);
    return t.infinite ? Deadline::never() : Deadline::after(t.value);
  }

  /// `[timeouts].grace`.
  std::chrono::nanoseconds grace() const { return timeouts_.grace; }

private:
  TimeoutsConfig timeouts_;
};

} // namespace gk
