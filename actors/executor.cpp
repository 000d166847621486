// The thread executor: one OS thread owns the interpreter and runs jobs in
// order; a watchdog thread interrupts calls at their deadline and declares
// the executor wedged when a call outlives its grace period.

#include "actors/executor.hpp"
#include "actors/detail/stats_collector.hpp"
#include "actors/detail/blocking_context.hpp"
#include "actors/detail/join_or_detach.hpp"
#include "actors/host_functions.hpp"
#include "interop/interpreter.hpp"
#include "gilkeeper/config/log.hpp"

#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <future>
#include <mutex>
#include <optional>
#include <csignal>
#include <poll.h>
#include <sys/eventfd.h>
#include <thread>
#include <unistd.h>

namespace gk {

bool Executor::submit_nested(Job& job, detail::HostNest& nest, SubmitKey) {
  return nest.push(job);
}

std::string where_of(const std::string& label) {
  // "call m:f", "call <T>.m", "import m", "getattr m:a": the part after the
  // message type; nothing for eval, exec and batches.
  auto space = label.find(' ');
  if (space == std::string::npos || label.compare(0, 5, "batch") == 0)
    return {};
  return label.substr(space + 1);
}

std::string dump_ms(std::chrono::nanoseconds d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
}

std::string describe_queue(const std::deque<Job>& queue, Deadline::time_point now) {
  constexpr std::size_t kShown = 50;
  std::string out = "  queued: " + std::to_string(queue.size()) + (queue.empty() ? "\n" : ", oldest first:\n");
  std::size_t shown = 0;
  for (auto& j : queue) {
    if (++shown > kShown) {
      out += "    ... and " + std::to_string(queue.size() - kShown) + " more\n";
      break;
    }
    out += "    " + j.label + ": queued " + dump_ms(now - j.enqueued)
           + (!j.deadline.is_finite() ? std::string()
              : j.deadline.expired(now) ? std::string(", deadline passed (answered)")
                                        : ", deadline in " + dump_ms(j.deadline.when() - now))
           + "\n";
  }
  return out;
}

Error deadline_error(int slot_state, const std::string& label) {
  Error e = slot_state == ReplySlot::queued
                ? Error::deadline(DeadlinePhase::queued, label + ": deadline passed while queued (it never ran)")
                : Error::deadline(DeadlinePhase::soft, label + " ran past its deadline");
  e.where = where_of(label);
  return e;
}

Error cancelled_error(int slot_state, const std::string& label) {
  Error e(ErrorCode::cancelled, slot_state == ReplySlot::queued
                                    ? label + ": cancelled while queued (it never ran)"
                                    : label + ": cancelled while running (it did not stop in time to say where)");
  e.where = where_of(label);
  return e;
}

namespace {

using clock = std::chrono::steady_clock;

template <class... Fs>
struct overloaded : Fs... {
  using Fs::operator()...;
};
template <class... Fs>
overloaded(Fs...) -> overloaded<Fs...>;

std::uint64_t read_rss_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::uint64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
}

class ThreadExecutor final : public Executor, public std::enable_shared_from_this<ThreadExecutor> {
public:
  ThreadExecutor(const Config& config, ThreadExecutorOptions options)
    : config_(config), options_(options), grace_(config.timeouts.grace),
      shutdown_grace_(config.runtime.shutdown_grace), gil_trace_(config.debug.gil.trace),
      trace_calls_(config.debug.trace_calls), gil_timeout_(config.debug.gil.timeout) {}

  ~ThreadExecutor() override {
    shutdown(shutdown_grace_);
    detail::join_or_detach(thread_);
  }

  Error start() {
    std::promise<Error> started;
    auto ready = started.get_future();
    thread_ = std::thread([this, self = shared_from_this(), p = std::move(started)]() mutable {
      serve(std::move(p), std::move(self));
    });
    Error e = ready.get();
    if (e) {
      thread_.join();
      stopped_ = true;
      return e;
    }
    watchdog_ = std::thread([this] { watch(); });
    if (config_.monitoring.memory_threshold > 0 || config_.debug.memory.detect_leaks)
      monitor_ = std::thread([this] { monitor(); });
    return Error();
  }

  void submit(Job job, SubmitKey) override { enqueue(std::move(job)); }

  void cancel(const std::shared_ptr<ReplySlot>& slot) override {
    std::vector<CancelToken> nested;
    {
      std::lock_guard<std::mutex> g(wd_mutex_);
      if (wd_.seq != 0 && wd_.slot == slot && !wd_.cancelled) {
        wd_.cancelled = true;
        interp_->interrupt(native_, wd_.seq, true);
        return;
      }
      // A request waiting in a host call while a nested one runs: the host
      // calls from it inward are cancelled (and with them what they nest),
      // and it is interrupted when its turn comes back (run_nested).
      for (std::size_t i = 0; i < wd_outer_.size(); ++i)
        if (wd_outer_[i].armed.slot == slot && !wd_outer_[i].cancel_pending) {
          wd_outer_[i].cancel_pending = true;
          for (std::size_t j = i; j < wd_outer_.size(); ++j)
            nested.push_back(wd_outer_[j].token);
          break;
        }
    }
    for (auto& token : nested)
      token.cancel();  // outside the lock: it cancels nested requests here
  }

private:
  // Also the way of a Ref's release, from inside this executor.
  void enqueue(Job job) {
    std::deque<Job> dropped;
    bool queued = detail::admit(stats_, mutex_, stopping_, queue_, std::move(job), [&](const std::string& label) {
      // Under the queue's lock already: no second lock per request.
      if (wedged_.load(std::memory_order_acquire))
        return wedged_error(label);
      bool full = queue_.size() >= config_.runtime.max_queued;
      bool sweep = queue_.size() + 1 >= drop_answered_at_;
      if (full && !sweep) {
        // At the bound, answered requests go first, at most once per
        // kDropAnsweredPeriod (a full queue of live requests is not swept
        // for every refusal). The clock is read only here, off the usual path.
        auto now = clock::now();
        sweep = now >= next_full_sweep_;
        if (sweep)
          next_full_sweep_ = now + kDropAnsweredPeriod;
      }
      if (sweep) {
        drop_answered_locked(dropped);
        full = queue_.size() >= config_.runtime.max_queued;
      }
      if (full)
        return Error(ErrorCode::overloaded, label + ": the runtime's queue holds " + std::to_string(queue_.size())
                                                + " requests ([runtime] max_queued = "
                                                + std::to_string(config_.runtime.max_queued) + ")");
      return Error();
    });
    dropped.clear();
    if (queued)
      cv_.notify_one();
  }

  // Requests already answered while queued (their caller was told at its
  // deadline, or cancelled them) would only be skipped when their turn
  // comes; under overload they would pile up behind a slow call. Once the
  // queue has doubled since the last look, they go now: amortized O(1) per
  // request, and the queue stays within twice what is still wanted. They
  // are counted here as may_start counts them, and destroyed by the caller
  // outside the lock (a Ref among their arguments queues its release).
  // PRECONDITION: mutex_ held.
  void drop_answered_locked(std::deque<Job>& dropped) {
    std::deque<Job> keep;
    for (auto& j : queue_)
      (detail::answered_while_queued(stats_, j) ? dropped : keep).push_back(std::move(j));
    queue_.swap(keep);
    drop_answered_at_ = std::max(kDropAnsweredMin, 2 * queue_.size());
  }

public:
  Stats stats() const override {
    Stats s;
    s.types = stats_.snapshot();
    s.live_refs = live_refs_.load();
    {
      std::lock_guard<std::mutex> lk(mutex_);
      s.queued = queue_.size();
    }
    s.wedged = wedged_.load();
    s.wedged_count = wedged_count_.load();
    s.rss_bytes = read_rss_bytes();
    s.isolation = "thread";
    // interp_ is set before start() returns and never reset.
    s.capability_denials = capability_denials();
    s.python_version = Interpreter::python_version();
    s.free_threaded = Interpreter::free_threaded();
    s.gil_enabled = gil_enabled_.load(std::memory_order_relaxed);
    return s;
  }

  std::string dump(std::chrono::milliseconds wait) override {
    auto now = clock::now();
    auto ms = [](clock::duration d) { return dump_ms(d); };
    std::string out = "interpreter (" + std::string(options_.host_owned_refs ? "worker process " + std::to_string(::getpid())
                                                                            : std::string("thread isolation"))
                      + ", Python " + Interpreter::python_version() + ")\n";
    std::uint64_t seq = 0;
    std::string label;
    clock::time_point started{};
    Deadline deadline;
    bool wedged = false;
    {
      std::lock_guard<std::mutex> g(wd_mutex_);
      seq = wd_.seq;
      label = wd_.label;
      started = wd_.started;
      deadline = wd_.deadline;
      wedged = wd_.wedged;
    }
    if (seq == 0) {
      out += "  running: nothing\n";
    } else {
      out += "  running: " + label + " for " + ms(now - started)
             + (deadline.is_finite() ? ", deadline " + (deadline.expired(now) ? "passed " + ms(now - deadline.when()) + " ago"
                                                                               : "in " + ms(deadline.when() - now))
                                     : std::string(", no deadline"))
             + (wedged ? " (wedged: stuck past its grace period)" : "") + "\n";
      auto sample = interp_ ? interp_->sample_stack(native_, wait) : StackSample{};
      bool same = false;
      {
        std::lock_guard<std::mutex> g(wd_mutex_);
        same = wd_.seq == seq;
      }
      if (!sample.taken)
        out += "  stack: not taken (" + sample.note + ")\n";
      else if (!same)
        out += "  stack: not shown (the request ended while it was taken)\n";
      else {
        out += std::string("  in ") + (sample.in_native ? sample.gil_held ? "native code holding the GIL"
                                                                          : "native code, the GIL released (a blocking call)"
                                                        : "Python code")
               + "\n";
        std::size_t at = 0;
        while (at < sample.stack.size()) {
          auto nl = sample.stack.find('\n', at);
          out += "    " + sample.stack.substr(at, nl == std::string::npos ? std::string::npos : nl - at) + "\n";
          if (nl == std::string::npos)
            break;
          at = nl + 1;
        }
      }
    }
    std::lock_guard<std::mutex> lk(mutex_);
    out += describe_queue(queue_, now);
    return out;
  }

  bool pull_from(std::function<bool()> fetch) override {
    {
      std::lock_guard<std::mutex> lk(mutex_);
      fetch_ = std::move(fetch);
    }
    cv_.notify_one();
    return true;
  }

  std::uint64_t capability_denials() const override {
    return interp_ ? interp_->capability_denials() : 0;
  }

  ShutdownReport shutdown(std::chrono::nanoseconds grace) override {
    std::call_once(shutdown_once_, [&] { report_ = do_shutdown(grace); });
    return report_;
  }

private:
  // -- the interpreter thread -------------------------------------------------

  void serve(std::promise<Error> started, std::shared_ptr<ThreadExecutor> self) {
    native_ = pthread_self();
    pthread_setname_np(native_, "gk-python");
    detail::BlockingScope own_thread(config_.debug.gil.detect_deadlock ? detail::kInterpreterThread : nullptr);
    InterpreterOptions options;
    options.python_path = config_.python.path;
    options.executable = config_.python.executable;
    options.interrupt_signal = config_.runtime.interrupt_signal;
    options.capabilities = config_.capabilities;
    options.epoch = options_.epoch;
    if (options_.answer_at_interrupt)
      options.on_interrupted = [this](Error e) { answer_interrupted(std::move(e)); };
    if (options_.hosts || options_.start_host_call) {
      options.host_call = [this](const std::string& name, List args, const HostCallSite& site) {
        return host_call(name, std::move(args), site);
      };
      if (options_.hosts)
        options.host_names = [hosts = options_.hosts] { return hosts->names(); };
    }
    std::weak_ptr<ThreadExecutor> weak = self;
    auto release = [weak](std::uint64_t id, std::uint64_t epoch) {
      if (auto ex = weak.lock())
        ex->enqueue(release_job(id, epoch));
    };
    if (!options_.host_owned_refs)
      options.release_ref = release;
    options.release_buffer = release;  // a Buffer's object is this interpreter's, in a worker too
    auto interp = Interpreter::start(std::move(options));
    if (!interp) {
      started.set_value(interp.error());
      return;
    }
    interp_ = std::move(*interp);
    if (config_.debug.memory.track || config_.debug.memory.detect_leaks) {
      interp_->acquire_gil();
      interp_->start_tracing_memory();
      interp_->release_gil();
    }
    started.set_value(Error());

    bool have_gil = false;
    for (;;) {
      // One job at a time: every job not running stays in queue_, where
      // shutdown and the wedge find it.
      std::optional<Job> job;
      {
        std::unique_lock<std::mutex> lk(mutex_);
        if ((want_sites_ || want_leak_check_) && !stopping_) {
          // The memory watch's turn, between requests (see monitor()).
          bool sites = std::exchange(want_sites_, false);
          bool leaks = std::exchange(want_leak_check_, false);
          lk.unlock();
          if (!have_gil) {
            interp_->acquire_gil();
            have_gil = true;
          }
          watch_memory(sites, leaks);
          continue;
        }
        if (queue_.empty() && !stopping_) {
          if (have_gil) {
            // Idle: let Python threads run while we wait.
            lk.unlock();
            interp_->release_gil();
            have_gil = false;
            continue;
          }
          if (fetch_) {
            // Pull the next request ourselves (see pull_from).
            auto fetch = fetch_;
            lk.unlock();
            bool more = fetch();
            lk.lock();
            if (!more)
              fetch_ = nullptr;
            continue;
          }
          cv_.wait(lk, [&] { return !queue_.empty() || stopping_ || fetch_ || want_sites_ || want_leak_check_; });
          continue;
        }
        if (queue_.empty() && stopping_)
          break;
        job.emplace(std::move(queue_.front()));
        queue_.pop_front();
      }
      run_job(*job, have_gil);
      // Destroyed outside the queue lock: a Ref dropped here queues its
      // release.
      job.reset();
    }
    if (!have_gil)
      interp_->acquire_gil();
    ShutdownReport report = interp_->finalize(shutdown_grace_);
    finished_.set_value(std::move(report));
    (void)self;  // keeps this executor alive until the thread ends
  }

  void run_job(Job& job, bool& have_gil) {
    auto now = clock::now();
    // Jobs this thread already took from the queue are not seen by shutdown
    // or by the wedge: answer them here.
    if (job.slot && stopping_flag_.load(std::memory_order_acquire)) {
      finish(job, Expected<Value>(Error(ErrorCode::runtime_stopped, job.label + ": the runtime stopped before it ran")));
      return;
    }
    if (Error expired; !detail::may_start(stats_, job, now, expired)) {
      if (expired)
        finish(job, Expected<Value>(std::move(expired)));
      return;
    }
    if (job.slot && job.slot->cancel_requested()) {
      // Cancelled as it was taken from the queue: it does not run.
      finish(job, Expected<Value>(cancelled_error(ReplySlot::queued, job.label)));
      return;
    }
    if (!have_gil) {
      interp_->acquire_gil();
      have_gil = true;
    }
    auto started = clock::now();
    Deadline deadline = job.run_deadline(started);
    // A batch whose calls have deadlines of their own arms each call.
    bool per_call = deadline != job.deadline;
    if (gil_trace_)
      trace_gil("gil_take", job, started, std::chrono::duration_cast<std::chrono::nanoseconds>(started - job.enqueued));
    if (!per_call) {
      auto seq = ++seq_;
      arm(seq, deadline, job.label, job.slot, job.type, started);
      interp_->begin_request(seq, job.label, deadline);
      // Cancelled between its start and its arming: interrupted at once.
      if (job.slot && job.slot->cancel_requested())
        cancel(job.slot);
    }
    // A batch is answered when it returns: its reply holds every call's result.
    interrupted_job_ = std::holds_alternative<BatchRequest>(job.request) ? nullptr : &job;
    interrupted_deadline_ = deadline;
    AnyReply reply = dispatch(job);
    interrupted_job_ = nullptr;
    if (!per_call) {
      interp_->end_request();
      disarm();
    }
    // Drop the request's values now: a Ref among its arguments whose last
    // copy was here queues its release before the caller hears back.
    { AnyRequest spent = std::move(job.request); }
    live_refs_.store(interp_->live_refs());
    auto ended = clock::now();
    stats_.timing(job.type, started - job.enqueued, ended - started);
    if (gil_trace_ || trace_calls_)
      trace_end(job, reply, started, ended);
    if (Interpreter::free_threaded() && !gil_enabled_.load(std::memory_order_relaxed) && interp_->gil_enabled())
      gil_turned_on(job);

    if (deadline.expired(ended)) {
      detail::mark_late(stats_, job, reply);
    } else if (auto* v = std::get_if<Expected<Value>>(&reply)) {
      stopped_by_shutdown(*v, deadline, ended, "", job.label);
    }
    finish(job, std::move(reply));
  }

  void finish(Job& job, AnyReply&& reply) { detail::reply_to(stats_, job, std::move(reply)); }

  // -- host calls (docs/host-functions.md) --------------------------------------

  // Python called gilkeeper.host.NAME: on the calling Python thread, the GIL
  // released. The host function runs on a gk-host thread (or, in a worker
  // process, at the host); this thread waits for it and, meanwhile, runs the
  // requests it makes on the call's behalf (re-entrancy). The wait ends at
  // the request's interrupt (its deadline, a cancel): then Python raises
  // that interrupt's exception and the host function's token is cancelled.
  Expected<Value> host_call(const std::string& name, List args, const HostCallSite& site) {
    Expected<std::shared_ptr<detail::HostNest>> nest = Error();
    if (options_.start_host_call) {
      if (!site.request_thread)
        return Error(ErrorCode::bad_request, "in process isolation a host function is called only from the thread "
                                             "that runs requests, not from a Python thread of the code's own");
      nest = options_.start_host_call(name, std::move(args), site.deadline);
    } else {
      // The interpreter's thread waits on an eventfd of its own; a Python
      // thread of the code's on one made for its call.
      nest = options_.hosts->call(this, name, std::move(args), site.deadline, site.request_thread,
                                  site.request_thread ? wake_fd() : -1);
      if (nest && site.request_thread)
        (*nest)->fd_keep = host_wake_;
    }
    if (!nest)
      return nest.error();
    return wait_host(**nest, site);
  }

  Expected<Value> wait_host(detail::HostNest& nest, const HostCallSite& site) {
    // The interrupt signal writes to this thread's eventfd
    // (wake_on_interrupt), which the wait polls beside the call's own fd (a
    // worker's socket): an interrupt aimed between the check below and the
    // poll still wakes it.
    const int signo = site.request_thread ? interp_->signal_number() : 0;
    const int wake = signo > 0 ? wake_fd() : -1;
    if (wake >= 0)
      Interpreter::wake_on_interrupt(wake);
    Expected<Value> out = Error();
    for (;;) {
      auto next = nest.take();
      if (next.result) {
        out = std::move(*next.result);
        break;
      }
      bool interrupted = site.seq != 0 && Interpreter::interrupt_pending(site.seq);
      // Without an interrupt to wait for (none configured, or no request),
      // the deadline ends the wait; with one, the watchdog aims it at the
      // deadline, and the wait ends on it (a margin covers a late watchdog).
      const bool by_signal = signo > 0 && site.seq != 0;
      bool late = site.deadline.is_finite()
                  && (by_signal ? site.deadline.expired(clock::now() - kInterruptMargin) : site.deadline.expired());
      if (interrupted || late || stopping_flag_.load(std::memory_order_acquire)) {
        out = Error(interrupted || late ? ErrorCode::deadline_exceeded : ErrorCode::runtime_stopped,
                    interrupted || late ? "the calling request's deadline passed (or it was cancelled)"
                                        : "the runtime stopped");
        nest.token.cancel();
        if (nest.on_abandon)
          nest.on_abandon();
        break;
      }
      if (next.job) {
        run_nested(*next.job, nest);
        next.job.reset();  // destroyed here: a Ref in it queues its release
        if (wake >= 0)
          Interpreter::wake_on_interrupt(wake);  // a nested host call cleared it
        continue;
      }
      pollfd p[2] = {{nest.fd, POLLIN, 0}, {wake, POLLIN, 0}};
      nfds_t polled = wake >= 0 && wake != nest.fd ? 2 : 1;
      timespec limit{};
      const timespec* timeout = nullptr;
      if (site.deadline.is_finite()) {
        auto left = std::max(site.deadline.remaining() + (by_signal ? kInterruptMargin : clock::duration(0)),
                             std::chrono::nanoseconds(0));
        limit.tv_sec = static_cast<time_t>(left.count() / 1000000000);
        limit.tv_nsec = static_cast<long>(left.count() % 1000000000);
        timeout = &limit;
      }
      int n = ::ppoll(p, polled, timeout, nullptr);
      if (n > 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR)))
        nest.drain();
      if (n > 0 && polled == 2 && (p[1].revents & POLLIN)) {
        std::uint64_t count;
        ssize_t ignored = ::read(wake, &count, sizeof count);
        (void)ignored;
      }
    }
    if (wake >= 0)
      Interpreter::wake_on_interrupt(-1);
    // Requests still queued for this call: their host function gave up on
    // them or is being abandoned; they are answered, never run here.
    for (auto& job : nest.close())
      detail::refuse(stats_, job, Error(ErrorCode::cancelled, job.label + ": the host call it was made for ("
                                                                 + nest.name + ") ended before it ran"));
    return out;
  }

  static constexpr auto kInterruptMargin = std::chrono::milliseconds(100);
  // The interpreter thread's eventfd for host calls (made on first use; the
  // nests that use it keep it open, so a host function that outlives this
  // executor never writes to a reused descriptor).
  struct WakeFd {
    int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    ~WakeFd() {
      if (fd >= 0)
        ::close(fd);
    }
  };
  std::shared_ptr<WakeFd> host_wake_;
  int wake_fd() {
    if (!host_wake_)
      host_wake_ = std::make_shared<WakeFd>();
    return host_wake_->fd;
  }

  // Runs a request nested in a host call: the request that waits for the
  // call is set aside (its arming, its interrupt state) and restored after.
  void run_nested(Job& job, detail::HostNest& nest) {
    auto outer_job = interrupted_job_;
    auto outer_deadline = interrupted_deadline_;
    {
      std::lock_guard<std::mutex> g(wd_mutex_);
      wd_outer_.push_back(Waiting{std::move(wd_), nest.token, false});
      wd_ = Armed{};
    }
    bool have_gil = false;
    run_job(job, have_gil);
    bool reinterrupt = false, as_cancel = false;
    {
      std::lock_guard<std::mutex> g(wd_mutex_);
      Waiting w = std::move(wd_outer_.back());
      wd_outer_.pop_back();
      wd_ = std::move(w.armed);
      if (w.cancel_pending)
        wd_.cancelled = true;
      // The nested request's end forgot any interrupt aimed at this one:
      // aim it again.
      reinterrupt = wd_.seq != 0 && (wd_.interrupted || wd_.cancelled);
      as_cancel = wd_.cancelled;
    }
    if (wd_.seq != 0) {
      if (!have_gil) {
        interp_->acquire_gil();
        have_gil = true;
      }
      interp_->begin_request(wd_.seq, wd_.label, wd_.deadline);
    }
    interrupted_job_ = outer_job;
    interrupted_deadline_ = outer_deadline;
    if (have_gil)
      interp_->release_gil();
    if (reinterrupt)
      interp_->interrupt(native_, wd_.seq, as_cancel);
    wd_cv_.notify_one();  // the watchdog looks at the restored deadline
  }

  // A soft interrupt (deadline, cancel, shutdown) raised in the running
  // request: its caller is answered now, with where the code was, by the
  // rules of the request's own reply (run_job), which then finds the slot
  // done. On this thread, inside dispatch, from the signal handler.
  void answer_interrupted(Error e) {
    Job* job = interrupted_job_;
    if (!job || !job->slot)
      return;
    if (e.where.empty())
      e.where = where_of(job->label);
    Expected<Value> reply(std::move(e));
    stopped_by_shutdown(reply, interrupted_deadline_, clock::now(), "", job->label);
    job->slot->complete(std::move(reply));
  }

  AnyReply dispatch(Job& job) {
    return std::visit(overloaded{[&](BatchRequest& b) -> AnyReply { return run_batch(b, job); },
                                 [&](auto& r) -> AnyReply { return interp_->run(r); }},
                      job.request);
  }

  // Each call of a batch gets its own result. Without a call timeout, the
  // batch's deadline interrupts whichever call is running and a call's own
  // (earlier) deadline is checked before and after it runs; with one, each
  // call is armed on its own (see BatchRequest).
  BatchReply run_batch(BatchRequest& b, const Job& job) {
    BatchReply out;
    out.results.reserve(b.calls.size());
    const bool per_call = b.call_timeout.count() > 0;
    if (per_call) {
      // The watchdog's verdict on a call stuck in native code keeps the
      // results of the calls before it (see watch()).
      std::lock_guard<std::mutex> g(wd_mutex_);
      wd_.batch = &out;
      wd_.batch_size = b.calls.size();
    }
    interp_->begin_batch();
    // One clock read per call: the time after a call is the time before the
    // next one.
    auto now = clock::now();
    // A call's label, as submit() makes it: "call m:f", "call <T>.m".
    auto label_of = [](const CallRequest& c) {
      return c.self ? "call <" + c.self.type_name() + ">" + (c.target.empty() ? "" : "." + c.target) : "call " + c.target;
    };
    std::string label;  // label_of(call), made again only when the target changes
    for (std::size_t i = 0; i < b.calls.size(); ++i) {
      auto& c = b.calls[i];
      if (stopping_flag_.load(std::memory_order_acquire)) {
        // Shutting down: the calls left do not start.
        Error e(ErrorCode::runtime_stopped, label_of(c) + ": the runtime stopped before it ran");
        e.where = where_of(label_of(c));
        out.results.emplace_back(std::move(e));
        continue;
      }
      if (job.slot && job.slot->cancel_requested()) {
        // Cancelled: the calls left do not start.
        out.results.emplace_back(cancelled_error(ReplySlot::queued, label_of(c)));
        continue;
      }
      if (per_call) {
        if (c.self || label.size() != c.target.size() + 5 || label.compare(5, std::string::npos, c.target) != 0)
          label = label_of(c);
        if (job.deadline.expired(now) || c.deadline.expired(now)) {
          stats_.missed(job.type, DeadlinePhase::queued);
          out.results.emplace_back(deadline_error(ReplySlot::queued, label));
          continue;
        }
        Deadline d = c.deadline.min(Deadline::at(now + b.call_timeout));
        auto seq = ++seq_;
        arm(seq, d, label, job.slot, "call", now);
        interp_->begin_request(seq, label, d);
        if (job.slot && job.slot->cancel_requested())
          cancel(job.slot);
        auto r = interp_->run(c);
        interp_->end_request();
        now = clock::now();
        stopped_by_shutdown(r, d, now, "call ", c.target);
        if (d.expired(now)) {
          stats_.missed(job.type, DeadlinePhase::soft);
          if (r.has_value())
            r = deadline_error(ReplySlot::running, label);
        }
        {
          std::lock_guard<std::mutex> g(wd_mutex_);
          out.results.push_back(std::move(r));
        }
        disarm();
        // Answered already (the wedge's verdict, or the caller gave up):
        // the calls left were reported as not run, so they must not run.
        if (job.slot && job.slot->state() == ReplySlot::done)
          break;
        continue;
      }
      Deadline d = job.deadline.min(c.deadline);
      if (d.expired(now)) {
        out.results.emplace_back(deadline_error(ReplySlot::queued, label_of(c)));
        continue;
      }
      auto r = interp_->run(c);
      if (d.is_finite())
        now = clock::now();
      stopped_by_shutdown(r, d, now, "call ", c.target);
      if (d.expired(now) && r.has_value())
        r = deadline_error(ReplySlot::running, label_of(c));
      out.results.push_back(std::move(r));
    }
    interp_->end_batch();
    if (per_call) {
      std::lock_guard<std::mutex> g(wd_mutex_);
      wd_.batch = nullptr;
    }
    return out;
  }

  // A request or a batch's call interrupted by shutdown, not by its deadline,
  // says so, keeping the Python type and traceback of where it was. Its label
  // is `prefix + name`, made only when it applies.
  void stopped_by_shutdown(Expected<Value>& r, const Deadline& d, clock::time_point now, const char* prefix,
                           const std::string& name) {
    if (r || r.error().code != ErrorCode::deadline_exceeded || d.expired(now)
        || !stopping_flag_.load(std::memory_order_acquire))
      return;
    Error e = r.error();
    e.code = ErrorCode::runtime_stopped;
    e.phase = DeadlinePhase::none;
    e.message = prefix + name + ": interrupted because the runtime is stopping";
    r = std::move(e);
  }

  Error wedged_error(const std::string& label) {
    std::lock_guard<std::mutex> g(wd_mutex_);
    return wedged_error_locked(label);
  }

  // PRECONDITION: wd_mutex_ held.
  Error wedged_error_locked(const std::string& label) const {
    return Error(ErrorCode::wedged,
                 label + ": the runtime is wedged: " + wd_.label
                     + " is stuck (in native code or ignoring interrupts) past its deadline "
                       "and grace period; requests fail fast until it returns");
  }

  // -- the memory watch (docs/observability.md) --------------------------------

  // gk-monitor: samples this process's RSS every `monitoring.interval`
  // (`memory_threshold`) and asks the interpreter's thread for a leak check
  // every `debug.memory.check_interval` (`detect_leaks`).
  void monitor() {
    pthread_setname_np(pthread_self(), "gk-monitor");
    const auto threshold = config_.monitoring.memory_threshold;
    const bool leaks = config_.debug.memory.detect_leaks;
    auto never = clock::time_point::max();
    auto next_rss = threshold > 0 ? clock::now() + config_.monitoring.interval : never;
    auto next_leak = leaks ? clock::now() + config_.debug.memory.check_interval : never;
    bool above = false;
    clock::time_point leak_started{};
    std::unique_lock<std::mutex> lk(mon_mutex_);
    while (!mon_stop_) {
      auto wake_at = std::min(next_rss, next_leak);
      auto woken = [&] { return mon_stop_ || (next_leak == never && leak_done_); };
      if (wake_at == never)
        mon_cv_.wait(lk, woken);
      else
        mon_cv_.wait_until(lk, wake_at, woken);
      if (mon_stop_)
        break;
      auto now = clock::now();
      bool sites = false, leak_check = false;
      if (now >= next_rss) {
        next_rss = now + config_.monitoring.interval;
        auto rss = read_rss_bytes();
        if (!above && rss > threshold) {
          above = true;
          LogEvent e;
          e.level = LogLevel::warn;
          e.name = "memory_threshold";
          e.message = "the interpreter's process uses " + std::to_string(rss >> 20) + " MiB, above "
                      "monitoring.memory_threshold (" + std::to_string(threshold >> 20) + " MiB)"
                      + (config_.debug.memory.track || leaks ? "; the top allocation sites follow (memory_sites)"
                                                             : "; set [debug.memory] track = true for the allocation sites");
          e.with("rss_bytes", rss).with("threshold_bytes", threshold).with("pid", static_cast<std::int64_t>(::getpid()));
          add_process(e);
          log::emit(std::move(e));
          sites = config_.debug.memory.track || leaks;
        } else if (above && rss < threshold - threshold / 10) {
          above = false;  // below again (10% under, not to flap): the next crossing alerts again
        }
      }
      if (now >= next_leak) {
        // The next check is an interval after this one started, but at
        // least half an interval after it ended (leak_done_), so that slow
        // checks never crowd out requests.
        next_leak = never;
        leak_started = now;
        leak_check = true;
      }
      if (next_leak == never && leaks && leak_done_) {
        next_leak = std::max(leak_started + config_.debug.memory.check_interval,
                             *leak_done_ + config_.debug.memory.check_interval / 2);
        leak_done_.reset();
      }
      if (sites || leak_check) {
        {
          std::lock_guard<std::mutex> g(mutex_);
          want_sites_ = want_sites_ || sites;
          want_leak_check_ = want_leak_check_ || leak_check;
        }
        cv_.notify_one();
      }
    }
  }

  static std::string sites_text(const std::vector<AllocationSite>& sites, bool grown) {
    std::string out;
    for (auto& s : sites)
      out += s.file + ":" + std::to_string(s.line) + ": " + (grown ? "+" : "") + std::to_string(s.size / 1024)
             + " KiB in " + (grown ? "+" : "") + std::to_string(s.count) + " blocks\n";
    return out;
  }

  // On the interpreter's thread, with the GIL, between requests.
  void watch_memory(bool sites, bool leaks) {
    const int top = config_.debug.memory.top;
    if (sites) {
      auto found = interp_->top_allocations(top);
      LogEvent e;
      e.level = LogLevel::warn;
      e.name = "memory_sites";
      e.message = found.empty() ? std::string("no allocation sites: tracemalloc is off ([debug.memory] track)")
                                : "the top " + std::to_string(found.size()) + " allocation sites of Python's memory, first "
                                      + found[0].file + ":" + std::to_string(found[0].line);
      e.with("sites", sites_text(found, false));
      if (!found.empty())
        e.with("top_site", found[0].file + ":" + std::to_string(found[0].line));
      add_process(e);
      log::emit(std::move(e));
    }
    if (leaks) {
      auto check = interp_->check_leaks(top);
      ref_history_.push_back(interp_->live_refs());
      if (ref_history_.size() > 3)
        ref_history_.erase(ref_history_.begin());
      auto& t = check.totals;
      // Growth at each of the last two looks, at least kLeakMinGrowth in all.
      bool memory_grows = t.size() == 3 && t[0] < t[1] && t[1] < t[2] && t[2] - t[0] >= kLeakMinGrowth;
      auto& r = ref_history_;
      bool refs_grow = r.size() == 3 && r[0] < r[1] && r[1] < r[2] && r[2] - r[0] >= kLeakMinRefs;
      if (memory_grows || refs_grow) {
        LogEvent e;
        e.level = LogLevel::warn;
        e.name = "leak_suspected";
        std::string what;
        if (memory_grows)
          what = "Python's traced memory grew at each of the last two checks, by "
                 + std::to_string((t[2] - t[0]) / 1024) + " KiB"
                 + (check.grown.empty() ? std::string()
                                        : "; most at " + check.grown[0].file + ":" + std::to_string(check.grown[0].line));
        if (refs_grow)
          what += std::string(what.empty() ? "" : "; ") + "live Refs grew from " + std::to_string(r[0]) + " to "
                  + std::to_string(r[2]);
        e.message = what;
        e.with("memory_grows", memory_grows).with("refs_grow", refs_grow);
        if (t.size() == 3)
          e.with("traced_bytes", static_cast<std::int64_t>(t[2])).with("growth_bytes", static_cast<std::int64_t>(t[2] - t[0]));
        e.with("live_refs", static_cast<std::int64_t>(r.back()));
        if (!check.grown.empty())
          e.with("top_site", check.grown[0].file + ":" + std::to_string(check.grown[0].line));
        e.with("sites", sites_text(check.grown, true));
        add_process(e);
        log::emit(std::move(e));
      }
      {
        std::lock_guard<std::mutex> g(mon_mutex_);
        leak_done_ = clock::now();
      }
      mon_cv_.notify_one();
    }
  }

  // -- the watchdog -------------------------------------------------------------

  void arm(std::uint64_t seq, Deadline deadline, const std::string& label, std::shared_ptr<ReplySlot> slot,
           const std::string& type, clock::time_point started) {
    bool wake = false;
    // The slow-call threshold: by target and type only when the config has
    // such entries (the usual case costs no lookup).
    const auto& slow = config_.monitoring.slow_call;
    Timeout threshold = slow.per_type.empty() && slow.targets.empty()
                            ? slow.default_threshold
                            : resolve_threshold(slow, type, slow.targets.empty() ? std::string() : where_of(label));
    auto slow_at = threshold.infinite ? clock::time_point::max() : started + threshold.value;
    auto gil_at = gil_timeout_ ? started + *gil_timeout_ : clock::time_point::max();
    {
      std::lock_guard<std::mutex> g(wd_mutex_);
      wd_.seq = seq;
      wd_.slot = std::move(slot);
      wd_.deadline = deadline;
      wd_.label = label;
      wd_.type = type;
      wd_.started = started;
      wd_.slow_at = slow_at;
      wd_.slow_threshold = threshold.value;
      wd_.gil_at = gil_at;
      wd_.interrupted = false;
      wd_.native_probed = false;
      wd_.cancelled = false;
      wd_.wedged = false;
      auto first = std::min(slow_at, gil_at);
      if (deadline.is_finite())
        first = std::min(first, deadline.when());
      wake = first < wd_wake_;
    }
    if (wake)
      wd_cv_.notify_one();
  }

  // -- monitoring (docs/observability.md) ---------------------------------------

  // A request took the interpreter (gil_take) or left it (in trace_end).
  // On the interpreter's thread: a queue push each (the logger writes).
  void trace_gil(const char* name, const Job& job, clock::time_point, std::chrono::nanoseconds queued) {
    LogEvent e;
    e.level = LogLevel::debug;
    e.name = name;
    e.message = job.label + " takes the interpreter";
    e.with("label", job.label).with("type", job.type).with("queued_us", queued.count() / 1000);
    add_process(e);
    log::emit(std::move(e));
  }

  void trace_end(const Job& job, const AnyReply& reply, clock::time_point started, clock::time_point ended) {
    auto held = std::chrono::duration_cast<std::chrono::microseconds>(ended - started).count();
    auto queued = std::chrono::duration_cast<std::chrono::microseconds>(started - job.enqueued).count();
    const Error* error = nullptr;
    if (auto* v = std::get_if<Expected<Value>>(&reply); v && !v->has_value())
      error = &v->error();
    std::string outcome = error ? to_string(error->code) : "ok";
    if (gil_trace_) {
      LogEvent e;
      e.level = LogLevel::debug;
      e.name = "gil_leave";
      e.message = job.label + " leaves the interpreter after " + std::to_string(held) + " us";
      e.with("label", job.label).with("type", job.type).with("held_us", static_cast<std::int64_t>(held));
      add_process(e);
      log::emit(std::move(e));
    }
    if (trace_calls_) {
      LogEvent e;
      e.level = LogLevel::debug;
      e.name = "call_trace";
      e.message = job.label + ": " + outcome + " (queued " + std::to_string(queued) + " us, ran "
                  + std::to_string(held) + " us)";
      e.with("label", job.label)
          .with("type", job.type)
          .with("target", where_of(job.label))
          .with("outcome", outcome)
          .with("queued_us", static_cast<std::int64_t>(queued))
          .with("run_us", static_cast<std::int64_t>(held));
      add_process(e);
      log::emit(std::move(e));
    }
  }

  // A free-threaded build whose GIL an import just turned on: the
  // interpreter is serialized again (an extension that does not declare
  // itself safe without it). Said once.
  void gil_turned_on(const Job& job) {
    gil_enabled_.store(true, std::memory_order_relaxed);
    LogEvent e;
    e.level = LogLevel::warn;
    e.name = "gil_enabled";
    e.message = "the GIL of this free-threaded interpreter was turned on during " + job.label
                + " (an extension module imported then does not declare itself safe without it)";
    e.with("label", job.label);
    add_process(e);
    log::emit(std::move(e));
  }

  // In a worker process, events name it (the host adds its own view too).
  void add_process(LogEvent& e) const {
    if (options_.host_owned_refs)
      e.with("worker_pid", static_cast<std::int64_t>(::getpid()));
  }

  // A running request passed its slow-call threshold and/or the interpreter
  // hold timeout: its stack, taken now, goes into one event each.
  // On the watchdog thread, without wd_mutex_.
  void report_running(std::uint64_t seq, bool slow, bool gil, const std::string& label, const std::string& type,
                      clock::time_point started, std::chrono::nanoseconds threshold, Deadline deadline) {
    auto sample = interp_->sample_stack(native_, std::chrono::milliseconds(20));
    {
      std::lock_guard<std::mutex> g(wd_mutex_);
      if (wd_.seq != seq)
        return;  // it ended meanwhile: the stack would be another's
    }
    auto now = clock::now();
    auto elapsed_ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - started).count();
    std::string target = where_of(label);
    std::string state;
    if (!sample.taken)
      state = "its stack could not be taken (" + sample.note + ")";
    else if (sample.in_native)
      state = std::string("it is in native code") + (sample.gil_held ? " holding the GIL" : " (the GIL released: a blocking call)")
              + (sample.where.empty() ? std::string() : ", called from " + sample.where);
    else
      state = "it is in Python code" + (sample.where.empty() ? std::string() : " at " + sample.where);
    auto make = [&](const char* name, const std::string& what, std::chrono::nanoseconds limit) {
      LogEvent e;
      e.level = LogLevel::warn;
      e.name = name;
      e.message = label + " " + what + " " + format_duration(std::chrono::milliseconds(elapsed_ms)) + " ("
                  + std::string(name == std::string("slow_call") ? "monitoring.slow_call" : "debug.gil.timeout") + " "
                  + format_duration(limit) + "); " + state;
      e.with("label", label)
          .with("type", type)
          .with("target", target)
          .with("elapsed_ms", static_cast<std::int64_t>(elapsed_ms))
          .with("threshold_ms", static_cast<std::int64_t>(
                                    std::chrono::duration_cast<std::chrono::milliseconds>(limit).count()));
      if (deadline.is_finite())
        e.with("deadline_in_ms", static_cast<std::int64_t>(
                                     std::chrono::duration_cast<std::chrono::milliseconds>(deadline.when() - now).count()));
      e.with("in_native", sample.in_native).with("gil_held", sample.gil_held).with("where", sample.where);
      if (sample.taken)
        e.with("stack", sample.stack);
      add_process(e);
      return e;
    };
    if (slow) {
      stats_.slow(target);
      log::emit(make("slow_call", "has run", threshold));
    }
    if (gil && gil_timeout_)
      log::emit(make("gil_timeout", "has held the interpreter for", *gil_timeout_));
  }

  void disarm() {
    std::lock_guard<std::mutex> g(wd_mutex_);
    wd_.seq = 0;
    wd_.slot.reset();
    // Under the watchdog's lock: it sets wedged only while the call runs.
    wedged_.store(false, std::memory_order_release);
  }

  void watch() {
    pthread_setname_np(pthread_self(), "gk-watchdog");
    std::unique_lock<std::mutex> lk(wd_mutex_);
    while (!wd_stop_) {
      auto never = clock::time_point::max();
      if (wd_.seq != 0 && !wd_.wedged) {
        // Monitoring first: a slow call's stack is taken while it runs.
        auto alert_at = std::min(wd_.slow_at, wd_.gil_at);
        if (alert_at != never && clock::now() >= alert_at) {
          auto now = clock::now();
          bool slow = now >= wd_.slow_at, gil = now >= wd_.gil_at;
          if (slow)
            wd_.slow_at = never;
          if (gil)
            wd_.gil_at = never;
          auto seq = wd_.seq;
          auto label = wd_.label, type = wd_.type;
          auto started = wd_.started;
          auto threshold = wd_.slow_threshold;
          auto deadline = wd_.deadline;
          lk.unlock();
          report_running(seq, slow, gil, label, type, started, threshold, deadline);
          lk.lock();
          continue;
        }
      }
      auto alert_at = wd_.seq == 0 || wd_.wedged ? never : std::min(wd_.slow_at, wd_.gil_at);
      if (wd_.seq == 0 || !wd_.deadline.is_finite() || wd_.wedged) {
        wd_wake_ = alert_at;
        if (alert_at == never)
          wd_cv_.wait(lk);
        else
          wd_cv_.wait_until(lk, alert_at);
        continue;
      }
      auto now = clock::now();
      if (!wd_.interrupted) {
        if (now >= wd_.deadline.when()) {
          wd_.interrupted = true;
          interp_->interrupt(native_, wd_.seq);
          continue;
        }
        wd_wake_ = wd_.deadline.when();
      } else {
        auto wedge_at = wd_.deadline.when() + grace_;
        if (options_.on_stuck_in_native && !wd_.native_probed) {
          auto probe = Interpreter::probe_native(wd_.seq, kNativeProbe);
          if (probe == NativeProbe::stuck) {
            wd_.native_probed = true;
            auto running = wd_.slot;
            lk.unlock();
            options_.on_stuck_in_native(running);
            lk.lock();
            continue;
          }
          if (probe == NativeProbe::undelivered && now < wedge_at) {
            // Look again soon: the signal may not have arrived yet (on a
            // loaded machine, it can take milliseconds).
            wd_wake_ = std::min(wedge_at, now + kNativeProbe / 2);
            wd_cv_.wait_until(lk, wd_wake_);
            continue;
          }
          wd_.native_probed = true;  // taken by Python code, or a blocking call: the usual way
        }
        if (now >= wedge_at && options_.exit_when_stuck)
          std::_Exit(kStuckExitStatus);  // the host reaps and replaces this process
        if (now >= wedge_at) {
          wd_.wedged = true;
          // Set while the stuck call is still armed (disarm clears it under
          // this lock), so a call returning now cannot leave it set.
          wedged_.store(true, std::memory_order_release);
          wedged_count_.fetch_add(1);
          auto running = wd_.slot;
          auto label = wd_.label;
          Error stuck = Error::deadline(DeadlinePhase::soft, label + " is stuck past its deadline and grace period "
                                                                     "(native code that ignores interrupts); the "
                                                                     "runtime is wedged until it returns");
          // In a batch: the calls before the stuck one keep their results,
          // the ones after it are reported as not run.
          std::optional<BatchReply> partial;
          if (wd_.batch) {
            partial.emplace();
            partial->results = wd_.batch->results;
            partial->results.emplace_back(stuck);
            while (partial->results.size() < wd_.batch_size)
              partial->results.emplace_back(wedged_error_locked("not run"));
          }
          lk.unlock();
          // The runtime's verdict on the stuck call: its caller (a pipeline
          // waits for the verdict) hears now, not when native code returns.
          if (running) {
            if (partial)
              running->complete(std::move(*partial));
            else
              running->complete(Expected<Value>(std::move(stuck)));
          }
          fail_stranded();
          lk.lock();
          continue;
        }
        wd_wake_ = wedge_at;
      }
      wd_wake_ = std::min(wd_wake_, alert_at);
      wd_cv_.wait_until(lk, wd_wake_);
    }
  }

  // The runtime just became wedged: queued requests fail fast.
  void fail_stranded() {
    std::deque<Job> stranded;
    {
      std::lock_guard<std::mutex> lk(mutex_);
      // Release jobs stay queued: they run when the call returns.
      std::deque<Job> keep;
      for (auto& j : queue_)
        (j.slot ? stranded : keep).push_back(std::move(j));
      queue_.swap(keep);
    }
    for (auto& j : stranded)
      detail::refuse(stats_, j, wedged_error(j.label));
  }

  // -- shutdown -------------------------------------------------------------

  ShutdownReport do_shutdown(std::chrono::nanoseconds grace) {
    if (stopped_ || !thread_.joinable())
      return ShutdownReport{};
    std::deque<Job> stranded;
    {
      std::lock_guard<std::mutex> lk(mutex_);
      stopping_ = true;
      stopping_flag_.store(true, std::memory_order_release);
      stranded.swap(queue_);
    }
    cv_.notify_all();
    for (auto& j : stranded)
      detail::refuse(stats_, j, Error(ErrorCode::runtime_stopped, j.label + ": the runtime stopped before it ran"));
    stranded.clear();
    {
      // Interrupt the running call, if any, so that shutdown is not held up
      // by a sleeping or looping call.
      std::lock_guard<std::mutex> g(wd_mutex_);
      if (wd_.seq != 0)
        interp_->interrupt(native_, wd_.seq);
    }
    auto done = finished_.get_future();
    // finalize() itself waits up to `grace` for Python threads.
    auto bound = grace + std::chrono::seconds(2);
    ShutdownReport report;
    if (done.wait_for(bound) == std::future_status::ready) {
      report = done.get();
      thread_.join();
    } else {
      report.finalized = false;
      report.message = "the interpreter did not stop within "
                       + std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(bound).count())
                       + "ms (a call is stuck in native code); it was left running";
      thread_.detach();
      // The running call may never return: its caller still gets its reply.
      std::shared_ptr<ReplySlot> running;
      std::string label;
      {
        std::lock_guard<std::mutex> g(wd_mutex_);
        running = wd_.slot;
        label = wd_.label;
      }
      if (running)
        running->complete(Expected<Value>(Error(ErrorCode::runtime_stopped,
                                                label + ": the runtime stopped while this call was stuck")));
    }
    {
      std::lock_guard<std::mutex> g(wd_mutex_);
      wd_stop_ = true;
    }
    wd_cv_.notify_all();
    if (watchdog_.joinable())
      watchdog_.join();
    {
      std::lock_guard<std::mutex> g(mon_mutex_);
      mon_stop_ = true;
    }
    mon_cv_.notify_all();
    if (monitor_.joinable())
      monitor_.join();
    stopped_ = true;
    return report;
  }

  Config config_;
  ThreadExecutorOptions options_;
  std::chrono::nanoseconds grace_;
  std::chrono::nanoseconds shutdown_grace_;
  const bool gil_trace_;
  const bool trace_calls_;
  const std::optional<std::chrono::nanoseconds> gil_timeout_;
  std::unique_ptr<Interpreter> interp_;
  pthread_t native_{};
  std::thread thread_;
  std::thread watchdog_;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  // The queue length at which drop_answered() looks again.
  static constexpr std::size_t kDropAnsweredMin = 1024;
  static constexpr auto kDropAnsweredPeriod = std::chrono::milliseconds(10);
  std::size_t drop_answered_at_ = kDropAnsweredMin;
  clock::time_point next_full_sweep_{};
  std::function<bool()> fetch_;  // see pull_from
  // Asked of the interpreter's thread by the memory watch (under mutex_).
  bool want_sites_ = false;
  bool want_leak_check_ = false;
  // Live Refs at the last three leak checks (interpreter thread only).
  std::vector<std::uint64_t> ref_history_;
  static constexpr std::int64_t kLeakMinGrowth = 1 << 20;
  static constexpr std::uint64_t kLeakMinRefs = 100;
  std::thread monitor_;
  std::mutex mon_mutex_;
  std::condition_variable mon_cv_;
  bool mon_stop_ = false;
  // When the interpreter's thread finished the last leak check (mon_mutex_).
  std::optional<clock::time_point> leak_done_;
  bool stopping_ = false;
  std::atomic<bool> stopping_flag_{false};  // stopping_, readable without the lock
  std::atomic<bool> stopped_{false};

  std::mutex wd_mutex_;
  std::condition_variable wd_cv_;
  // What the watchdog watches: the running request (the innermost one when
  // a host call serves nested requests; the outer ones wait in wd_outer_).
  struct Armed {
    std::uint64_t seq = 0;
    Deadline deadline;
    std::string label;
    std::shared_ptr<ReplySlot> slot;
    // Monitoring of the running request: its type, start, and when it
    // becomes slow or holds the interpreter too long (time_point::max():
    // not, or reported already).
    std::string type;
    clock::time_point started{};
    clock::time_point slow_at = clock::time_point::max();
    std::chrono::nanoseconds slow_threshold{0};
    clock::time_point gil_at = clock::time_point::max();
    // The batch being run call by call (per-call deadlines), for the wedge.
    const BatchReply* batch = nullptr;
    std::size_t batch_size = 0;
    bool interrupted = false;
    // Whether the native-code probe has spoken (on_stuck_in_native).
    bool native_probed = false;
    bool cancelled = false;
    bool wedged = false;
  };
  Armed wd_;
  // Requests waiting in a host call while the requests it nests run (outer
  // first), each with the host call it waits in. Under wd_mutex_.
  struct Waiting {
    Armed armed;
    CancelToken token;  // the host call's (HostNest::token)
    bool cancel_pending = false;  // cancelled while a nested request ran
  };
  std::vector<Waiting> wd_outer_;
  bool wd_stop_ = false;
  clock::time_point wd_wake_ = clock::time_point::max();

  std::atomic<bool> wedged_{false};
  // Whether the GIL is on (a build with a GIL: always).
  std::atomic<bool> gil_enabled_{!Interpreter::free_threaded()};
  std::atomic<std::uint64_t> wedged_count_{0};
  std::atomic<std::size_t> live_refs_{0};
  std::uint64_t seq_ = 0;
  // The request running now when an interrupt may answer it early (not a
  // batch), and its deadline. Interpreter thread only.
  Job* interrupted_job_ = nullptr;
  Deadline interrupted_deadline_;
  detail::StatsCollector stats_;

  std::promise<ShutdownReport> finished_;
  std::once_flag shutdown_once_;
  ShutdownReport report_;
};

} // namespace

Expected<std::shared_ptr<Executor>> start_thread_executor(const Config& config,
                                                          ThreadExecutorOptions options) {
  auto ex = std::make_shared<ThreadExecutor>(config, options);
  if (Error e = ex->start())
    return e;
  return std::shared_ptr<Executor>(std::move(ex));
}

} // namespace gk
