// The process executor: interpreters in child processes, supervised by one
// long-lived thread that spawns, feeds, watches, kills and reaps them.
//
// Every child is started with posix_spawn (never a bare fork of this
// threaded host) in its own process group, talks over a socketpair, and is
// reaped by this thread whatever way it ends.

#include "actors/detail/process_executor.hpp"
#include "actors/worker.hpp"
#include "actors/wire.hpp"
#include "interop/interpreter.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

namespace gk::detail {

namespace {

using namespace std::chrono_literals;

} // namespace

ProcessExecutor::ProcessExecutor(const Config& config, std::string worker, std::shared_ptr<HostFunctions> hosts)
  : config_(config), worker_(std::move(worker)), hosts_(std::move(hosts)),
    workers_(static_cast<std::size_t>(std::max(1, config.runtime.workers))) {}

ProcessExecutor::~ProcessExecutor() {
  shutdown(config_.runtime.shutdown_grace);
  if (wake_fd_ >= 0)
    close(wake_fd_);
}

Error ProcessExecutor::start() {
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0)
    return Error(ErrorCode::internal, std::string("eventfd: ") + std::strerror(errno));
  std::promise<Error> started;
  auto ready = started.get_future();
  supervisor_ = std::thread([this, p = std::move(started)]() mutable { supervise(std::move(p)); });
  Error e = ready.get();
  if (e) {
    supervisor_.join();
    close(wake_fd_);
    wake_fd_ = -1;
  }
  return e;
}

void ProcessExecutor::enqueue(Job job) {
  bool queued = detail::admit(stats_, mutex_, stopping_, queue_, std::move(job), [&](const std::string& label) {
    if (clock::now() < degraded_until_)
      return Error(ErrorCode::degraded, label + ": " + degraded_reason_);
    // The supervisor drops answered requests each time it looks at the
    // queue, so what is here is (nearly) all still wanted.
    if (queue_.size() >= config_.runtime.max_queued)
      return Error(ErrorCode::overloaded, label + ": the runtime's queue holds " + std::to_string(queue_.size())
                                              + " requests ([runtime] max_queued = "
                                              + std::to_string(config_.runtime.max_queued) + ")");
    return Error();
  });
  if (queued)
    wake();
}

Stats ProcessExecutor::stats() const {
  Stats s;
  s.types = stats_.snapshot();
  s.live_refs = live_refs_.load();
  {
    std::lock_guard<std::mutex> lk(mutex_);
    s.queued = queue_.size();
    s.restarts = 0;
    for (auto& [cause, n] : restarts_) {
      s.restarts += n;
      s.restarts_by_cause.emplace_back(cause, n);
    }
    s.workers = workers_;
    // Read on demand: /proc reads on every turn of the loop cost the
    // round trip dearly.
    for (int pid : pids_)
      s.rss_bytes += rss_of(pid);
    s.wedged = false;
  }
  s.isolation = "process";
  s.capability_denials = denials_.load();
  s.python_version = Interpreter::python_version();
  s.free_threaded = Interpreter::free_threaded();
  // A free-threaded build's GIL, turned on by an import in a worker (its
  // gil_enabled event).
  s.gil_enabled = !s.free_threaded || gil_enabled_in_a_worker_.load();
  return s;
}

ShutdownReport ProcessExecutor::shutdown(std::chrono::nanoseconds grace) {
  std::call_once(shutdown_once_, [&] {
    {
      std::lock_guard<std::mutex> lk(mutex_);
      stopping_ = true;
      shutdown_grace_ = grace;
    }
    wake();
    if (supervisor_.joinable())
      supervisor_.join();
    // wake_fd_ is closed in the destructor: a submit racing with this
    // shutdown may still write to it.
  });
  return report_;
}

std::vector<int> ProcessExecutor::child_pids() const {
  std::lock_guard<std::mutex> lk(mutex_);
  return pids_;
}

void ProcessExecutor::wake() {
  std::uint64_t one = 1;
  if (wake_fd_ >= 0)
    (void)!::write(wake_fd_, &one, sizeof one);
}

// -- the supervisor thread ----------------------------------------------------

void ProcessExecutor::supervise(std::promise<Error> started) {
  pthread_setname_np(pthread_self(), "gk-supervisor");
  // The first worker must start, or the runtime does not. One SIGKILLed
  // while it starts was killed from outside (its own failures end it
  // otherwise): it is started again, a few times.
  Error first;
  for (int attempt = 1;; ++attempt) {
    first = spawn_child();
    if (first)
      break;
    auto& c = children_.back();
    bool killed = false;
    first = wait_ready(c, &killed);
    if (!first)
      break;
    reap(c);
    children_.pop_back();
    publish_pids();
    if (!killed || attempt == kFirstStartAttempts)
      break;
  }
  if (first) {
    started.set_value(first);
    return;
  }
  started.set_value(Error());
  loop();
  stop_all();
}

Error ProcessExecutor::spawn_child() {
  Child c;
  if (Error e = spawn_child_process(worker_, c))
    return e;
  c.epoch = next_epoch_++;
  c.started = clock::now();
  auto setup = wire::make_setup(config_, c.epoch);
  setup.preload.assign(modules_seen_.begin(), modules_seen_.end());
  fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) | O_NONBLOCK);
  send_frame(c, wire::encode_hello(setup));  // a dead child shows up as EOF
  children_.push_back(std::move(c));
  publish_pids();
  return Error();
}

void ProcessExecutor::publish_pids() {
  std::vector<int> pids;
  for (auto& c : children_)
    if (c.pid > 0)
      pids.push_back(c.pid);
  std::lock_guard<std::mutex> lk(mutex_);
  pids_ = std::move(pids);
}

void ProcessExecutor::count_restart(const std::string& cause) {
  std::lock_guard<std::mutex> lk(mutex_);
  restarts_[cause]++;
}

// After a failed start the next child is started later, the more so the
// more failures in a row (a worker that starts resets it): never a hot loop. (After a
// crash of a running call the replacement starts at once: its start-up is
// what limits the rate, and a start that fails backs off.)
void ProcessExecutor::back_off() {
  failed_starts_in_a_row_++;
  auto backoff = std::min<std::chrono::milliseconds>(2000ms, 50ms * (1 << std::min(failed_starts_in_a_row_, 6)));
  next_spawn_ = clock::now() + backoff;
}

// A child that did not start: nothing but the pool explains it.
void ProcessExecutor::failed_start(const std::string& what) {
  back_off();
  if (breaker_.failed_start(clock::now()))
    degrade(what);
}

// Too many failures that count (CrashBreaker): refuse work for a while.
void ProcessExecutor::degrade(const std::string& what) {
  auto now = clock::now();
  const auto& rc = config_.runtime;
  std::deque<Job> refused;
  {
    std::lock_guard<std::mutex> lk(mutex_);
    degraded_until_ = now + rc.degraded_for;
    degraded_reason_ = "degraded: worker processes keep failing (" + breaker_.describe_degraded() + "; last: " + what
                       + "); requests are refused for " + format_duration(rc.degraded_for);
    refused.swap(queue_);
    // Release jobs wait for better times; they carry no caller.
    for (auto& j : refused)
      if (!j.slot)
        queue_.push_back(std::move(j));
  }
  for (auto& j : refused)
    detail::refuse(stats_, j, Error(ErrorCode::degraded, j.label + ": " + degraded_reason_));
  next_spawn_ = degraded_until_;
}

void ProcessExecutor::fail_job(Child& c, Error e) {
  if (!c.job)
    return;
  held_back_.erase(c.job_id);  // the whole request fails, held-back calls too
  end_host_calls(c, e);
  auto& job = *c.job;
  detail::refuse(stats_, job, std::move(e));
  c.job.reset();
}

void ProcessExecutor::child_died(Child& c) {
  bool was_starting = c.state == Child::State::starting;
  bool retiring = c.state == Child::State::retiring;
  int status = reap(c);
  std::string how = describe_status(status);
  if (retiring)
    return;
  Error e(ErrorCode::worker_crashed, "the worker process " + how);
  if (WIFSIGNALED(status))
    e.signal = WTERMSIG(status);
  else if (WIFEXITED(status))
    e.exit_status = WEXITSTATUS(status);
  if (was_starting && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
    // Killed from outside (or by the OOM killer) while it started: that
    // says nothing of whether workers can start. Replaced at once.
    startup_error_.clear();
    count_restart("crashed");
    return;
  }
  if (was_starting) {
    std::string why = startup_error_.empty() ? how : startup_error_;
    startup_error_.clear();
    count_restart("failed_start");
    failed_start("a worker failed to start: " + why);
    return;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == kStuckExitStatus) {
    // The worker cut off a call stuck in native code at its own hard
    // deadline (inside a batch the host only knows the batch's bound): a
    // hard deadline, not a crash.
    auto label = c.job ? c.job->label : std::string("?");
    if (c.job)
      stats_.missed(c.job->type, DeadlinePhase::hard);
    fail_job(c, Error::deadline(DeadlinePhase::hard, label + ": a call was still running " + describe_grace()
                                                         + " after its deadline: its worker process ended itself"));
    count_restart("hard_deadline");
    return;
  }
  // A crash costs the call it hit, nothing more: a segfault, an os._exit,
  // an OOM kill and a kill from outside look alike, and none of them says
  // the pool is broken (a replacement that cannot start says that). A call
  // that crashed before may be put in quarantine.
  CrashVerdict verdict = breaker_.crashed(c.job ? &c.job->request : nullptr, e, how, clock::now());
  if (c.job) {
    e.message = c.job->label + ": " + e.message;
    e.where = where_of(c.job->label);
  }
  if (verdict.quarantined)
    e.message += "; this call (the same target and arguments) crashed its worker " + std::to_string(verdict.crashes)
                 + " times: it is quarantined for " + format_duration(config_.runtime.quarantine_for);
  count_restart("crashed");  // before the caller hears of it, so that its stats() shows the crash
  fail_job(c, e);
}

// Kills the child of a call that is still running `grace` after its
// deadline.
void ProcessExecutor::hard_kill(Child& c) {
  auto label = c.job ? c.job->label : std::string("?");
  // Kill the whole group now; reap on the next turns of the loop so that
  // the queue moves on at once.
  ::kill(-c.pid, SIGKILL);
  close(c.fd);
  c.fd = -1;
  c.out.clear();
  c.state = Child::State::dying;
  if (c.job)
    stats_.missed(c.job->type, DeadlinePhase::hard);
  fail_job(c, Error::deadline(DeadlinePhase::hard,
                              label + " was still running " + describe_grace() +
                                  " after its deadline: its worker process was killed"));
  count_restart("hard_deadline");
}

// The child says its call, interrupted at its deadline, keeps running
// native code that does not check for signals. It will not reply in time:
// its caller is told now, and the child is stopped at once so that it
// burns no CPU beside the spare that takes the next call; it is killed (and
// replaced) at the end of the grace period, away from the next call.
void ProcessExecutor::stuck_in_native(Child& c, std::uint64_t id) {
  if (c.state != Child::State::busy || !c.job || c.job_id != id)
    return;  // it replied meanwhile, or was failed already
  ::kill(-c.pid, SIGSTOP);
  c.state = Child::State::stopped;
  c.kill_at = std::max(clock::now(), c.deadline.is_finite() ? c.deadline.when() + config_.timeouts.grace
                                                              : clock::now());
  auto label = c.job->label;
  stats_.missed(c.job->type, DeadlinePhase::hard);
  fail_job(c, Error::deadline(DeadlinePhase::hard,
                              label + " was still running native code past its deadline (its interrupt did not "
                                      "reach Python code): its worker process was stopped, and is replaced"));
}

std::string ProcessExecutor::describe_grace() const {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(config_.timeouts.grace).count()) + "ms";
}

// Keeps `workers` children serving plus one warm spare.
void ProcessExecutor::replenish() {
  auto now = clock::now();
  if (now < next_spawn_)
    return;
  std::size_t alive = 0;
  for (auto& c : children_)
    if (c.pid > 0 && c.state != Child::State::retiring && c.state != Child::State::dying)
      alive++;
  std::size_t want = workers_ + (config_.runtime.spare ? 1 : 0);
  while (alive < want) {
    if (Error e = spawn_child()) {
      failed_start(e.message);
      return;
    }
    alive++;
  }
}

std::string ProcessExecutor::dump(std::chrono::milliseconds wait) {
  std::shared_ptr<DumpAsk> ask;
  {
    std::lock_guard<std::mutex> lk(mutex_);
    if (!dump_ask_)
      dump_ask_ = std::make_shared<DumpAsk>();
    ask = dump_ask_;
  }
  wake();
  std::unique_lock<std::mutex> lk(mutex_);
  auto until = clock::now() + wait;
  dump_cv_.wait_until(lk, until, [&] { return ask->host_done && ask->answers.size() >= ask->asked.size(); });
  if (dump_ask_ == ask)
    dump_ask_.reset();
  if (!ask->host_done)
    return "process isolation: the supervisor did not answer within "
           + std::to_string(wait.count()) + " ms\n";
  std::string out = ask->host;
  for (int pid : ask->asked) {
    auto it = ask->answers.find(pid);
    out += it != ask->answers.end() ? it->second
                                    : "interpreter (worker process " + std::to_string(pid) + "): no answer within "
                                          + std::to_string(wait.count()) + " ms (stopped, or stuck before it could)\n";
  }
  return out;
}

// The supervisor's part of a dump: every worker process, what is queued,
// and a request for the stack of each worker running a request.
void ProcessExecutor::serve_dump() {
  std::shared_ptr<DumpAsk> ask;
  {
    std::lock_guard<std::mutex> lk(mutex_);
    if (!dump_ask_ || dump_ask_->host_done)
      return;
    ask = dump_ask_;
  }
  auto now = clock::now();
  auto ms = [](clock::duration d) { return dump_ms(d); };
  auto state_name = [](Child::State s) {
    switch (s) {
      case Child::State::starting: return "starting";
      case Child::State::ready: return "idle";
      case Child::State::busy: return "busy";
      case Child::State::retiring: return "retiring";
      case Child::State::stopped: return "stopped (SIGSTOP: stuck in native code, to be killed)";
      case Child::State::dying: return "dying (killed, being reaped)";
    }
    return "?";
  };
  std::string out = "supervisor (process isolation, " + std::to_string(workers_) + " worker(s)"
                    + (config_.runtime.spare ? " and a warm spare" : "") + ")\n";
  std::vector<int> asked;
  for (auto& c : children_) {
    out += "  worker " + std::to_string(c.pid) + ": " + state_name(c.state) + ", " + std::to_string(c.calls)
           + " calls served, up " + ms(now - c.started);
    if (c.state == Child::State::busy && c.job) {
      out += "; running " + c.job->label + " for " + ms(now - c.sent)
             + (c.deadline.is_finite() ? c.deadline.expired(now) ? ", deadline passed " + ms(now - c.deadline.when()) + " ago"
                                                                 : ", deadline in " + ms(c.deadline.when() - now)
                                       : std::string());
      if (c.pid > 0) {
        sigval v{};
        v.sival_ptr = reinterpret_cast<void*>(static_cast<std::uintptr_t>(kWorkerDumpRequest));
        if (::sigqueue(c.pid, worker_cancel_signal(), v) == 0)
          asked.push_back(c.pid);
      }
    }
    out += "\n";
  }
  {
    std::lock_guard<std::mutex> lk(mutex_);
    out += describe_queue(queue_, now);
    ask->host = std::move(out);
    ask->asked = std::move(asked);
    ask->host_done = true;
  }
  dump_cv_.notify_all();
}

void ProcessExecutor::loop() {
  for (;;) {
    {
      std::lock_guard<std::mutex> lk(mutex_);
      if (stopping_)
        return;
    }
    dispatch();
    replenish();
    serve_dump();

    // Wait for a child, a wake-up, or the next hard deadline.
    auto now = clock::now();
    auto next = now + 1s;
    if (next_spawn_ > now)
      next = std::min(next, next_spawn_);
    for (auto& c : children_) {
      if (c.state == Child::State::busy && c.job && c.deadline.is_finite()) {
        next = std::min(next, c.deadline.when() + config_.timeouts.grace);
        if (!c.deadline.expired(now))  // then its slot may go to a waiting call
          next = std::min(next, c.deadline.when());
      }
      if (c.state == Child::State::retiring)
        next = std::min(next, c.retire_by);
      if (c.state == Child::State::stopped)
        next = std::min(next, c.kill_at);
      if (c.state == Child::State::starting)
        next = std::min(next, c.started + kStartTimeout);
      if (c.state == Child::State::dying)
        next = std::min(next, now + 1ms);
    }

    std::vector<pollfd> fds;
    fds.push_back(pollfd{wake_fd_, POLLIN, 0});
    for (auto& c : children_)
      fds.push_back(pollfd{c.fd, static_cast<short>(POLLIN | (c.out.empty() ? 0 : POLLOUT)), 0});
    auto wait_ns = std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::nanoseconds>(next - now).count());
    timespec ts{static_cast<time_t>(wait_ns / 1000000000), static_cast<long>(wait_ns % 1000000000)};
    int n = ::ppoll(fds.data(), fds.size(), &ts, nullptr);
    if (n < 0 && errno != EINTR)
      std::this_thread::sleep_for(1ms);
    if (fds[0].revents & POLLIN) {
      std::uint64_t v;
      while (::read(wake_fd_, &v, sizeof v) > 0) {
      }
    }
    for (std::size_t i = 0; i < children_.size(); ++i) {
      auto& c = children_[i];
      auto revents = fds[i + 1].revents;
      if (revents == 0)
        continue;
      // A child that stopped reading is not waited for: its request's
      // deadline (checked below) kills it like a stuck one.
      bool alive = !(revents & POLLOUT) || flush(c);
      if (!service(c) || !alive)
        child_died(c);
    }
    now = clock::now();
    for (auto& c : children_) {
      if (c.pid <= 0)
        continue;
      if (c.state == Child::State::dying) {
        int status = 0;
        pid_t r = waitpid(c.pid, &status, WNOHANG);
        // ECHILD: a host that ignores SIGCHLD has its children reaped by
        // the kernel; there is nothing left to wait for.
        if (r == c.pid || (r < 0 && errno == ECHILD))
          c.pid = -1;
        continue;
      }
      if (c.state == Child::State::busy && c.job && c.deadline.is_finite()
          && now >= c.deadline.when() + config_.timeouts.grace)
        hard_kill(c);
      else if (c.state == Child::State::retiring && now >= c.retire_by)
        reap(c);
      else if (c.state == Child::State::stopped && now >= c.kill_at)
        hard_kill(c);
      else if (c.state == Child::State::starting && now >= c.started + kStartTimeout) {
        reap(c);
        count_restart("failed_start");
        failed_start("a worker did not start within 30s");
      }
    }
    auto before = children_.size();
    children_.erase(std::remove_if(children_.begin(), children_.end(), [](const Child& c) { return c.pid <= 0; }),
                    children_.end());
    if (children_.size() != before)
      publish_pids();
  }
}

// Shutdown: refuse the queue, ask every child to finish, then terminate,
// kill and reap whatever is left, within the grace period.
void ProcessExecutor::stop_all() {
  std::deque<Job> stranded;
  std::chrono::nanoseconds grace;
  {
    std::lock_guard<std::mutex> lk(mutex_);
    stranded.swap(queue_);
    grace = shutdown_grace_;
  }
  for (auto& j : stranded)
    detail::refuse(stats_, j, Error(ErrorCode::runtime_stopped, j.label + ": the runtime stopped before it ran"));
  for (auto& c : children_) {
    if (c.pid > 0 && c.state == Child::State::stopped)
      hard_kill(c);  // it cannot read a goodbye
    else if (c.pid > 0)
      send_frame(c, wire::encode_goodbye());
  }
  auto deadline = clock::now() + grace;
  auto term_at = clock::now() + std::min<std::chrono::nanoseconds>(grace, 1s);
  bool termed = false;
  for (;;) {
    bool any = false;
    for (auto& c : children_) {
      if (c.pid <= 0)
        continue;
      // Replies that arrive while stopping still reach their callers; a
      // child that does not read its goodbye is killed at the end.
      if (c.fd >= 0) {
        flush(c);
        pollfd p{c.fd, POLLIN, 0};
        if (::poll(&p, 1, 0) > 0)
          service(c);
      }
      int status = 0;
      if (waitpid(c.pid, &status, WNOHANG) == c.pid) {
        ::kill(-c.pid, SIGKILL);
        c.pid = -1;
        fail_job(c, Error(ErrorCode::runtime_stopped, "the runtime stopped while the call ran"));
        if (c.fd >= 0)
          close(c.fd);
        c.fd = -1;
        continue;
      }
      any = true;
    }
    if (!any)
      break;
    auto now = clock::now();
    if (!termed && now >= term_at) {
      for (auto& c : children_)
        if (c.pid > 0)
          ::kill(-c.pid, SIGTERM);
      termed = true;
    }
    if (now >= deadline) {
      for (auto& c : children_)
        if (c.pid > 0) {
          reap(c);
          fail_job(c, Error(ErrorCode::runtime_stopped, "the runtime stopped while the call ran"));
        }
      break;
    }
    std::this_thread::sleep_for(2ms);
  }
  children_.clear();
  publish_pids();
  report_.finalized = true;
  report_.message = "all worker processes stopped and reaped";
}

} // namespace gk::detail

namespace gk {

Expected<std::shared_ptr<Executor>> start_process_executor(const Config& config,
                                                           std::shared_ptr<detail::HostFunctions> hosts) {
  std::string worker = find_worker_executable();
  if (worker.empty())
    return Error(ErrorCode::internal,
                 "process isolation needs the gilkeeper executable as its worker: set GILKEEPER_WORKER "
                 "or install gilkeeper next to its library");
  auto ex = std::make_shared<detail::ProcessExecutor>(config, worker, std::move(hosts));
  if (Error e = ex->start())
    return e;
  return std::shared_ptr<Executor>(std::move(ex));
}

} // namespace gk
