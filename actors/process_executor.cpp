// The process executor: interpreters in child processes, supervised by one
// long-lived thread that spawns, feeds, watches, kills and reaps them.
//
// Every child is started with posix_spawn (never a bare fork of this
// threaded host) in its own process group, talks over a socketpair, and is
// reaped by this thread whatever way it ends.

#include "actors/executor.hpp"
#include "actors/detail/stats_collector.hpp"
#include "actors/wire.hpp"
#include "interop/interpreter.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <deque>
#include <dlfcn.h>
#include <fcntl.h>
#include <fstream>
#include <future>
#include <list>
#include <map>
#include <mutex>
#include <set>
#include <poll.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

extern char** environ;

namespace gk {

std::string find_worker_executable() {
  if (const char* env = std::getenv("GILKEEPER_WORKER"); env && *env)
    return env;
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&find_worker_executable), &info) == 0 || !info.dli_fname)
    return {};
  std::string lib = info.dli_fname;
  auto slash = lib.rfind('/');
  std::string dir = slash == std::string::npos ? "." : lib.substr(0, slash);
  for (auto candidate : {dir + "/gilkeeper", dir + "/../bin/gilkeeper"})
    if (access(candidate.c_str(), X_OK) == 0)
      return candidate;
  return {};
}

namespace {

using clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// How many crashes (or failed starts) in `kCrashWindow` make the pool
// degraded, and for how long it then refuses work.
constexpr int kMaxCrashes = 5;
constexpr auto kCrashWindow = 10s;
// How long a child may take to start its interpreter.
constexpr auto kStartTimeout = 30s;
// How long a retiring child may take to exit before it is killed.
constexpr auto kRetireGrace = 2s;

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    const char* name = sigabbrev_np(sig);
    return std::string("killed by signal ") + std::to_string(sig) + (name ? std::string(" (SIG") + name + ")" : "");
  }
  if (WIFEXITED(status))
    return "exited with status " + std::to_string(WEXITSTATUS(status));
  return "ended (status " + std::to_string(status) + ")";
}

std::uint64_t rss_of(pid_t pid) {
  std::ifstream statm("/proc/" + std::to_string(pid) + "/statm");
  std::uint64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
}

// The epoch a request's Refs belong to: 0 when it has none, ~0 when it
// mixes epochs.
constexpr std::uint64_t kMixed = ~std::uint64_t{0};

void epoch_of(const Value& v, std::uint64_t& out) {
  switch (v.kind()) {
    case Value::Kind::ref: {
      auto e = v.as_ref().epoch();
      out = out == 0 || out == e ? e : kMixed;
      break;
    }
    case Value::Kind::list:
      for (auto& x : v.as_list())
        epoch_of(x, out);
      break;
    case Value::Kind::dict:
      for (auto& [k, x] : v.as_dict())
        epoch_of(x, out);
      break;
    default: break;
  }
}

void epoch_of(const CallRequest& c, std::uint64_t& out) {
  if (c.self)
    epoch_of(Value(c.self), out);
  for (auto& a : c.args)
    epoch_of(a, out);
  for (auto& [k, a] : c.kwargs)
    epoch_of(a, out);
}

std::uint64_t epoch_of(const AnyRequest& r) {
  std::uint64_t out = 0;
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, CallRequest>)
          epoch_of(x, out);
        else if constexpr (std::is_same_v<T, GetattrRequest>) {
          if (x.object)
            epoch_of(Value(x.object), out);
        } else if constexpr (std::is_same_v<T, ReleaseRequest>)
          out = x.epoch;
        else if constexpr (std::is_same_v<T, BatchRequest>) {
          for (auto& c : x.calls)
            epoch_of(c, out);
        }
      },
      r);
  return out;
}

struct Child {
  pid_t pid = -1;
  int fd = -1;
  std::uint64_t epoch = 0;
  // dying: SIGKILLed, waiting to be reaped (without blocking the loop).
  enum class State { starting, ready, busy, retiring, dying } state = State::starting;
  wire::FrameReader reader;
  clock::time_point started;
  clock::time_point retire_by;
  std::uint64_t calls = 0;
  std::uint64_t denials = 0;  // capability denials it reported
  // The request it runs (busy only).
  std::optional<Job> job;
  std::uint64_t job_id = 0;
  clock::time_point sent;
  /// The job's deadline once sent (Job::run_deadline).
  Deadline deadline;
};

class ProcessExecutor final : public Executor, public std::enable_shared_from_this<ProcessExecutor> {
public:
  ProcessExecutor(const Config& config, std::string worker)
    : config_(config), worker_(std::move(worker)),
      workers_(static_cast<std::size_t>(std::max(1, config.runtime.workers))) {}

  ~ProcessExecutor() override {
    shutdown(config_.runtime.shutdown_grace);
    if (wake_fd_ >= 0)
      close(wake_fd_);
  }

  Error start() {
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

  void submit(Job job, SubmitKey) override { enqueue(std::move(job)); }

  void enqueue(Job job) {
    bool counted = job.slot != nullptr;
    if (counted)
      stats_.received(job.type);
    Error reject;
    {
      std::lock_guard<std::mutex> lk(mutex_);
      if (stopping_) {
        reject = Error(ErrorCode::runtime_stopped, job.label + ": the runtime is stopped");
      } else if (counted && clock::now() < degraded_until_) {
        reject = Error(ErrorCode::degraded, job.label + ": " + degraded_reason_);
      } else {
        job.enqueued = clock::now();
        queue_.push_back(std::move(job));
      }
    }
    if (!reject) {
      wake();
      return;
    }
    detail::refuse(stats_, job, std::move(reject));
  }

  Stats stats() const override {
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
    return s;
  }

  std::uint64_t capability_denials() const override { return denials_.load(); }

  ShutdownReport shutdown(std::chrono::nanoseconds grace) override {
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

  /// Live children's pids (for tests and diagnostics).
  std::vector<int> child_pids() const {
    std::lock_guard<std::mutex> lk(mutex_);
    return pids_;
  }

private:
  void wake() {
    std::uint64_t one = 1;
    if (wake_fd_ >= 0)
      (void)!::write(wake_fd_, &one, sizeof one);
  }

  // -- the supervisor thread --------------------------------------------------

  void supervise(std::promise<Error> started) {
    pthread_setname_np(pthread_self(), "gk-supervisor");
    // The first worker must start, or the runtime does not.
    Error first = spawn_child();
    if (!first) {
      auto& c = children_.back();
      first = wait_ready(c);
      if (first)
        reap(c, true);
    }
    if (first) {
      started.set_value(first);
      return;
    }
    started.set_value(Error());
    loop();
    stop_all();
  }

  // Blocks until a fresh child says ready (used only at start-up).
  Error wait_ready(Child& c) {
    auto until = clock::now() + kStartTimeout;
    while (c.state == Child::State::starting) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - clock::now()).count();
      if (left <= 0)
        return Error(ErrorCode::internal, "the worker process did not start within 30s");
      pollfd p{c.fd, POLLIN, 0};
      int n = ::poll(&p, 1, static_cast<int>(left));
      if (n < 0 && errno != EINTR)
        return Error(ErrorCode::internal, std::string("poll: ") + std::strerror(errno));
      if (n <= 0)
        continue;
      bool alive = c.reader.fill(c.fd);
      while (auto body = c.reader.next()) {
        auto f = wire::decode(body->data(), body->size());
        if (f && f->kind == wire::FrameKind::ready) {
          if (f->error)
            return f->error;
          c.state = Child::State::ready;
          return Error();
        }
      }
      if (!alive) {
        int status = 0;
        waitpid(c.pid, &status, 0);
        c.pid = -1;
        return Error(ErrorCode::internal, "the worker process " + describe_status(status) + " while starting");
      }
    }
    return Error();
  }

  Error spawn_child() {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
      return Error(ErrorCode::internal, std::string("socketpair: ") + std::strerror(errno));
    int child_end = sv[1];
    if (child_end == 3) {  // dup2(3, 3) would keep CLOEXEC: move it first
      child_end = fcntl(sv[1], F_DUPFD_CLOEXEC, 10);
      close(sv[1]);
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, child_end, 3);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
    std::string parent = std::to_string(getpid());
    std::vector<char*> argv = {const_cast<char*>(worker_.c_str()), const_cast<char*>("worker"),
                               const_cast<char*>("--fd"), const_cast<char*>("3"),
                               const_cast<char*>("--parent"), parent.data(), nullptr};
    pid_t pid = -1;
    int rc = posix_spawn(&pid, worker_.c_str(), &fa, &attr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(child_end);
    if (rc != 0) {
      close(sv[0]);
      return Error(ErrorCode::internal, "cannot start the worker " + worker_ + ": " + std::strerror(rc));
    }
    Child c;
    c.pid = pid;
    c.fd = sv[0];
    c.epoch = next_epoch_++;
    c.started = clock::now();
    auto setup = wire::make_setup(config_, c.epoch);
    setup.preload.assign(modules_seen_.begin(), modules_seen_.end());
    auto hello = wire::encode_hello(setup);
    wire::write_all(c.fd, hello.data(), hello.size());  // a dead child shows up as EOF
    fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) | O_NONBLOCK);
    children_.push_back(std::move(c));
    publish_pids();
    return Error();
  }

  void publish_pids() {
    std::vector<int> pids;
    for (auto& c : children_)
      if (c.pid > 0)
        pids.push_back(c.pid);
    std::lock_guard<std::mutex> lk(mutex_);
    pids_ = std::move(pids);
  }

  // Kills (when asked) and reaps a child; returns its wait status.
  int reap(Child& c, bool kill_first) {
    int status = 0;
    if (c.pid > 0) {
      // The whole process group, before reaping its leader (whose pid could
      // be reused once reaped). A child that closed its socket is already
      // exiting: the signal does not change its exit status.
      ::kill(-c.pid, SIGKILL);
      (void)kill_first;
      while (waitpid(c.pid, &status, 0) < 0 && errno == EINTR) {
      }
      c.pid = -1;
    }
    if (c.fd >= 0)
      close(c.fd);
    c.fd = -1;
    return status;
  }

  void count_restart(const std::string& cause) {
    std::lock_guard<std::mutex> lk(mutex_);
    restarts_[cause]++;
  }

  // A crash or failed start: back off, and after too many, refuse work.
  void crashed(const std::string& what) {
    auto now = clock::now();
    crash_times_.push_back(now);
    while (!crash_times_.empty() && now - crash_times_.front() > kCrashWindow)
      crash_times_.pop_front();
    consecutive_crashes_++;
    auto backoff = std::min<std::chrono::milliseconds>(2000ms, 50ms * (1 << std::min(consecutive_crashes_, 6)));
    next_spawn_ = now + backoff;
    if (static_cast<int>(crash_times_.size()) >= kMaxCrashes) {
      std::deque<Job> refused;
      {
        std::lock_guard<std::mutex> lk(mutex_);
        degraded_until_ = now + kCrashWindow;
        degraded_reason_ = "degraded: worker processes keep failing (" + std::to_string(crash_times_.size())
                           + " in the last 10s; last: " + what + "); requests are refused for 10s";
        refused.swap(queue_);
        // Release jobs wait for better times; they carry no caller.
        for (auto& j : refused)
          if (!j.slot)
            queue_.push_back(std::move(j));
      }
      for (auto& j : refused)
        detail::refuse(stats_, j, Error(ErrorCode::degraded, j.label + ": " + degraded_reason_));
      crash_times_.clear();
      next_spawn_ = degraded_until_;
    }
  }

  void fail_job(Child& c, Error e) {
    if (!c.job)
      return;
    auto& job = *c.job;
    detail::refuse(stats_, job, std::move(e));
    c.job.reset();
  }

  // Gives Refs in a reply a release function that routes to their worker.
  void adopt_refs(Value& v) {
    switch (v.kind()) {
      case Value::Kind::ref: {
        auto& r = v.as_ref();
        std::weak_ptr<ProcessExecutor> weak = weak_from_this();
        live_refs_++;
        v = Value(Ref(std::make_shared<const detail::RefState>(
            r.id(), r.epoch(), r.type_name(), [weak](std::uint64_t id, std::uint64_t epoch) {
              if (auto ex = weak.lock()) {
                ex->live_refs_--;
                ex->enqueue(release_job(id, epoch));
              }
            })));
        break;
      }
      case Value::Kind::list:
        for (auto& x : v.as_list())
          adopt_refs(x);
        break;
      case Value::Kind::dict:
        for (auto& [k, x] : v.as_dict())
          adopt_refs(x);
        break;
      default: break;
    }
  }

  void on_reply(Child& c, std::uint64_t id, AnyReply&& reply) {
    if (!c.job || c.job_id != id)
      return;  // a reply for a request we already failed
    Job job = std::move(*c.job);
    c.job.reset();
    { AnyRequest spent = std::move(job.request); }  // Refs in it release before the reply
    c.state = Child::State::ready;
    c.calls++;
    consecutive_crashes_ = 0;
    auto now = clock::now();
    stats_.timing(job.type, c.sent - job.enqueued, now - c.sent);
    if (auto* v = std::get_if<Expected<Value>>(&reply)) {
      if (v->has_value())
        adopt_refs(**v);
    } else {
      for (auto& r : std::get<BatchReply>(reply).results)
        if (r.has_value())
          adopt_refs(*r);
    }
    if (c.deadline.expired(now))
      detail::mark_late(stats_, job, reply);
    detail::reply_to(stats_, job, std::move(reply));
    // Recycling: between calls, never during one.
    std::string cause;
    if (config_.runtime.max_calls > 0 && c.calls >= config_.runtime.max_calls)
      cause = "max_calls";
    else if (config_.runtime.max_memory > 0 && rss_of(c.pid) > config_.runtime.max_memory)
      cause = "max_memory";
    if (!cause.empty()) {
      count_restart(cause);
      retire(c);
    }
  }

  void retire(Child& c) {
    auto bye = wire::encode_goodbye();
    wire::write_all(c.fd, bye.data(), bye.size());
    c.state = Child::State::retiring;
    c.retire_by = clock::now() + kRetireGrace;
  }

  // Reads what a child sent; false when it is gone.
  bool service(Child& c) {
    bool alive = c.reader.fill(c.fd);
    while (auto body = c.reader.next()) {
      auto f = wire::decode(body->data(), body->size());
      if (!f)
        return false;  // corrupt: treat as a crash
      if (f->kind == wire::FrameKind::ready) {
        if (f->error) {
          startup_error_ = f->error.to_string();
          return false;
        }
        if (c.state == Child::State::starting)
          c.state = Child::State::ready;
      } else if (f->kind == wire::FrameKind::reply && f->reply) {
        if (f->denials > c.denials) {
          denials_ += f->denials - c.denials;
          c.denials = f->denials;
        }
        on_reply(c, f->id, std::move(*f->reply));
      }
    }
    return alive && !c.reader.corrupt();
  }

  void child_died(Child& c) {
    bool was_starting = c.state == Child::State::starting;
    bool retiring = c.state == Child::State::retiring;
    int status = reap(c, false);
    std::string how = describe_status(status);
    if (retiring)
      return;
    Error e(ErrorCode::worker_crashed, "the worker process " + how);
    if (WIFSIGNALED(status))
      e.signal = WTERMSIG(status);
    else if (WIFEXITED(status))
      e.exit_status = WEXITSTATUS(status);
    if (was_starting) {
      std::string why = startup_error_.empty() ? how : startup_error_;
      startup_error_.clear();
      count_restart("failed_start");
      crashed("a worker failed to start: " + why);
      return;
    }
    if (c.job) {
      e.message = c.job->label + ": " + e.message;
      e.where = c.job->label;
    }
    fail_job(c, e);
    count_restart("crashed");
    crashed(e.message);
  }

  // Kills the child of a call that is still running `grace` after its
  // deadline.
  void hard_kill(Child& c) {
    auto label = c.job ? c.job->label : std::string("?");
    // Kill the whole group now; reap on the next turns of the loop so that
    // the queue moves on at once.
    ::kill(-c.pid, SIGKILL);
    close(c.fd);
    c.fd = -1;
    c.state = Child::State::dying;
    if (c.job)
      stats_.missed(c.job->type, DeadlinePhase::hard);
    fail_job(c, Error::deadline(DeadlinePhase::hard,
                                label + " was still running " + describe_grace() +
                                    " after its deadline: its worker process was killed"));
    count_restart("hard_deadline");
  }

  std::string describe_grace() const {
    return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(config_.timeouts.grace).count()) + "ms";
  }

  // Notes the module of a call so that the next children import it early.
  void remember_module(const AnyRequest& r) {
    auto* call = std::get_if<CallRequest>(&r);
    if (!call || call->self || modules_seen_.size() >= 64)
      return;
    auto colon = call->target.find(':');
    if (colon != std::string::npos && colon > 0)
      modules_seen_.insert(call->target.substr(0, colon));
  }

  Child* child_for_epoch(std::uint64_t epoch) {
    for (auto& c : children_)
      if (c.epoch == epoch && c.pid > 0 && c.state != Child::State::retiring && c.state != Child::State::dying)
        return &c;
    return nullptr;
  }

  // Sends queued jobs to idle children (least loaded = any idle one; a
  // request with Refs goes to the child that owns them).
  void dispatch() {
    // A child whose call is past its deadline does not count as busy: its
    // caller has been told, it is only waiting to be killed, and the next
    // call should not wait for that (this is what the warm spare is for).
    std::size_t busy = 0;
    auto now_ = clock::now();
    for (auto& c : children_)
      busy += c.state == Child::State::busy && !(c.job && c.deadline.expired(now_)) ? 1 : 0;
    std::deque<Job> jobs;
    {
      std::lock_guard<std::mutex> lk(mutex_);
      jobs.swap(queue_);
    }
    std::deque<Job> keep;
    std::vector<std::pair<Job, Error>> failed;
    auto now = clock::now();
    while (!jobs.empty()) {
      Job job = std::move(jobs.front());
      jobs.pop_front();
      std::uint64_t epoch = epoch_of(job.request);
      Child* target = nullptr;
      if (epoch == kMixed) {
        failed.emplace_back(std::move(job), Error(ErrorCode::bad_request, "a request cannot mix Refs of different worker processes"));
        continue;
      }
      if (epoch != 0) {
        target = child_for_epoch(epoch);
        if (!target) {
          if (job.slot)
            failed.emplace_back(std::move(job), Error(ErrorCode::stale_ref, "a Ref in this request is stale: the worker process that held its object is gone"));
          continue;
        }
        if (target->state != Child::State::ready) {
          keep.push_back(std::move(job));
          continue;
        }
      } else {
        if (busy >= workers_) {
          keep.push_back(std::move(job));
          continue;
        }
        for (auto& c : children_)
          if (c.state == Child::State::ready) {
            target = &c;
            break;
          }
        if (!target) {
          keep.push_back(std::move(job));
          continue;
        }
      }
      if (job.slot && !job.slot->start()) {
        stats_.missed(job.type, DeadlinePhase::queued);
        stats_.error(job.type);
        continue;
      }
      if (job.deadline.expired(now)) {
        stats_.missed(job.type, DeadlinePhase::queued);
        failed.emplace_back(std::move(job), deadline_error(ReplySlot::queued, job.label));
        continue;
      }
      remember_module(job.request);
      auto id = ++next_request_id_;
      auto frame = wire::encode_request(id, job.request);
      target->state = Child::State::busy;
      target->job = std::move(job);
      target->job_id = id;
      target->sent = clock::now();
      target->deadline = target->job->run_deadline(target->sent);
      busy++;
      wire::write_all(target->fd, frame.data(), frame.size());  // failure shows as EOF
    }
    if (!keep.empty()) {
      std::lock_guard<std::mutex> lk(mutex_);
      for (auto it = keep.rbegin(); it != keep.rend(); ++it)
        queue_.push_front(std::move(*it));
    }
    for (auto& [job, e] : failed)
      detail::refuse(stats_, job, std::move(e));
  }

  // Keeps `workers` children serving plus one warm spare.
  void replenish() {
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
        crashed(e.message);
        return;
      }
      alive++;
    }
  }

  void loop() {
    for (;;) {
      {
        std::lock_guard<std::mutex> lk(mutex_);
        if (stopping_)
          return;
      }
      dispatch();
      replenish();

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
        if (c.state == Child::State::starting)
          next = std::min(next, c.started + kStartTimeout);
        if (c.state == Child::State::dying)
          next = std::min(next, now + 1ms);
      }

      std::vector<pollfd> fds;
      fds.push_back(pollfd{wake_fd_, POLLIN, 0});
      for (auto& c : children_)
        fds.push_back(pollfd{c.fd, POLLIN, 0});
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
        if (fds[i + 1].revents == 0)
          continue;
        if (!service(c))
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
          reap(c, true);
        else if (c.state == Child::State::starting && now >= c.started + kStartTimeout) {
          reap(c, true);
          count_restart("failed_start");
          crashed("a worker did not start within 30s");
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
  void stop_all() {
    std::deque<Job> stranded;
    std::chrono::nanoseconds grace;
    {
      std::lock_guard<std::mutex> lk(mutex_);
      stranded.swap(queue_);
      grace = shutdown_grace_;
    }
    for (auto& j : stranded)
      detail::refuse(stats_, j, Error(ErrorCode::runtime_stopped, j.label + ": the runtime stopped before it ran"));
    for (auto& c : children_)
      if (c.pid > 0) {
        auto bye = wire::encode_goodbye();
        wire::write_all(c.fd, bye.data(), bye.size());
      }
    auto deadline = clock::now() + grace;
    auto term_at = clock::now() + std::min<std::chrono::nanoseconds>(grace, 1s);
    bool termed = false;
    for (;;) {
      bool any = false;
      for (auto& c : children_) {
        if (c.pid <= 0)
          continue;
        // Replies that arrive while stopping still reach their callers.
        if (c.fd >= 0) {
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
            reap(c, true);
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

  Config config_;
  std::string worker_;
  std::size_t workers_;
  int wake_fd_ = -1;
  std::thread supervisor_;

  mutable std::mutex mutex_;
  std::deque<Job> queue_;
  bool stopping_ = false;
  std::chrono::nanoseconds shutdown_grace_{0};
  clock::time_point degraded_until_{};
  std::string degraded_reason_;
  std::map<std::string, std::uint64_t> restarts_;
  std::vector<int> pids_;

  // Supervisor thread only.
  std::vector<Child> children_;
  std::uint64_t next_epoch_ = (std::uint64_t{1} << 32) + static_cast<std::uint64_t>(getpid()) * 100000;
  std::uint64_t next_request_id_ = 0;
  std::deque<clock::time_point> crash_times_;
  int consecutive_crashes_ = 0;
  clock::time_point next_spawn_{};
  std::string startup_error_;
  std::set<std::string> modules_seen_;

  std::atomic<std::uint64_t> live_refs_{0};
  std::atomic<std::uint64_t> denials_{0};  // summed over every child, dead ones too
  detail::StatsCollector stats_;
  std::once_flag shutdown_once_;
  ShutdownReport report_;
};

} // namespace

Expected<std::shared_ptr<Executor>> start_process_executor(const Config& config) {
  std::string worker = find_worker_executable();
  if (worker.empty())
    return Error(ErrorCode::internal,
                 "process isolation needs the gilkeeper executable as its worker: set GILKEEPER_WORKER "
                 "or install gilkeeper next to its library");
  auto ex = std::make_shared<ProcessExecutor>(config, worker);
  if (Error e = ex->start())
    return e;
  return std::shared_ptr<Executor>(std::move(ex));
}

} // namespace gk
