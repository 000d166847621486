// The worker process: the same request loop as the thread executor, behind
// a socket to the host.

#include "actors/worker.hpp"

#include "actors/executor.hpp"
#include "actors/host_functions.hpp"
#include "actors/py_runtime_core.hpp"
#include "actors/sandbox.hpp"
#include "actors/wire.hpp"
#include "gilkeeper/config/log.hpp"

#include <csignal>
#include <cstdlib>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

namespace gk {

namespace {

// Writes the reply frame of one request to the host.
class WireSlot final : public ReplySlot {
public:
  WireSlot(int fd, std::mutex& write_mutex, std::uint64_t id, const Executor& executor)
    : fd_(fd), mutex_(write_mutex), id_(id), executor_(executor) {}
  void deliver(AnyReply&& reply) override {
    wire::FdsOut fds;  // large Buffers go as shared memory beside the frame
    std::vector<char> frame;
    {
      detail::BufferChannelScope shm(&fds);
      frame = wire::encode_reply(id_, reply, executor_.capability_denials());
    }
    std::lock_guard<std::mutex> g(mutex_);
    wire::write_all(fd_, frame.data(), frame.size(), fds.fds());  // a gone host is not our problem
  }
  std::uint64_t id() const noexcept { return id_; }

private:
  int fd_;
  std::mutex& mutex_;
  std::uint64_t id_;
  const Executor& executor_;
};

void set_limit(int resource, std::optional<std::uint64_t> value) {
  if (!value)
    return;
  rlimit r{static_cast<rlim_t>(*value), static_cast<rlim_t>(*value)};
  setrlimit(resource, &r);
}

} // namespace

int worker_cancel_signal() noexcept {
  return SIGRTMAX - 1;
}

int run_worker(int fd, int parent) {
  // Die with the host. The host spawns us from a thread that lives as long
  // as the runtime, so the death signal is tied to the runtime's life.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (parent > 0 && getppid() != parent)
    return 70;

  auto hello = wire::read_frame(fd);
  if (!hello)
    return 71;
  auto frame = wire::decode(hello->data(), hello->size());
  if (!frame || frame->kind != wire::FrameKind::hello || !frame->setup)
    return 72;
  auto& setup = *frame->setup;

  auto& limits = setup.limits;
  set_limit(RLIMIT_AS, limits.address_space);
  set_limit(RLIMIT_CPU, limits.cpu_seconds);
  set_limit(RLIMIT_NOFILE, limits.open_files);
  set_limit(RLIMIT_NPROC, limits.processes);
  set_limit(RLIMIT_CORE, limits.core_dumps ? std::nullopt : std::optional<std::uint64_t>(0));

  // The host's cancel signal is taken by this (main) thread only, with
  // sigtimedwait below: blocked before any other thread starts.
  sigset_t cancel_set;
  sigemptyset(&cancel_set);
  sigaddset(&cancel_set, worker_cancel_signal());
  pthread_sigmask(SIG_BLOCK, &cancel_set, nullptr);

  Config config = wire::config_from_setup(setup);
  // The kernel backs the capability rules: before any thread starts.
  std::string sandbox_error = apply_sandbox(config.capabilities);
  if (!sandbox_error.empty()) {
    auto f = wire::encode_ready(Error(ErrorCode::internal, "cannot apply the sandbox: " + sandbox_error), getpid());
    wire::write_all(fd, f.data(), f.size());
    return 1;
  }
  // Writes to the host: replies, stuck frames and log events, one frame at
  // a time (static: the logger's thread may outlive this frame).
  static std::mutex write_mutex;
  // This process's alerts and traces go to the host's log.
  log::set_level(config.log.level);
  log::set_sink([fd](const LogEvent& e) {
    auto frame = wire::encode_event(e);
    std::lock_guard<std::mutex> g(write_mutex);
    wire::write_all(fd, frame.data(), frame.size());
  });
  ThreadExecutorOptions options;
  options.epoch = setup.epoch;
  options.host_owned_refs = true;
  options.exit_when_stuck = true;
  options.answer_at_interrupt = false;
  // A call stuck in native code past its deadline: the host stops this
  // process at once rather than wait for a reply that will not come.
  options.on_stuck_in_native = [fd](const std::shared_ptr<ReplySlot>& slot) {
    auto* wire_slot = dynamic_cast<WireSlot*>(slot.get());
    if (!wire_slot)
      return;
    auto frame = wire::encode_stuck(wire_slot->id());
    std::lock_guard<std::mutex> g(write_mutex);
    wire::write_all(fd, frame.data(), frame.size());
  };
  // Host calls (gilkeeper.host.NAME) go to the host over this socket; while
  // the interpreter's thread waits for the reply it reads the socket itself
  // and runs the requests the host function nests (see the executor's
  // host wait). Set up before the executor exists: these are filled in
  // below, before any request runs.
  PyRuntime* runtime_ptr = nullptr;
  const Executor* executor_ptr = nullptr;
  std::mutex done_mutex;  // guards done, current_id, current, nested and cancel_id
  bool done = false;
  std::uint64_t current_id = 0;
  std::shared_ptr<ReplySlot> current;
  std::map<std::uint64_t, std::weak_ptr<ReplySlot>> nested;  // requests nested in host calls
  std::uint64_t cancel_id = 0;
  auto host_gone = [&] {
    {
      std::lock_guard<std::mutex> g(done_mutex);
      done = true;
    }
    sigval wake{};
    sigqueue(getpid(), worker_cancel_signal(), wake);  // value 0: not a request
  };
  std::uint64_t next_host_call = 0;  // the interpreter's thread only
  // Shared memory received beside frames (the interpreter's thread reads).
  std::deque<int> received_fds;
  // The next frame from the host, its Buffers mapped; an error when the host
  // is gone or the stream is corrupt.
  auto next_frame = [&]() -> Expected<wire::Frame> {
    auto body = wire::read_frame(fd, &received_fds);
    if (!body)
      return Error(ErrorCode::internal, "the host is gone");
    wire::FdsIn fds(received_fds);
    detail::BufferChannelScope shm(&fds);
    return wire::decode(body->data(), body->size());
  };
  options.start_host_call = [&, fd](const std::string& name, List args,
                                    Deadline deadline) -> Expected<std::shared_ptr<detail::HostNest>> {
    auto nest = std::make_shared<detail::HostNest>(executor_ptr, true, name);
    nest->deadline = deadline;
    nest->call_id = ++next_host_call;
    nest->fd = fd;
    std::weak_ptr<detail::HostNest> weak = nest;
    nest->pump = [&, fd, weak] {
      auto self = weak.lock();
      if (!self)
        return;
      Expected<wire::Frame> f = next_frame();
      if (!f || f->kind == wire::FrameKind::goodbye) {
        self->finish(Error(ErrorCode::runtime_stopped, "the host is gone"));
        host_gone();
        return;
      }
      if (f->kind == wire::FrameKind::host_reply && f->id == self->call_id && f->result) {
        self->finish(std::move(*f->result));
      } else if (f->kind == wire::FrameKind::nested_request && f->request) {
        // Nested in this call by its host function: run by this thread
        // while it waits (the request's parent is the call).
        auto slot = std::make_shared<WireSlot>(fd, write_mutex, f->id, *executor_ptr);
        bool cancelled = false;
        {
          std::lock_guard<std::mutex> g(done_mutex);
          for (auto it = nested.begin(); it != nested.end();)
            it = it->second.expired() ? nested.erase(it) : std::next(it);
          nested[f->id] = slot;
          cancelled = cancel_id == f->id;
        }
        SubmitOptions o;
        o.parent = RequestContext(self->deadline, self->token, self);
        runtime_ptr->submit(std::move(*f->request), slot, o);
        if (cancelled)
          runtime_ptr->cancel(slot);
      }
      // Anything else (a late reply to an earlier call) is not for us.
    };
    nest->on_abandon = [fd, id = nest->call_id] {
      auto frame = wire::encode_host_cancel(id);
      std::lock_guard<std::mutex> g(write_mutex);
      wire::write_all(fd, frame.data(), frame.size());
    };
    wire::FdsOut fds;
    std::vector<char> frame;
    {
      detail::BufferChannelScope shm(&fds);
      frame = wire::encode_host_call(nest->call_id, name, args, deadline);
    }
    std::lock_guard<std::mutex> g(write_mutex);
    if (!wire::write_all(fd, frame.data(), frame.size(), fds.fds()))
      return Error(ErrorCode::runtime_stopped, "host call " + name + ": the host is gone");
    return nest;
  };
  auto executor = start_thread_executor(config, options);
  if (!executor) {
    auto f = wire::encode_ready(executor.error(), getpid());
    wire::write_all(fd, f.data(), f.size());
    return 1;
  }
  // The far end of the host's submission path: requests arrive with their
  // deadlines stamped, and the host watches its callers' deadlines itself
  // (a reply from here must mean the interpreter is free again).
  PyRuntime runtime(*executor, config, PyRuntime::Watch::off);
  runtime_ptr = &runtime;
  executor_ptr = executor->get();
  // Warm up: import what the workload uses before saying ready.
  for (auto& module : setup.preload)
    runtime.ask(ImportRequest{module, Deadline::after(std::chrono::seconds(10))});

  auto ready = wire::encode_ready(Error(), getpid());
  {
    std::lock_guard<std::mutex> g(write_mutex);
    if (!wire::write_all(fd, ready.data(), ready.size()))
      return 73;
  }

  // The interpreter's thread reads each request itself when it is idle and
  // runs it at once: no hand-off between reading and running. The host
  // sends one request at a time, so nothing waits to be read meanwhile.
  //
  // Cancellation: the host signals the id of the request to cancel. It may
  // arrive before this thread read that request (then the request is
  // cancelled as it is submitted), while it runs (interrupted), or after it
  // ended (ignored: ids are never reused).
  auto fetch = [&]() -> bool {
    for (;;) {
      Expected<wire::Frame> f = next_frame();
      // A gone host, a corrupt stream (it cannot be trusted) or goodbye.
      if (!f || f->kind == wire::FrameKind::goodbye) {
        host_gone();
        return false;
      }
      if (f->kind != wire::FrameKind::request || !f->request)
        continue;
      auto slot = std::make_shared<WireSlot>(fd, write_mutex, f->id, **executor);
      bool cancelled = false;
      {
        std::lock_guard<std::mutex> g(done_mutex);
        current_id = f->id;
        current = slot;
        cancelled = cancel_id == f->id;
      }
      runtime.submit(std::move(*f->request), slot);
      if (cancelled)
        runtime.cancel(slot);
      return true;
    }
  };
  (*executor)->pull_from(fetch);
  for (;;) {
    siginfo_t info{};
    timespec tick{1, 0};
    int sig = sigtimedwait(&cancel_set, &info, &tick);
    std::shared_ptr<ReplySlot> cancel;
    bool dump = false;
    {
      std::lock_guard<std::mutex> g(done_mutex);
      if (done)
        break;
      if (sig != worker_cancel_signal())
        continue;
      auto id = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(info.si_value.sival_ptr));
      if (id == 0)
        continue;
      if (id == static_cast<std::uint64_t>(static_cast<std::uintptr_t>(kWorkerDumpRequest)))
        dump = true;
      else if (id == current_id)
        cancel = current;
      else if (auto it = nested.find(id); it != nested.end())
        cancel = it->second.lock();
      else
        cancel_id = id;
    }
    if (cancel)
      runtime.cancel(cancel);
    if (dump) {
      // The host's Runtime::dump: what this interpreter is doing, with the
      // running request's stack, as one event frame for the host.
      LogEvent e;
      e.level = LogLevel::info;
      e.name = "stack_dump";
      e.message = "worker " + std::to_string(getpid());
      e.with("dump", (*executor)->dump(std::chrono::milliseconds(200)));
      auto frame = wire::encode_event(e);
      std::lock_guard<std::mutex> w(write_mutex);
      wire::write_all(fd, frame.data(), frame.size());
    }
  }
  runtime.shutdown(config.runtime.shutdown_grace);
  log::flush();
  // Leave at once: a call that did not stop may still reply through this
  // function's stack objects; nothing here needs flushing.
  std::_Exit(0);
}

} // namespace gk
