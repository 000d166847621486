#pragma once

/// The message vocabulary: one request struct per message type, and the
/// replies that are not a plain `Value`.
///
/// The message type's name (`kind_name`) is the key config uses for its
/// default timeout (`[timeouts].call`, ...). Every request carries a
/// `Deadline`; an unset deadline is filled in by the runtime from config.
/// Every request gets exactly one reply.

#include "gilkeeper/interop/deadline.hpp"
#include "gilkeeper/interop/error.hpp"
#include "gilkeeper/interop/expected.hpp"
#include "gilkeeper/interop/value.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace gk {

/// `import`: import a module (and keep it imported). Replies null.
struct ImportRequest {
  std::string module;
  Deadline deadline;
};

/// `call`: call `target` with arguments.
/// - Without `self`: `target` is `"module:qualname"` (`"json:dumps"`,
///   `"pkg.mod:Class.method"`).
/// - With `self` (a Ref): `target` is a dotted attribute path on that object
///   (`"append"`), or empty to call the object itself.
/// Replies the result as a Value, or as a Ref when `want_ref`.
struct CallRequest {
  CallRequest() = default;
  CallRequest(std::string target_, List args_ = {}, Dict kwargs_ = {})
    : target(std::move(target_)), args(std::move(args_)), kwargs(std::move(kwargs_)) {}

  std::string target;
  List args;
  Dict kwargs;
  bool want_ref = false;
  Ref self;
  Deadline deadline;
};

/// `eval`: evaluate an expression in the `__main__` namespace.
struct EvalRequest {
  std::string expression;
  bool want_ref = false;
  Deadline deadline;
};

/// `exec`: run statements in the `__main__` namespace. Replies null.
struct ExecRequest {
  std::string code;
  Deadline deadline;
};

/// `getattr`: read an attribute. Without `object`, `target` is
/// `"module:attr.path"`; with `object`, `target` is a dotted path on it.
struct GetattrRequest {
  std::string target;
  Ref object;
  bool want_ref = false;
  Deadline deadline;
};

/// `release`: drop a handle. Replies null, or `stale_ref` if it was not live.
/// A Ref's destructor sends this without waiting for the reply.
struct ReleaseRequest {
  std::uint64_t id = 0;
  std::uint64_t epoch = 0;
};

/// `batch`: many calls in one message; one result each, in order. A failed
/// call does not stop the batch. Within one batch a target
/// ("module:function") is resolved once, by its first call, and reused.
///
/// Deadlines, without `call_timeout`: the batch's deadline bounds the whole
/// batch (it interrupts whichever call runs); a call's own deadline, when set
/// and earlier, bounds that call; an expired deadline fails the calls not
/// yet run.
///
/// With `call_timeout` (pipelines and the CLI send this): each call gets its
/// own deadline, `call_timeout` from when that call starts (or its own
/// deadline when earlier), and the soft interrupt aims at that call alone;
/// the batch's deadline is then a queue budget: a call that has not started
/// by it fails with `deadline_exceeded` / `queued`.
struct BatchRequest {
  std::vector<CallRequest> calls;
  Deadline deadline;
  /// Zero: none.
  std::chrono::nanoseconds call_timeout{0};
};

/// One result per call of a batch.
struct BatchReply {
  std::vector<Expected<Value>> results;
};

/// `stats`: counters and timings.
struct StatsRequest {};

/// A latency histogram in the form Prometheus exposes one: cumulative
/// counts at fixed upper bounds, a sum and a count. The bounds are shared by
/// every histogram of a runtime (5 us to 5 min).
struct LatencyBuckets {
  std::vector<double> le_seconds;           ///< upper bounds, ascending
  std::vector<std::uint64_t> cumulative;    ///< observations at or below each bound
  double sum_seconds = 0;                   ///< sum of every observation
  std::uint64_t count = 0;                  ///< observations (the +Inf bucket)
};

/// Counters and latency percentiles for one message type.
struct TypeStats {
  std::string type;              ///< "call", "eval", ...
  std::uint64_t submitted = 0;   ///< requests through the runtime's front door
  std::uint64_t calls = 0;       ///< requests that reached the executor
  std::uint64_t errors = 0;      ///< replies that were errors (any code)
  std::uint64_t missed_queued = 0;  ///< deadline passed while queued
  std::uint64_t missed_soft = 0;    ///< deadline passed while running
  std::uint64_t missed_hard = 0;    ///< killed after the grace period
  double queue_p50_us = 0, queue_p99_us = 0;  ///< time from submit to start
  double run_p50_us = 0, run_p99_us = 0;      ///< time running
  LatencyBuckets queue_histogram;  ///< time from submit to start, in buckets
  LatencyBuckets run_histogram;    ///< time running, in buckets
};

/// Replies by outcome for one target of one message type. The target is
/// what a request's label names after its type: `m:f` of "call m:f",
/// `<Box>.add` of a call on a Ref, the module of an import, `m:a` of a
/// getattr; empty for eval, exec, release and a getattr on a Ref. Each call
/// of a batch counts on its own, under its own target, with type "batch". A
/// runtime keeps at most kMaxTargets (type, target) pairs; requests to
/// targets beyond them count under the target "other" (of their type).
struct TargetStats {
  std::string target;
  std::string type;
  /// Replies by outcome: "ok", or the ErrorCode's name ("python_exception",
  /// "deadline_exceeded", ...); only outcomes that occurred.
  std::vector<std::pair<std::string, std::uint64_t>> outcomes;
  std::uint64_t slow = 0;  ///< calls past the slow-call threshold

  /// The replies with `outcome`; 0 when none.
  std::uint64_t count(const std::string& outcome) const {
    for (auto& [name, n] : outcomes)
      if (name == outcome)
        return n;
    return 0;
  }
};

/// The most (type, target) pairs a runtime counts on their own (see
/// TargetStats).
inline constexpr std::size_t kMaxTargets = 1000;

/// What `stats` replies.
struct Stats {
  std::vector<TypeStats> types;  ///< one per message type seen
  std::vector<TargetStats> targets;  ///< one per (type, target) with a reply or a slow call
  std::uint64_t slow_calls = 0;      ///< calls past the slow-call threshold, every target
  std::uint64_t live_refs = 0;   ///< handles in the table
  std::uint64_t queued = 0;      ///< requests waiting right now
  bool wedged = false;           ///< stuck in native code past grace
  std::uint64_t wedged_count = 0;   ///< times the runtime became wedged
  std::uint64_t restarts = 0;       ///< interpreters replaced (process isolation)
  /// Replacements by cause: "crashed", "hard_deadline", "max_calls",
  /// "max_memory", "failed_start" (process isolation).
  std::vector<std::pair<std::string, std::uint64_t>> restarts_by_cause;
  std::uint64_t workers = 1;        ///< interpreters serving requests now
  std::uint64_t rss_bytes = 0;      ///< resident memory of the interpreter's process
  std::uint64_t capability_denials = 0;
  std::string isolation;         ///< "thread" or "process"
  std::string python_version;    ///< e.g. "3.11.2"
  bool gil_enabled = true;       ///< false only on a free-threaded build with the GIL off
  bool free_threaded = false;    ///< a free-threaded build (3.13t); never Debian's 3.11

  /// The entry for a type, or nullptr.
  const TypeStats* type(const std::string& name) const {
    for (auto& t : types)
      if (t.type == name)
        return &t;
    return nullptr;
  }
  /// The entry for a message type and a target, or nullptr.
  const TargetStats* target(const std::string& type_name, const std::string& name) const {
    for (auto& t : targets)
      if (t.type == type_name && t.target == name)
        return &t;
    return nullptr;
  }
};

/// `node_info`: who answers (a remote client's first question, and its
/// heartbeat).
struct NodeInfoRequest {};

/// What `node_info` replies: enough for a client to refuse a node it cannot
/// work with and for `gilkeeper check --nodes` to show what each node is.
struct NodeInfo {
  std::string version;         ///< gilkeeper's version, e.g. "0.1.0"
  std::string isolation;       ///< "thread" or "process"
  std::uint64_t workers = 1;   ///< interpreters serving requests now
  std::string python_version;  ///< e.g. "3.11.2"
  /// The capability rules in force, one line each ("deny_modules: socket");
  /// empty when none are configured.
  std::vector<std::string> capabilities;
  std::uint64_t queued = 0;    ///< requests waiting right now
  std::int64_t pid = 0;        ///< the serving process
};

/// What an actor exposed as a host function (`Runtime::expose(name,
/// actor)`) receives for each Python call; it replies a `Value` (or a
/// `caf::error`, e.g. `gk::to_caf_error(...)`, which Python sees as
/// gilkeeper.HostError).
struct HostCallMessage {
  std::string name;  ///< the name Python called
  List args;
  Deadline deadline;  ///< what is left of the calling request's deadline
};

/// `shutdown`: stop the runtime. Queued requests get `runtime_stopped`.
struct ShutdownRequest {
  /// How long to wait for Python (non-daemon threads) to finish.
  Deadline::duration grace = std::chrono::seconds(5);
};

/// A handle that was still alive at shutdown.
struct LeakedRef {
  std::uint64_t id = 0;
  std::string type_name;
  std::string origin;  ///< the request that made it ("call json:loads")
};

/// What `shutdown` replies.
struct ShutdownReport {
  /// True when the interpreter was finalized cleanly.
  bool finalized = false;
  /// Handles still alive: a leak report.
  std::vector<LeakedRef> leaked_refs;
  /// Human-readable notes (e.g. the names of Python threads that did not end).
  std::string message;
};

/// The message-type name of a request: "import", "call", ...
inline const char* kind_name(const ImportRequest&) { return "import"; }
inline const char* kind_name(const CallRequest&) { return "call"; }
inline const char* kind_name(const EvalRequest&) { return "eval"; }
inline const char* kind_name(const ExecRequest&) { return "exec"; }
inline const char* kind_name(const GetattrRequest&) { return "getattr"; }
inline const char* kind_name(const ReleaseRequest&) { return "release"; }
inline const char* kind_name(const BatchRequest&) { return "batch"; }
inline const char* kind_name(const StatsRequest&) { return "stats"; }
inline const char* kind_name(const ShutdownRequest&) { return "shutdown"; }
inline const char* kind_name(const NodeInfoRequest&) { return "node_info"; }

} // namespace gk
