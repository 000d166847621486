// The pipeline's engine: one driver thread that owns every record's state,
// sends Python stages' records, in batches, through the runtime's front door,
// runs C++ stages on a small pool of threads, and emits every record once.

#include "gilkeeper/runtime/pipeline.hpp"
#include "gilkeeper/runtime/pipeline_actor.hpp"

#include "gilkeeper/runtime/detail/runtime_impl.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <stdexcept>
#include <thread>
#include <unordered_map>

namespace gk {

bool RetryPolicy::retries(const Error& e, int attempts_so_far) const {
  if (attempts_so_far >= attempts)
    return false;
  return std::find(on.begin(), on.end(), e.code) != on.end();
}

Stage Stage::python(std::string name, std::string call) {
  Stage s;
  s.name = std::move(name);
  s.call = std::move(call);
  return s;
}

Stage Stage::cpp(std::string name, StageFunction function) {
  Stage s;
  s.name = std::move(name);
  s.function = std::move(function);
  return s;
}

namespace {

using clock = std::chrono::steady_clock;

struct Event {
  enum class Kind { push, reply, cpp_done } kind;
  std::uint64_t key = 0;  // seq for push, dispatch id otherwise
  std::uint64_t id = 0;
  Value input;
  AnyReply reply;
};

// State shared with the executor's reply slots and the C++ stage threads;
// it outlives the pipeline if a late reply comes in after it is gone.
struct Shared {
  std::mutex m;
  std::condition_variable driver_cv, space_cv, done_cv;
  std::deque<Event> events;
  bool closed = false;
  bool stopping = false;
  bool done = false;
  clock::time_point stop_at{};
  std::uint64_t pushed = 0;
  std::uint64_t emitted = 0;
  std::size_t max_in_flight_seen = 0;

  void post(Event&& e) {
    {
      std::lock_guard<std::mutex> g(m);
      events.push_back(std::move(e));
    }
    driver_cv.notify_one();
  }
};

class PipelineSlot final : public ReplySlot {
public:
  PipelineSlot(std::shared_ptr<Shared> shared, std::uint64_t dispatch)
    : shared_(std::move(shared)), dispatch_(dispatch) {}

protected:
  void deliver(AnyReply&& reply) override {
    Event e{Event::Kind::reply, dispatch_, 0, Value(), std::move(reply)};
    shared_->post(std::move(e));
  }

private:
  std::shared_ptr<Shared> shared_;
  std::uint64_t dispatch_;
};

// A few threads for C++ stages.
class ThreadPool {
public:
  explicit ThreadPool(std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
      threads_.emplace_back([this] { run(); });
  }
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> g(m_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_)
      t.join();
  }
  void post(std::function<void()> task) {
    {
      std::lock_guard<std::mutex> g(m_);
      tasks_.push_back(std::move(task));
    }
    cv_.notify_one();
  }

private:
  void run() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [&] { return stop_ || !tasks_.empty(); });
        if (tasks_.empty())
          return;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty())
    return 0;
  auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return v[k];
}

} // namespace

// Records of a stage sent together when batch_size is automatic.
constexpr std::size_t kAutoBatchCap = 64;

struct Pipeline::Impl {
  Runtime& runtime;
  std::shared_ptr<PyRuntime> core;
  std::vector<Stage> stages;
  PipelineOptions options;
  std::function<void(Output&&)> output_sink;
  std::function<void(Failure&&)> failure_sink;
  std::shared_ptr<Shared> shared = std::make_shared<Shared>();
  std::unique_ptr<ThreadPool> pool;
  std::thread driver;
  std::vector<caf::actor> listeners;
  PipelineReport report;
  std::atomic<std::uint64_t> ok{0}, failed{0};

  // -- driver state ---------------------------------------------------------

  struct Record {
    std::uint64_t seq = 0;
    std::uint64_t id = 0;
    Value input;
    Value current;
    std::size_t stage = 0;
    int stage_attempts = 0;
    int total_attempts = 0;
    // Sent alone: its batch was lost as a whole (a crash or a kill), and
    // only this record's own outcome may count against it.
    bool solo = false;
  };
  struct Outcome {
    bool ok = false;
    Output output;
    Failure failure;
  };
  struct Dispatch {
    std::size_t stage = 0;
    std::vector<std::uint64_t> seqs;
    bool batch = false;
    clock::time_point sent;
    std::shared_ptr<PipelineSlot> slot;
  };
  std::unordered_map<std::uint64_t, Record> records;
  std::vector<std::deque<std::uint64_t>> waiting;
  std::vector<int> busy;
  std::unordered_map<std::uint64_t, Dispatch> dispatches;
  std::multimap<clock::time_point, std::uint64_t> retry_timers;     // record seqs
  std::map<std::uint64_t, Outcome> ready;  // finished, waiting for their turn
  std::uint64_t next_emit = 0;
  std::uint64_t next_dispatch = 0;
  std::vector<std::vector<double>> latencies;
  clock::time_point started = clock::now();

  Impl(Runtime& rt, std::vector<Stage> s, PipelineOptions o)
    : runtime(rt), core(detail::RuntimeAccess::impl(rt).core), stages(std::move(s)), options(o) {
    if (stages.empty())
      throw std::invalid_argument("a pipeline needs at least one stage");
    std::size_t cpp_threads = 0;
    for (auto& st : stages) {
      if (st.name.empty())
        throw std::invalid_argument("a pipeline stage needs a name");
      if (st.call.empty() == !st.function)
        throw std::invalid_argument("stage \"" + st.name + "\": give exactly one of a Python call and a C++ function");
      if (st.parallelism < 1 || st.batch_size < 0)
        throw std::invalid_argument("stage \"" + st.name + "\": parallelism must be at least 1 and batch_size at least 0");
      if (st.function)
        cpp_threads += static_cast<std::size_t>(st.parallelism);
    }
    if (options.max_in_flight < 1)
      options.max_in_flight = 1;
    waiting.resize(stages.size());
    busy.resize(stages.size());
    latencies.resize(stages.size());
    report.stages.resize(stages.size());
    for (std::size_t i = 0; i < stages.size(); ++i)
      report.stages[i].name = stages[i].name;
    if (cpp_threads > 0)
      pool = std::make_unique<ThreadPool>(cpp_threads);
  }

  // -- outcomes -------------------------------------------------------------

  void finish(std::uint64_t seq, Outcome&& o) {
    records.erase(seq);
    if (options.ordered) {
      ready.emplace(seq, std::move(o));
      while (!ready.empty() && ready.begin()->first == next_emit) {
        emit(std::move(ready.begin()->second));
        ready.erase(ready.begin());
        ++next_emit;
      }
    } else {
      emit(std::move(o));
    }
  }

  void emit(Outcome&& o) {
    if (o.ok) {
      report.ok++;
      ok++;
      if (output_sink)
        output_sink(std::move(o.output));
    } else {
      report.failed++;
      failed++;
      report.by_code[to_string(o.failure.error.code)]++;
      if (o.failure.error.code == ErrorCode::deadline_exceeded)
        report.deadline_misses[to_string(o.failure.error.phase)]++;
      if (failure_sink)
        failure_sink(std::move(o.failure));
    }
    {
      std::lock_guard<std::mutex> g(shared->m);
      shared->emitted++;
    }
    shared->space_cv.notify_all();
  }

  void fail(Record& r, const Error& e) {
    Outcome o;
    o.failure = Failure{r.id, r.input, stages[r.stage].name, e, r.total_attempts};
    finish(r.seq, std::move(o));
  }

  // One attempt of record `seq` at its stage ended.
  void attempt_done(std::uint64_t seq, Expected<Value>&& result) {
    auto it = records.find(seq);
    if (it == records.end())
      return;
    auto& r = it->second;
    auto& st = stages[r.stage];
    auto& rep = report.stages[r.stage];
    if (!result) {
      rep.failed++;
      if (st.retry.retries(result.error(), r.stage_attempts)) {
        rep.retries++;
        double factor = 1;
        for (int i = 1; i < r.stage_attempts; ++i)
          factor *= st.retry.multiplier;
        auto wait = std::min<std::chrono::nanoseconds>(
            st.retry.max_backoff, std::chrono::nanoseconds(static_cast<std::int64_t>(
                                      static_cast<double>(st.retry.backoff.count()) * factor)));
        retry_timers.emplace(clock::now() + wait, seq);
        return;
      }
      fail(r, result.error());
      return;
    }
    if (r.stage + 1 < stages.size()) {
      r.current = std::move(*result);
      r.stage++;
      r.stage_attempts = 0;
      waiting[r.stage].push_back(seq);
      return;
    }
    Outcome o;
    o.ok = true;
    o.output = Output{r.id, std::move(*result), std::move(r.input), r.total_attempts};
    finish(seq, std::move(o));
  }

  void dispatch_done(std::uint64_t did, AnyReply&& reply) {
    auto it = dispatches.find(did);
    if (it == dispatches.end())
      return;  // abandoned by stop()
    Dispatch d = std::move(it->second);
    dispatches.erase(it);
    busy[d.stage]--;
    double ms = std::chrono::duration<double, std::milli>(clock::now() - d.sent).count();
    if (auto* one = std::get_if<Expected<Value>>(&reply)) {
      if (d.batch) {
        Error e = one->has_value() ? Error(ErrorCode::internal, "batch reply without results") : one->error();
        bool lost = e.code == ErrorCode::worker_crashed
                    || (e.code == ErrorCode::deadline_exceeded && e.phase == DeadlinePhase::hard);
        if (lost && d.seqs.size() > 1) {
          // The batch was lost as a whole with its worker: which record did
          // it is unknown, so each goes again alone, and this attempt does
          // not count against any of them.
          for (auto seq : d.seqs) {
            auto& r = records.at(seq);
            r.stage_attempts--;
            r.total_attempts--;
            r.solo = true;
            waiting[d.stage].push_front(seq);
          }
          report.stages[d.stage].calls -= d.seqs.size();
          return;
        }
        // Refused as a whole (stopped, wedged, degraded): every record in it
        // gets the error.
        for (auto seq : d.seqs) {
          latencies[d.stage].push_back(ms);
          attempt_done(seq, Expected<Value>(e));
        }
        return;
      }
      latencies[d.stage].push_back(ms);
      attempt_done(d.seqs.front(), std::move(*one));
      return;
    }
    auto& results = std::get<BatchReply>(reply).results;
    for (std::size_t i = 0; i < d.seqs.size(); ++i) {
      latencies[d.stage].push_back(ms);
      attempt_done(d.seqs[i], i < results.size() ? std::move(results[i])
                                                 : Expected<Value>(Error(ErrorCode::internal, "missing batch result")));
    }
  }

  // -- sending work -----------------------------------------------------------

  void send(std::size_t s, std::vector<std::uint64_t> seqs) {
    auto& st = stages[s];
    auto did = ++next_dispatch;
    Dispatch d;
    d.stage = s;
    d.seqs = seqs;
    d.sent = clock::now();
    busy[s]++;
    report.stages[s].calls += seqs.size();
    for (auto seq : seqs) {
      auto& r = records.at(seq);
      r.stage_attempts++;
      r.total_attempts++;
    }
    if (st.function) {
      auto& r = records.at(seqs.front());
      Value input = r.current;
      auto fn = st.function;
      auto shared_state = shared;
      dispatches.emplace(did, std::move(d));
      pool->post([fn, input = std::move(input), shared_state, did] {
        Expected<Value> result = Error(ErrorCode::internal, "no result");
        try {
          result = fn(input);
        } catch (const std::exception& e) {
          result = Error(ErrorCode::internal, std::string("the C++ stage threw: ") + e.what());
        } catch (...) {
          result = Error(ErrorCode::internal, "the C++ stage threw");
        }
        shared_state->post(Event{Event::Kind::cpp_done, did, 0, Value(), AnyReply(std::move(result))});
      });
      return;
    }
    // One request for every record sent together; each record's call gets
    // its own deadline, the stage timeout counted from when that call
    // starts, and its own result.
    d.batch = true;
    d.slot = std::make_shared<PipelineSlot>(shared, did);
    BatchRequest b;
    Timeout t = core->policy().timeout_for("call", st.call, st.timeout);
    if (!t.infinite)
      b.call_timeout = t.value;
    b.deadline = st.queue_budget ? (st.queue_budget->infinite ? Deadline::never() : Deadline::after(st.queue_budget->value))
                                 : Deadline::never();
    b.calls.reserve(seqs.size());
    for (auto seq : seqs) {
      CallRequest c(st.call, {records.at(seq).current});
      c.deadline = Deadline::never();
      b.calls.push_back(std::move(c));
    }
    dispatches.emplace(did, std::move(d));
    SubmitOptions so;
    // A record's outcome is worth more than a prompt answer: wait for the
    // runtime's own verdict (an interrupt, a kill or the wedge).
    so.patience = Patience::verdict;
    core->submit(std::move(b), dispatches.at(did).slot, so);
  }

  void dispatch_ready() {
    for (std::size_t s = 0; s < stages.size(); ++s) {
      auto& st = stages[s];
      auto& w = waiting[s];
      while (busy[s] < st.parallelism && !w.empty()) {
        std::size_t n = 1;
        if (st.function == nullptr && !records.at(w.front()).solo) {
          // Whatever is ready, shared among the free slots, up to the cap;
          // never waiting for more.
          std::size_t cap = st.batch_size > 0 ? static_cast<std::size_t>(st.batch_size) : kAutoBatchCap;
          std::size_t free_slots = static_cast<std::size_t>(st.parallelism - busy[s]);
          n = std::min(cap, std::max<std::size_t>(1, (w.size() + free_slots - 1) / free_slots));
          std::size_t k = 1;
          while (k < n && k < w.size() && !records.at(w[k]).solo)
            ++k;
          n = k;
        }
        std::vector<std::uint64_t> seqs(w.begin(), w.begin() + static_cast<long>(n));
        w.erase(w.begin(), w.begin() + static_cast<long>(n));
        send(s, std::move(seqs));
      }
    }
  }

  void expire_retries(clock::time_point now) {
    while (!retry_timers.empty() && retry_timers.begin()->first <= now) {
      auto seq = retry_timers.begin()->second;
      retry_timers.erase(retry_timers.begin());
      auto it = records.find(seq);
      if (it != records.end())
        waiting[it->second.stage].push_back(seq);
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
    for (auto seq : seqs) {
      auto it = records.find(seq);
      if (it != records.end())
        fail(it->second, Error(ErrorCode::runtime_stopped, "the pipeline was stopped before this record reached stage \""
                                                               + stages[it->second.stage].name + "\""));
    }
  }

  // stop() + grace passed: every record still inside fails.
  void cancel_all() {
    for (auto& [did, d] : dispatches) {
      busy[d.stage]--;
      if (d.slot)
        d.slot->abandon();
    }
    dispatches.clear();
    retry_timers.clear();
    for (auto& w : waiting)
      w.clear();
    std::vector<std::uint64_t> seqs;
    for (auto& [seq, r] : records)
      seqs.push_back(seq);
    std::sort(seqs.begin(), seqs.end());
    for (auto seq : seqs) {
      auto& r = records.at(seq);
      fail(r, Error(ErrorCode::runtime_stopped, "the pipeline was stopped before this record finished"));
    }
  }

  clock::time_point next_timer(clock::time_point now) const {
    auto next = now + std::chrono::seconds(1);
    if (!retry_timers.empty())
      next = std::min(next, retry_timers.begin()->first);
    return next;
  }

  void run() {
    pthread_setname_np(pthread_self(), "gk-pipeline");
    bool cancelled = false;
    for (;;) {
      std::deque<Event> events;
      bool closed, stopping;
      clock::time_point stop_at;
      std::uint64_t pushed, emitted;
      {
        std::unique_lock<std::mutex> lk(shared->m);
        auto next = next_timer(clock::now());
        if (shared->stopping && !cancelled)
          next = std::min(next, shared->stop_at);
        shared->driver_cv.wait_until(lk, next, [&] { return !shared->events.empty(); });
        events.swap(shared->events);
        closed = shared->closed;
        stopping = shared->stopping;
        stop_at = shared->stop_at;
        pushed = shared->pushed;
        emitted = shared->emitted;
      }
      for (auto& e : events) {
        if (e.kind == Event::Kind::push) {
          Record r;
          r.seq = e.key;
          r.id = e.id;
          r.current = e.input;
          r.input = std::move(e.input);
          records.emplace(r.seq, std::move(r));
          waiting[0].push_back(e.key);
        } else {
          dispatch_done(e.key, std::move(e.reply));
        }
      }
      auto now = clock::now();
      expire_retries(now);
      if (stopping && !cancelled && now >= stop_at) {
        cancel_all();
        cancelled = true;
      }
      if (stopping)
        drop_waiting();
      dispatch_ready();
      {
        std::lock_guard<std::mutex> g(shared->m);
        pushed = shared->pushed;
        emitted = shared->emitted;
        bool no_more_input = shared->closed || shared->stopping;
        if (no_more_input && emitted == pushed && shared->events.empty()) {
          report.pushed = pushed;
          report.stopped = shared->stopping;
          report.max_in_flight_seen = shared->max_in_flight_seen;
          break;
        }
      }
      (void)closed;
    }
    report.elapsed_s = std::chrono::duration<double>(clock::now() - started).count();
    for (std::size_t s = 0; s < stages.size(); ++s) {
      report.stages[s].p50_ms = percentile(latencies[s], 0.5);
      report.stages[s].p99_ms = percentile(latencies[s], 0.99);
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

bool Pipeline::push(std::uint64_t id, Value input) {
  auto& sh = *impl_->shared;
  std::unique_lock<std::mutex> lk(sh.m);
  sh.space_cv.wait(lk, [&] {
    return sh.closed || sh.stopping || sh.pushed - sh.emitted < impl_->options.max_in_flight;
  });
  if (sh.closed || sh.stopping)
    return false;
  auto seq = sh.pushed++;
  sh.max_in_flight_seen = std::max<std::size_t>(sh.max_in_flight_seen, sh.pushed - sh.emitted);
  sh.events.push_back(Event{Event::Kind::push, seq, id, std::move(input), AnyReply()});
  lk.unlock();
  sh.driver_cv.notify_one();
  return true;
}

void Pipeline::close() {
  {
    std::lock_guard<std::mutex> g(impl_->shared->m);
    impl_->shared->closed = true;
  }
  impl_->shared->driver_cv.notify_one();
  impl_->shared->space_cv.notify_all();
}

void Pipeline::stop() {
  {
    std::lock_guard<std::mutex> g(impl_->shared->m);
    if (impl_->shared->stopping || impl_->shared->done)
      return;
    impl_->shared->stopping = true;
    impl_->shared->stop_at = clock::now() + impl_->options.stop_grace;
  }
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
