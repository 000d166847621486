#pragma once

/// `gk::Pipeline`: records flowing through stages of Python callables and
/// C++ functions, with parallelism, deadlines, retries, batching and
/// backpressure.
///
/// ```
/// gk::Pipeline p(rt, {gk::Stage::python("parse", "mymod:parse").with_parallelism(2),
///                     gk::Stage::cpp("check", [](const gk::Value& v) -> gk::Expected<gk::Value> { ... }),
///                     gk::Stage::python("score", "mymod:score").with_timeout(gk::Timeout::after(500ms))});
/// p.on_output([](gk::Output&& o) { ... });      // in input order by default
/// p.on_failure([](gk::Failure&& f) { ... });    // id, stage, error, attempts
/// for (...) p.push(id, record);                 // blocks while max_in_flight are in flight
/// p.close();
/// auto report = p.wait();
/// ```
///
/// Every record pushed comes out exactly once: as an Output or as a Failure
/// (a record stopped by `stop()` fails with `runtime_stopped`). A failed
/// record does not stop the pipeline.
///
/// Records travel in batches: whatever a Python stage has waiting (up to its
/// `batch_size` cap) goes to the runtime as one request, while each record
/// keeps its own deadline (counted from when its call starts), its own
/// error, its retries and its place in the output order. Nothing waits for
/// a batch to fill.
///
/// Thread-safety: `push`, `close`, `stop`, `progress` and `wait` may be
/// called from any thread; the sinks are set before the first push and are
/// called on the pipeline's own thread, one at a time.

#include "gilkeeper/config/config.hpp"
#include "gilkeeper/interop/context.hpp"
#include "gilkeeper/interop/error.hpp"
#include "gilkeeper/interop/expected.hpp"
#include "gilkeeper/interop/request.hpp"
#include "gilkeeper/interop/value.hpp"

#include <caf/fwd.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace gk {

class Runtime;

/// When a failed record is tried again at the same stage.
struct RetryPolicy {
  /// Total attempts per stage (1: no retry).
  int attempts = 1;
  /// Which error codes are retried.
  std::vector<ErrorCode> on = {ErrorCode::worker_crashed};
  /// Wait before the first retry; multiplied by `multiplier` each time, up
  /// to `max_backoff`.
  std::chrono::nanoseconds backoff = std::chrono::milliseconds(20);
  double multiplier = 2.0;
  std::chrono::nanoseconds max_backoff = std::chrono::seconds(2);

  /// True when `e` is retried after `attempts_so_far` attempts.
  bool retries(const Error& e, int attempts_so_far) const;
};

/// A C++ stage: called on a pipeline worker thread (it may block); must be
/// thread-safe when the stage's parallelism is above 1.
using StageFunction = std::function<Expected<Value>(const Value&)>;
/// A C++ stage that also receives the record's context: its deadline (the
/// stage timeout from when the call starts, or never) and a token that is
/// cancelled when the pipeline's stop grace runs out. A stage that does long
/// work checks `context.done()` and returns early; the runtime cannot stop
/// C++ code that does not.
using ContextStageFunction = std::function<Expected<Value>(const Value&, const RequestContext&)>;

/// One stage of a pipeline.
struct Stage {
  std::string name;
  /// A Python stage: `"module:function"`, called with the record's value.
  std::string call;
  /// A C++ stage (instead of `call`).
  StageFunction function;
  /// A C++ stage that takes the record's context (instead of `call` and
  /// `function`).
  ContextStageFunction function_with_context;
  /// How many records this stage works on at once.
  int parallelism = 1;
  /// The deadline of each record's call, counted from when that call starts
  /// running; unset: the runtime's rules (`[timeouts.targets]`,
  /// `[timeouts].call`, default).
  std::optional<Timeout> timeout;
  /// How long a record may wait for the interpreter once sent (behind other
  /// records); unset: no bound beyond backpressure (`max_in_flight`). A
  /// record past it fails with `deadline_exceeded` / `queued`.
  std::optional<Timeout> queue_budget;
  RetryPolicy retry;
  /// Python stages: the most records sent together in one request. 0
  /// (the default): automatic, whatever is ready (up to 64), shared among
  /// the stage's free slots, never waiting for more; 1: one record per
  /// request. Each record keeps its own deadline, error and retries.
  int batch_size = 0;

  static Stage python(std::string name, std::string call);
  static Stage cpp(std::string name, StageFunction function);
  static Stage cpp(std::string name, ContextStageFunction function);
  Stage& with_parallelism(int n) { parallelism = n; return *this; }
  Stage& with_timeout(Timeout t) { timeout = t; return *this; }
  Stage& with_retry(RetryPolicy r) { retry = std::move(r); return *this; }
  Stage& with_batch(int size) { batch_size = size; return *this; }
  Stage& with_queue_budget(Timeout t) { queue_budget = t; return *this; }
};

/// A record to push.
struct PipelineRecord {
  std::uint64_t id = 0;
  /// What the first stage gets.
  Value value;
  /// What Output and Failure report as the record's input; unset: `value`.
  std::optional<Value> input;
  /// Set for a record that failed before the pipeline (input that does not
  /// parse, say): it runs no stage and comes out as a Failure in its turn,
  /// with an empty stage name.
  std::optional<Error> failed;
};

/// Somewhere else a Python stage's batches can run: a remote runtime
/// (`gk::connect`, which implements it). The pipeline sends a target at
/// most `credit()` batches at once (a slow node holds its credit longer and
/// so gets less work) and only while it is `up()`.
class BatchTarget {
public:
  virtual ~BatchTarget() = default;
  /// For messages and reports: `"host:port"`.
  virtual std::string name() const = 0;
  /// In rotation: connected and answering. Thread-safe.
  virtual bool up() const = 0;
  /// Batches it may hold at once.
  virtual int credit() const = 0;
  /// Runs `batch` there. `done` is called exactly once, on any thread, with
  /// the batch's reply or with the error that stopped it as a whole
  /// (`node_lost` when the node went away with it: then any later reply
  /// from that node is dropped, so a record is never out twice).
  virtual void send(BatchRequest batch, std::function<void(Expected<BatchReply>&&)> done) = 0;
};

struct PipelineOptions {
  /// Records pushed and not yet out; `push` blocks at this bound.
  std::size_t max_in_flight = 256;
  /// Emit in push order (true) or as records finish.
  bool ordered = true;
  /// After `stop()`, how long records in flight may take to finish.
  std::chrono::nanoseconds stop_grace = std::chrono::seconds(5);
  /// Remote runtimes that share Python stages' records with the local one
  /// (C++ stages always run here).
  std::vector<std::shared_ptr<BatchTarget>> remotes;
  /// Python stages also run on the pipeline's own runtime (false: only on
  /// `remotes`).
  bool local = true;
  /// How many times a record whose node was lost with it is sent again (to
  /// whichever runtime has room; these attempts count against no retry
  /// policy). After that, or with 0, it fails with `node_lost`.
  int node_retries = 3;
  /// With `local` off: how long records may wait while no remote is up
  /// before they fail with `node_lost`.
  std::chrono::nanoseconds node_wait = std::chrono::seconds(30);
};

/// A record that went through every stage.
struct Output {
  std::uint64_t id = 0;
  Value value;
  /// The record as it was pushed.
  Value input;
  /// Attempts summed over stages (the number of stages when none failed).
  int attempts = 0;
};

/// A record that failed (and was not retried further).
struct Failure {
  std::uint64_t id = 0;
  Value input;
  std::string stage;
  Error error;
  int attempts = 0;
};

struct StageReport {
  std::string name;
  std::uint64_t calls = 0;     ///< attempts made
  std::uint64_t failed = 0;    ///< attempts that failed
  std::uint64_t retries = 0;
  std::uint64_t requests = 0;  ///< requests sent (a batch is one)
  /// Per-attempt latency, from when the record's request was sent to its
  /// reply (a batch's records share it).
  double p50_ms = 0, p99_ms = 0;
};

/// What one remote runtime did for a pipeline.
struct NodeReport {
  std::string name;
  std::uint64_t batches = 0;  ///< batches answered
  std::uint64_t records = 0;  ///< records in them
  std::uint64_t lost = 0;     ///< records lost with the node (sent again or failed)
};

/// What a pipeline did.
struct PipelineReport {
  std::uint64_t pushed = 0, ok = 0, failed = 0;
  /// True when it ended by stop().
  bool stopped = false;
  std::map<std::string, std::uint64_t> by_code;
  /// Deadline misses by phase ("queued", "soft", "hard").
  std::map<std::string, std::uint64_t> deadline_misses;
  std::vector<StageReport> stages;
  /// One per `PipelineOptions::remotes` entry, in that order.
  std::vector<NodeReport> nodes;
  double elapsed_s = 0;
  /// The most records that were in flight at once.
  std::size_t max_in_flight_seen = 0;
  /// C++ stage calls still running when the pipeline returned after
  /// stop() and `stop_grace` (`stage "resize" (record 17)`): their records
  /// failed with `runtime_stopped`, and their threads are left to finish
  /// on their own. Empty when every call returned.
  std::vector<std::string> abandoned;
};

/// Live progress, for progress bars. Thread-safe to read.
struct PipelineProgress {
  std::uint64_t pushed = 0, ok = 0, failed = 0, in_flight = 0;
};

class Pipeline {
public:
  /// Starts the pipeline's thread. Throws std::invalid_argument for a bad
  /// stage (no name, neither or both of call/function, parallelism < 1).
  Pipeline(Runtime& runtime, std::vector<Stage> stages, PipelineOptions options = {});
  /// Stops (if still running) and waits.
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  /// The sinks. PRECONDITION: before the first push.
  void on_output(std::function<void(Output&&)> sink);
  void on_failure(std::function<void(Failure&&)> sink);
  /// Called after each run of outputs and failures the pipeline's thread
  /// emitted together, so that sinks can hand records on in batches.
  void on_flush(std::function<void()> flush);

  /// Feeds a record; blocks while `max_in_flight` records are in flight.
  /// Returns false (and drops nothing: the record was never accepted) once
  /// the pipeline is stopped or closed.
  bool push(std::uint64_t id, Value input);
  /// Feeds records in order, blocking while `max_in_flight` records are in
  /// flight; one hand-off for all that fit. Returns how many were accepted
  /// (moved from); fewer than all only once the pipeline is stopped or
  /// closed, and the rest are left as they were.
  std::size_t push(std::vector<PipelineRecord>& records);
  /// No more input.
  void close();
  /// Stops reading; records waiting for a stage fail at once with
  /// `runtime_stopped`, calls already running get `stop_grace` to finish,
  /// then the rest fail with `runtime_stopped` (a C++ stage that has not
  /// returned by then is named in `PipelineReport::abandoned` and never
  /// waited for, by wait() or the destructor). Idempotent.
  void stop();
  /// Waits until every accepted record is out (after close() or stop()).
  PipelineReport wait();
  /// Sends `(gk::pipeline_done_atom, PipelineReport)` to `listener` when the
  /// pipeline completes (for hosts that are actors).
  void notify(const caf::actor& listener);

  PipelineProgress progress() const;

  struct Impl;

private:
  std::unique_ptr<Impl> impl_;
};

} // namespace gk
