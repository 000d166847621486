// The pipeline's engine: one driver thread owns every record's state, sends
// each Python stage's waiting records as one batch through the runtime's
// front door, runs C++ stages on a small pool of threads, and emits every
// record once, in order when asked. Records come in and go out in runs: one
// hand-off per push of many records, one per reply, one flush per emission
// run.

#include "gilkeeper/runtime/pipeline.hpp"
#include "gilkeeper/runtime/pipeline_actor.hpp"

#include "actors/latency_histogram.hpp"
#include "runtime/detail/runtime_impl.hpp"
#include "runtime/detail/pipeline_shared.hpp"
#include "runtime/detail/thread_pool.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <optional>
#include <stdexcept>
#include <thread>
#include <unordered_map>

namespace gk {

namespace {

using clock = std::chrono::steady_clock;

// Records of a Python stage sent together when batch_size is automatic: at
// most this many, and about as many as take kAutoBatchTime to run (by the
// stage's recent time per record), so that slow records travel in small
// batches (workers share the load evenly, a batch's results come back
// soon) and cheap ones in large batches (one hand-off for many).
constexpr std::size_t kAutoBatchCap = 128;
constexpr double kAutoBatchTimeUs = 2000;

using detail::Event;
using detail::PipelineSlot;
using detail::Shared;
using detail::ThreadPool;

} // namespace

struct Pipeline::Impl {
  Runtime& runtime;
  std::shared_ptr<PyRuntime> core;
  std::vector<Stage> stages;
  PipelineOptions options;
  std::function<void(Output&&)> output_sink;
  std::function<void(Failure&&)> failure_sink;
  std::function<void()> flush_sink;
  std::shared_ptr<Shared> shared = std::make_shared<Shared>();
  std::unique_ptr<ThreadPool> pool;
  std::thread driver;
  std::vector<caf::actor> listeners;
  PipelineReport report;
  std::atomic<std::uint64_t> ok{0}, failed{0};

  // -- driver state ---------------------------------------------------------

  enum class State : std::uint8_t { live, finished, emitted };
  struct Record {
    std::uint64_t id = 0;
    Value input;
    Value current;  // the stage's input; the result once finished
    Error error;    // set when it failed
    std::size_t stage = 0;
    int stage_attempts = 0;
    int total_attempts = 0;
    // Sent alone: its batch was lost as a whole (a crash or a kill), and
    // only this record's own outcome may count against it.
    bool solo = false;
    bool ok = false;
    // Failed before the pipeline (PipelineRecord::failed): no stage is named.
    bool rejected = false;
    // Times its node was lost with it (PipelineOptions::node_retries).
    int node_losses = 0;
    State state = State::live;
  };
  // A remote runtime's share of the Python stages' batches.
  struct Lane {
    std::shared_ptr<BatchTarget> target;
    int in_flight = 0;  // batches sent, not yet answered
  };
  struct Dispatch {
    std::size_t stage = 0;
    int lane = -1;  // the remote lane, or -1: the local runtime
    std::vector<std::uint64_t> seqs;
    bool batch = false;
    clock::time_point sent;
    std::shared_ptr<PipelineSlot> slot;
  };
  // Every record from the oldest not yet emitted on, by sequence number
  // (push order): records_[seq - base_].
  std::deque<Record> records_;
  std::uint64_t base_ = 0;
  std::vector<std::deque<std::uint64_t>> waiting;
  std::vector<int> busy;  // local dispatches per stage
  std::vector<Lane> lanes;
  // Since when no runtime could take a Python stage's records (local off,
  // no remote up), if any is waiting.
  std::optional<clock::time_point> no_runtime_since;
  std::unordered_map<std::uint64_t, Dispatch> dispatches;
  std::multimap<clock::time_point, std::uint64_t> retry_timers;  // record seqs
  std::uint64_t next_dispatch = 0;
  std::uint64_t emitted_now = 0;  // emitted, not yet told to the pushers
  std::vector<LatencyHistogram> latencies;
  std::vector<double> per_record_us;  // recent time per record of each stage (µs)
  clock::time_point started = clock::now();
  const bool process_isolation;
  // Cancelled when the stop grace runs out (C++ stages see it).
  CancelToken stop_token;
  bool stop_seen = false;  // the driver has seen stop()

  Impl(Runtime& rt, std::vector<Stage> s, PipelineOptions o)
    : runtime(rt), core(detail::RuntimeAccess::impl(rt).core), stages(std::move(s)), options(o),
      process_isolation(rt.config().runtime.isolation == Isolation::process) {
    if (stages.empty())
      throw std::invalid_argument("a pipeline needs at least one stage");
    std::size_t cpp_threads = 0;
    for (auto& st : stages) {
      if (st.name.empty())
        throw std::invalid_argument("a pipeline stage needs a name");
      if (!st.call.empty() + !!st.function + !!st.function_with_context != 1)
        throw std::invalid_argument("stage \"" + st.name + "\": give exactly one of a Python call and a C++ function");
      if (st.function)  // one form below: the function with a context
        st.function_with_context = [fn = std::move(st.function)](const Value& v, const RequestContext&) { return fn(v); };
      if (st.parallelism < 1 || st.batch_size < 0)
        throw std::invalid_argument("stage \"" + st.name + "\": parallelism must be at least 1 and batch_size at least 0");
      if (st.function_with_context)
        cpp_threads += static_cast<std::size_t>(st.parallelism);
    }
    if (options.max_in_flight < 1)
      options.max_in_flight = 1;
    for (auto& t : options.remotes) {
      if (!t)
        throw std::invalid_argument("a pipeline's remote runtime is empty");
      lanes.push_back(Lane{t, 0});
      report.nodes.push_back(NodeReport{t->name(), 0, 0, 0});
    }
    if (!options.local && lanes.empty())
      throw std::invalid_argument("a pipeline with local = false needs at least one remote runtime");
    waiting.resize(stages.size());
    busy.resize(stages.size());
    latencies.resize(stages.size());
    per_record_us.resize(stages.size());
    report.stages.resize(stages.size());
    for (std::size_t i = 0; i < stages.size(); ++i)
      report.stages[i].name = stages[i].name;
    if (cpp_threads > 0)
      pool = std::make_unique<ThreadPool>(cpp_threads);
  }

  Record* find(std::uint64_t seq) {
    if (seq < base_ || seq - base_ >= records_.size())
      return nullptr;
    auto& r = records_[seq - base_];
    return r.state == State::live ? &r : nullptr;
  }
  Record& at(std::uint64_t seq) { return records_[seq - base_]; }

  // -- outcomes -------------------------------------------------------------

  void finish(std::uint64_t seq) {
    auto& r = at(seq);
    r.state = State::finished;
    if (!options.ordered)
      emit(r);
    // The oldest records leave the window once emitted (in order: as soon
    // as they finish).
    while (!records_.empty() && records_.front().state != State::live) {
      if (records_.front().state == State::finished)
        emit(records_.front());
      records_.pop_front();
      ++base_;
    }
  }

  void emit(Record& r) {
    r.state = State::emitted;
    ++emitted_now;
    if (r.ok) {
      report.ok++;
      ok++;
      if (output_sink)
        output_sink(Output{r.id, std::move(r.current), std::move(r.input), r.total_attempts});
    } else {
      report.failed++;
      failed++;
      report.by_code[to_string(r.error.code)]++;
      if (r.error.code == ErrorCode::deadline_exceeded)
        report.deadline_misses[to_string(r.error.phase)]++;
      if (failure_sink)
        failure_sink(Failure{r.id, std::move(r.input), r.rejected ? std::string() : stages[r.stage].name,
                             std::move(r.error), r.total_attempts});
    }
  }

  void fail(std::uint64_t seq, Error e) {
    auto& r = at(seq);
    r.error = std::move(e);
    r.ok = false;
    finish(seq);
  }

  // One attempt of record `seq` at its stage ended.
  void attempt_done(std::uint64_t seq, Expected<Value>&& result) {
    auto* r = find(seq);
    if (!r)
      return;
    auto& st = stages[r->stage];
    auto& rep = report.stages[r->stage];
    if (!result && result.error().code == ErrorCode::cancelled && stop_seen) {
      // Cancelled by stop(): the record is stopped, not retried.
      Error e = std::move(result.error());
      e.code = ErrorCode::runtime_stopped;
      e.message = "the pipeline was stopped before this record finished stage \"" + st.name + "\" (" + e.message + ")";
      rep.failed++;
      fail(seq, std::move(e));
      return;
    }
    if (!result) {
      rep.failed++;
      if (st.retry.retries(result.error(), r->stage_attempts)) {
        rep.retries++;
        double factor = 1;
        for (int i = 1; i < r->stage_attempts; ++i)
          factor *= st.retry.multiplier;
        auto wait = std::min<std::chrono::nanoseconds>(
            st.retry.max_backoff, std::chrono::nanoseconds(static_cast<std::int64_t>(
                                      static_cast<double>(st.retry.backoff.count()) * factor)));
        retry_timers.emplace(clock::now() + wait, seq);
        return;
      }
      fail(seq, std::move(result.error()));
      return;
    }
    r->current = std::move(*result);
    if (r->stage + 1 < stages.size()) {
      r->stage++;
      r->stage_attempts = 0;
      r->solo = false;
      waiting[r->stage].push_back(seq);
      return;
    }
    r->ok = true;
    finish(seq);
  }

  // The attempt record `seq` just had counts against nothing (its batch was
  // lost with a worker or a node); its record, or nullptr when it is out.
  Record* take_back_attempt(std::uint64_t seq) {
    auto* r = find(seq);
    if (r) {
      r->stage_attempts--;
      r->total_attempts--;
    }
    return r;
  }

  void dispatch_done(std::uint64_t did, AnyReply&& reply) {
    auto it = dispatches.find(did);
    if (it == dispatches.end())
      return;  // abandoned by stop()
    Dispatch d = std::move(it->second);
    dispatches.erase(it);
    if (d.lane >= 0)
      lanes[static_cast<std::size_t>(d.lane)].in_flight--;
    else
      busy[d.stage]--;
    auto latency = clock::now() - d.sent;
    for (std::size_t i = 0; i < d.seqs.size(); ++i)
      latencies[d.stage].add(latency);
    if (d.batch && !d.seqs.empty()) {
      double per_record = std::chrono::duration<double, std::micro>(latency).count() / static_cast<double>(d.seqs.size());
      auto& avg = per_record_us[d.stage];
      avg = avg == 0 ? per_record : 0.8 * avg + 0.2 * per_record;
    }
    auto* one = std::get_if<Expected<Value>>(&reply);
    if (d.lane >= 0) {
      auto& node = report.nodes[static_cast<std::size_t>(d.lane)];
      if (one && !one->has_value() && one->error().code == ErrorCode::node_lost) {
        node_lost(d, one->error());
        return;
      }
      if (one && !one->has_value() && one->error().code == ErrorCode::runtime_stopped) {
        // The node is shutting down (its queue is answered runtime_stopped
        // before it goes): the batch goes elsewhere like a lost one.
        Error e(ErrorCode::node_lost, "node " + node.name + " stopped: " + one->error().message);
        e.where = node.name;
        node_lost(d, e);
        return;
      }
      node.batches++;
      if (!one) {
        // Calls the node did not run because it is stopping go elsewhere,
        // like a lost node's; the rest are its answers.
        auto& results = std::get<BatchReply>(reply).results;
        auto not_run = [&](std::size_t i) {
          return i < results.size() && !results[i] && results[i].error().code == ErrorCode::runtime_stopped;
        };
        Dispatch stopped = d;
        stopped.seqs.clear();
        for (std::size_t i = 0; i < d.seqs.size(); ++i)
          if (not_run(i))
            stopped.seqs.push_back(d.seqs[i]);
        if (!stopped.seqs.empty()) {
          std::vector<std::uint64_t> kept;
          BatchReply rest;
          for (std::size_t i = 0; i < d.seqs.size(); ++i) {
            if (not_run(i))
              continue;
            kept.push_back(d.seqs[i]);
            rest.results.push_back(i < results.size() ? std::move(results[i])
                                                      : Expected<Value>(Error(ErrorCode::internal,
                                                                              "missing batch result")));
          }
          Error e(ErrorCode::node_lost, "node " + node.name + " stopped before these calls ran");
          e.where = node.name;
          node_lost(stopped, e);
          d.seqs = std::move(kept);
          reply = AnyReply(std::move(rest));
        }
      }
      node.records += d.seqs.size();
    }
    if (one && d.batch) {
      Error e = one->has_value() ? Error(ErrorCode::internal, "batch reply without results") : one->error();
      bool lost = e.code == ErrorCode::worker_crashed
                  || (e.code == ErrorCode::deadline_exceeded && e.phase == DeadlinePhase::hard);
      if (lost && d.seqs.size() > 1) {
        // The batch was lost as a whole with its worker: which record did it
        // is unknown, so each goes again alone, and this attempt does not
        // count against any of them.
        for (auto it = d.seqs.rbegin(); it != d.seqs.rend(); ++it) {
          if (auto* r = take_back_attempt(*it)) {
            r->solo = true;
            waiting[d.stage].push_front(*it);
          }
        }
        report.stages[d.stage].calls -= d.seqs.size();
        return;
      }
      // Refused as a whole (stopped, wedged, degraded): each record gets the
      // error, and its retry policy decides.
      for (auto seq : d.seqs)
        attempt_done(seq, Expected<Value>(e));
      return;
    }
    if (one) {
      attempt_done(d.seqs.front(), std::move(*one));
      return;
    }
    auto& results = std::get<BatchReply>(reply).results;
    for (std::size_t i = 0; i < d.seqs.size(); ++i)
      attempt_done(d.seqs[i], i < results.size() ? std::move(results[i])
                                                 : Expected<Value>(Error(ErrorCode::internal, "missing batch result")));
  }

  // A remote batch was lost with its node: whether it ran there is
  // unknown (its reply, should it come, is dropped by the target). Each
  // record goes again to whichever runtime has room, without counting as
  // an attempt, up to node_retries times; then it fails with node_lost.
  void node_lost(const Dispatch& d, const Error& e) {
    report.nodes[static_cast<std::size_t>(d.lane)].lost += d.seqs.size();
    report.stages[d.stage].calls -= d.seqs.size();
    for (auto it = d.seqs.rbegin(); it != d.seqs.rend(); ++it) {
      auto* r = take_back_attempt(*it);
      if (!r)
        continue;
      if (r->node_losses++ < options.node_retries) {
        waiting[d.stage].push_front(*it);
        continue;
      }
      Error failed = e;
      failed.message += " (lost with its node " + std::to_string(r->node_losses) + " time(s); node_retries is "
                        + std::to_string(options.node_retries) + ")";
      report.stages[d.stage].failed++;
      fail(*it, std::move(failed));
    }
  }

  // -- sending work -----------------------------------------------------------

  void send(std::size_t s, std::vector<std::uint64_t> seqs, int lane = -1) {
    auto& st = stages[s];
    auto did = ++next_dispatch;
    Dispatch d;
    d.stage = s;
    d.lane = lane;
    d.sent = clock::now();
    if (lane >= 0)
      lanes[static_cast<std::size_t>(lane)].in_flight++;
    else
      busy[s]++;
    report.stages[s].calls += seqs.size();
    report.stages[s].requests++;
    for (auto seq : seqs) {
      auto& r = at(seq);
      r.stage_attempts++;
      r.total_attempts++;
    }
    // The stage's input is needed again for a retry, or to send a record
    // alone when its batch is lost with a worker process; else move it.
    // A remote lane's records may come back with node_lost: keep them too.
    bool keep_input = st.retry.attempts > 1 || (process_isolation && seqs.size() > 1) || !lanes.empty();
    if (st.function_with_context) {
      auto& r = at(seqs.front());
      Value input = keep_input ? r.current : std::move(r.current);
      auto fn = st.function_with_context;
      auto shared_state = shared;
      d.seqs = std::move(seqs);
      dispatches.emplace(did, std::move(d));
      RequestContext context;
      context.cancel = stop_token;
      if (st.timeout && !st.timeout->infinite)
        context.deadline = Deadline::after(st.timeout->value);
      pool->post("stage \"" + st.name + "\" (record " + std::to_string(r.id) + ")",
                 [fn, input = std::move(input), shared_state, did, context] {
        Expected<Value> result = Error(ErrorCode::internal, "no result");
        try {
          result = fn(input, context);
        } catch (const std::exception& e) {
          result = Error(ErrorCode::internal, std::string("the C++ stage threw: ") + e.what());
        } catch (...) {
          result = Error(ErrorCode::internal, "the C++ stage threw");
        }
        shared_state->post(Event{did, AnyReply(std::move(result))});
      });
      return;
    }
    // One request for every record sent together; each record's call gets
    // its own deadline, the stage timeout counted from when that call
    // starts, and its own result.
    BatchRequest b;
    Timeout t = core->policy().timeout_for("call", st.call, st.timeout);
    if (!t.infinite)
      b.call_timeout = t.value;
    b.deadline = st.queue_budget && !st.queue_budget->infinite ? Deadline::after(st.queue_budget->value)
                                                               : Deadline::never();
    b.calls.reserve(seqs.size());
    for (auto seq : seqs) {
      auto& r = at(seq);
      CallRequest c;
      c.target = st.call;
      c.args.push_back(keep_input ? r.current : std::move(r.current));
      c.deadline = Deadline::never();
      b.calls.push_back(std::move(c));
    }
    d.batch = true;
    d.seqs = std::move(seqs);
    if (lane >= 0) {
      // The remote runtime resolves and enforces the deadlines (they travel
      // as budgets); its reply, or node_lost, comes back as an event.
      dispatches.emplace(did, std::move(d));
      lanes[static_cast<std::size_t>(lane)].target->send(
          std::move(b), [shared_state = shared, did](Expected<BatchReply>&& r) {
            shared_state->post(Event{did, r ? AnyReply(std::move(*r)) : AnyReply(Expected<Value>(r.error()))});
          });
      return;
    }
    d.slot = std::make_shared<PipelineSlot>(shared, did);
    auto slot = d.slot;
    dispatches.emplace(did, std::move(d));
    SubmitOptions so;
    // A record's outcome is worth more than a prompt answer: wait for the
    // runtime's own verdict (an interrupt, a kill or the wedge).
    so.patience = Patience::verdict;
    so.cancellable = true;  // by stop()
    core->submit(std::move(b), std::move(slot), so);
  }

  // Where a Python stage's next batch goes: the local runtime while it has
  // a free slot (and is used), else the remote lane that is up with the
  // most credit left; -2 when none has room.
  int pick_lane(std::size_t s) const {
    if (options.local && busy[s] < stages[s].parallelism)
      return -1;
    int best = -2, room = 0;
    for (std::size_t i = 0; i < lanes.size(); ++i) {
      int free = lanes[i].target->credit() - lanes[i].in_flight;
      if (free > room && lanes[i].target->up()) {
        best = static_cast<int>(i);
        room = free;
      }
    }
    return best;
  }

  // Free slots of a Python stage over every runtime that can take work now.
  std::size_t free_slots(std::size_t s) const {
    std::size_t n = options.local ? static_cast<std::size_t>(std::max(0, stages[s].parallelism - busy[s])) : 0;
    for (auto& l : lanes)
      if (l.target->up())
        n += static_cast<std::size_t>(std::max(0, l.target->credit() - l.in_flight));
    return std::max<std::size_t>(n, 1);
  }

  void dispatch_ready() {
    bool starved = false;  // a Python stage's records wait and no runtime can take them
    for (std::size_t s = 0; s < stages.size(); ++s) {
      auto& st = stages[s];
      auto& w = waiting[s];
      while (!w.empty()) {
        int lane = -1;
        if (st.function_with_context) {
          if (busy[s] >= st.parallelism)
            break;
        } else if (lanes.empty()) {
          if (busy[s] >= st.parallelism)
            break;
        } else {
          lane = pick_lane(s);
          if (lane == -2) {
            starved = !options.local;
            break;
          }
        }
        std::size_t n = 1;
        if (!st.function_with_context && !at(w.front()).solo) {
          // Whatever is ready, shared among the free slots, up to the cap;
          // never waiting for more. Records to be sent alone stay alone.
          std::size_t cap = st.batch_size > 0 ? static_cast<std::size_t>(st.batch_size) : kAutoBatchCap;
          // A remote batch pays a network round trip (~100 local calls):
          // it goes as large as the automatic cap allows.
          if (st.batch_size == 0 && per_record_us[s] > 0 && lane < 0)
            cap = std::clamp<std::size_t>(static_cast<std::size_t>(kAutoBatchTimeUs / per_record_us[s]), 1, cap);
          n = std::min(cap, (w.size() + free_slots(s) - 1) / free_slots(s));
          std::size_t k = 1;
          while (k < n && !at(w[k]).solo)
            ++k;
          n = k;
        }
        std::vector<std::uint64_t> seqs(w.begin(), w.begin() + static_cast<long>(n));
        w.erase(w.begin(), w.begin() + static_cast<long>(n));
        send(s, std::move(seqs), lane);
      }
    }
    fail_when_starved(starved);
  }

  // Only remote runtimes, none up, records waiting: they wait node_wait
  // for one to come back, then fail with node_lost.
  void fail_when_starved(bool starved) {
    if (!starved) {
      no_runtime_since.reset();
      return;
    }
    auto now = clock::now();
    if (!no_runtime_since)
      no_runtime_since = now;
    if (now - *no_runtime_since < options.node_wait)
      return;
    std::string names;
    for (auto& l : lanes)
      names += (names.empty() ? "" : ", ") + l.target->name();
    for (std::size_t s = 0; s < stages.size(); ++s) {
      if (stages[s].function_with_context)
        continue;
      auto seqs = std::move(waiting[s]);
      waiting[s].clear();
      for (auto seq : seqs)
        if (find(seq)) {
          report.stages[s].failed++;
          fail(seq, Error(ErrorCode::node_lost, "no remote runtime (" + names + ") was up for "
                                                    + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                                                         options.node_wait).count())
                                                    + " s while this record waited for stage \"" + stages[s].name
                                                    + "\""));
        }
    }
    no_runtime_since.reset();
  }

  void expire_retries(clock::time_point now) {
    while (!retry_timers.empty() && retry_timers.begin()->first <= now) {
      auto seq = retry_timers.begin()->second;
      retry_timers.erase(retry_timers.begin());
      if (auto* r = find(seq))
        waiting[r->stage].push_back(seq);
    }
  }

  // After stop(): records waiting for a stage (not running anywhere) fail
  // at once; the calls already running get the grace period.
  void drop_waiting() {
    std::vector<std::uint64_t> seqs;
    for (auto& w : waiting) {
      seqs.insert(seqs.end(), w.begin(), w.end());
      w.clear();
    }
    for (auto& [t, seq] : retry_timers)
      seqs.push_back(seq);
    retry_timers.clear();
    std::sort(seqs.begin(), seqs.end());
    for (auto seq : seqs)
      if (auto* r = find(seq))
        fail(seq, Error(ErrorCode::runtime_stopped,
                        "the pipeline was stopped before this record reached stage \"" + stages[r->stage].name + "\""));
  }

  // After stop(): requests still queued in the runtime are cancelled (they
  // never run; their records fail as stopped).
  void cancel_queued() {
    for (auto& [did, d] : dispatches)
      if (d.slot && d.slot->state() == ReplySlot::queued)
        core->cancel(d.slot);
  }

  // stop() + grace passed: every record still inside fails; the calls still
  // running are cancelled (interrupted), and C++ stages are told through
  // their context.
  void cancel_all() {
    stop_token.cancel();
    for (auto& [did, d] : dispatches) {
      if (d.lane >= 0)
        lanes[static_cast<std::size_t>(d.lane)].in_flight--;
      else
        busy[d.stage]--;
      if (d.slot) {
        core->cancel(d.slot);
        d.slot->abandon();
      }
    }
    dispatches.clear();
    retry_timers.clear();
    for (auto& w : waiting)
      w.clear();
    for (std::uint64_t seq = base_; seq < base_ + records_.size(); ++seq)
      if (find(seq))
        fail(seq, Error(ErrorCode::runtime_stopped, "the pipeline was stopped before this record finished"));
  }

  void accept(PipelineRecord&& in) {
    Record r;
    r.id = in.id;
    if (in.input) {
      r.input = std::move(*in.input);
      r.current = std::move(in.value);
    } else {
      r.current = in.value;
      r.input = std::move(in.value);
    }
    auto seq = base_ + records_.size();
    records_.push_back(std::move(r));
    if (in.failed) {
      at(seq).rejected = true;
      fail(seq, std::move(*in.failed));
    }
    else
      waiting[0].push_back(seq);
  }

  void run() {
    pthread_setname_np(pthread_self(), "gk-pipeline");
    bool cancelled = false;
    std::vector<PipelineRecord> incoming;
    std::vector<Event> events;
    for (;;) {
      bool stopping;
      clock::time_point stop_at;
      {
        std::unique_lock<std::mutex> lk(shared->m);
        auto next = clock::now() + std::chrono::seconds(1);
        if (!retry_timers.empty())
          next = std::min(next, retry_timers.begin()->first);
        if (shared->stopping && !cancelled)
          next = std::min(next, shared->stop_at);
        shared->driver_cv.wait_until(lk, next, [&] { return shared->wake; });
        shared->wake = false;
        incoming.swap(shared->incoming);
        events.swap(shared->events);
        stopping = shared->stopping;
        stop_at = shared->stop_at;
      }
      for (auto& r : incoming)
        accept(std::move(r));
      incoming.clear();
      for (auto& e : events)
        dispatch_done(e.dispatch, std::move(e.reply));
      events.clear();
      auto now = clock::now();
      expire_retries(now);
      if (stopping && !stop_seen) {
        stop_seen = true;
        cancel_queued();
      }
      if (stopping && !cancelled && now >= stop_at) {
        cancel_all();
        cancelled = true;
      }
      if (stopping)
        drop_waiting();
      dispatch_ready();
      if (emitted_now > 0 && flush_sink)
        flush_sink();
      {
        std::lock_guard<std::mutex> g(shared->m);
        bool freed = emitted_now > 0;
        shared->emitted += emitted_now;
        emitted_now = 0;
        bool no_more_input = shared->closed || shared->stopping;
        if (no_more_input && shared->emitted == shared->pushed && shared->incoming.empty()) {
          report.pushed = shared->pushed;
          report.stopped = shared->stopping;
          report.max_in_flight_seen = shared->max_in_flight_seen;
          break;
        }
        if (freed)
          shared->space_cv.notify_all();
      }
    }
    // C++ stages still running now were abandoned by stop() (their context
    // was cancelled at stop_grace): the pipeline returns without them.
    if (pool)
      report.abandoned = pool->running();
    report.elapsed_s = std::chrono::duration<double>(clock::now() - started).count();
    for (std::size_t s = 0; s < stages.size(); ++s) {
      report.stages[s].p50_ms = latencies[s].percentile_ms(0.5);
      report.stages[s].p99_ms = latencies[s].percentile_ms(0.99);
    }
    for (auto& l : listeners)
      caf::anon_send(l, pipeline_done_atom::value, report);
    {
      std::lock_guard<std::mutex> g(shared->m);
      shared->done = true;
    }
    shared->done_cv.notify_all();
    shared->space_cv.notify_all();
  }
};

Pipeline::Pipeline(Runtime& runtime, std::vector<Stage> stages, PipelineOptions options)
  : impl_(std::make_unique<Impl>(runtime, std::move(stages), options)) {
  impl_->driver = std::thread([this] { impl_->run(); });
}

Pipeline::~Pipeline() {
  stop();
  if (impl_->driver.joinable())
    impl_->driver.join();
}

void Pipeline::on_output(std::function<void(Output&&)> sink) {
  impl_->output_sink = std::move(sink);
}

void Pipeline::on_failure(std::function<void(Failure&&)> sink) {
  impl_->failure_sink = std::move(sink);
}

void Pipeline::on_flush(std::function<void()> flush) {
  impl_->flush_sink = std::move(flush);
}

bool Pipeline::push(std::uint64_t id, Value input) {
  std::vector<PipelineRecord> one(1);
  one[0].id = id;
  one[0].value = std::move(input);
  return push(one) == 1;
}

std::size_t Pipeline::push(std::vector<PipelineRecord>& records) {
  auto& sh = *impl_->shared;
  const auto bound = impl_->options.max_in_flight;
  std::size_t done = 0;
  std::unique_lock<std::mutex> lk(sh.m);
  while (done < records.size()) {
    sh.space_cv.wait(lk, [&] { return sh.closed || sh.stopping || sh.pushed - sh.emitted < bound; });
    if (sh.closed || sh.stopping)
      break;
    auto room = static_cast<std::size_t>(bound - (sh.pushed - sh.emitted));
    auto n = std::min(room, records.size() - done);
    for (std::size_t i = 0; i < n; ++i)
      sh.incoming.push_back(std::move(records[done + i]));
    done += n;
    sh.pushed += n;
    sh.max_in_flight_seen = std::max<std::size_t>(sh.max_in_flight_seen, sh.pushed - sh.emitted);
    if (sh.set_wake()) {
      lk.unlock();
      sh.driver_cv.notify_one();
      lk.lock();
    }
  }
  return done;
}

void Pipeline::close() {
  bool notify;
  {
    std::lock_guard<std::mutex> g(impl_->shared->m);
    impl_->shared->closed = true;
    notify = impl_->shared->set_wake();
  }
  if (notify)
    impl_->shared->driver_cv.notify_one();
  impl_->shared->space_cv.notify_all();
}

void Pipeline::stop() {
  bool notify;
  {
    std::lock_guard<std::mutex> g(impl_->shared->m);
    if (impl_->shared->stopping || impl_->shared->done)
      return;
    impl_->shared->stopping = true;
    impl_->shared->stop_at = clock::now() + impl_->options.stop_grace;
    notify = impl_->shared->set_wake();
  }
  if (notify)
    impl_->shared->driver_cv.notify_one();
  impl_->shared->space_cv.notify_all();
}

PipelineReport Pipeline::wait() {
  {
    std::unique_lock<std::mutex> lk(impl_->shared->m);
    impl_->shared->done_cv.wait(lk, [&] { return impl_->shared->done; });
  }
  if (impl_->driver.joinable())
    impl_->driver.join();
  return impl_->report;
}

void Pipeline::notify(const caf::actor& listener) {
  impl_->listeners.push_back(listener);
}

PipelineProgress Pipeline::progress() const {
  PipelineProgress p;
  std::lock_guard<std::mutex> g(impl_->shared->m);
  p.pushed = impl_->shared->pushed;
  p.ok = impl_->ok.load();
  p.failed = impl_->failed.load();
  p.in_flight = impl_->shared->pushed - impl_->shared->emitted;
  return p;
}

} // namespace gk
