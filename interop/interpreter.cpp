// The embedded interpreter: start-up, requests, shutdown.

#include "interop/interpreter.hpp"
#include "interop/capabilities.hpp"
#include "interop/detail/interrupt.hpp"
#include "interop/detail/py.hpp"
#include "interop/detail/host_call.hpp"
#include "interop/detail/buffer_convert.hpp"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <mutex>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <thread>
#include <unistd.h>

// Exported by libpython (faulthandler's writer), declared only in its
// internal headers: writes a thread's Python stack to a file descriptor;
// async-signal-safe.
extern "C" void _Py_DumpTraceback(int fd, PyThreadState* tstate);

namespace {

// Python's C-level handler of the interrupt signal, which interrupt_front
// runs after noting what the signal found.
struct sigaction g_python_interrupt_action {};

std::atomic<int> g_interrupt_wake_fd{-1};

void interrupt_front(int signo, siginfo_t* info, void* context) {
  // The interrupted code's errno survives this handler (the stack's write
  // and the clock read may set it; ThreadSanitizer caught it).
  const int saved_errno = errno;
  struct RestoreErrno {
    int value;
    ~RestoreErrno() { errno = value; }
  } restore{saved_errno};
  // PyGILState_GetThisThreadState reads a thread-specific key: async-signal-
  // safe in practice, as _PyThreadState_UncheckedGet is an atomic load.
  PyThreadState* self = PyGILState_GetThisThreadState();
  bool gil_held = self != nullptr && _PyThreadState_UncheckedGet() == self;
  if (gk::detail::sample_pending()) {
    // A stack sample (Interpreter::sample_stack): this thread writes its own
    // Python stack, as faulthandler does from its signal handlers (the
    // function is async-signal-safe and reads the frames without the GIL).
    // Python's handler runs too (below): the eval loop then also runs the
    // sampler's pending call, which tells Python code from native code.
    int fd = gk::detail::probe_fd();
    if (fd >= 0 && self)
      _Py_DumpTraceback(fd, self);
    gk::detail::note_sample(gil_held);
  }
  gk::detail::note_delivery(gil_held);
  // A host call waiting on this thread (Interpreter::wake_on_interrupt):
  // its poll wakes now, whenever the signal came.
  int wake = g_interrupt_wake_fd.load(std::memory_order_acquire);
  if (wake >= 0) {
    std::uint64_t one = 1;
    ssize_t ignored = ::write(wake, &one, sizeof one);
    (void)ignored;
  }
  const auto& py = g_python_interrupt_action;
  if (py.sa_flags & SA_SIGINFO) {
    if (py.sa_sigaction)
      py.sa_sigaction(signo, info, context);
  } else if (py.sa_handler != SIG_DFL && py.sa_handler != SIG_IGN && py.sa_handler) {
    py.sa_handler(signo);
  }
}

} // namespace

namespace gk {

namespace {

// One interpreter per process: pybind11's "there can be only one".
enum class Slot { free, taken, abandoned };
std::mutex g_slot_mutex;
Slot g_slot = Slot::free;
std::atomic<std::uint64_t> g_epochs{0};

PyObject* init_module_trampoline() {
  return detail::init_gilkeeper_module();
}

Error internal_error(std::string msg) {
  return Error(ErrorCode::internal, std::move(msg));
}

Error bad_request(std::string msg, const std::string& where = {}) {
  Error e(ErrorCode::bad_request, std::move(msg));
  e.where = where;
  return e;
}

struct Target {
  std::string module;
  std::string path;  // dotted attribute path
};

// "module:qual.name" -> {module, qual.name}
bool split_target(const std::string& target, Target& out) {
  auto colon = target.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == target.size()
      || target.find(':', colon + 1) != std::string::npos)
    return false;
  out.module = target.substr(0, colon);
  out.path = target.substr(colon + 1);
  return true;
}

// getattr along a dotted path; new reference or null with a Python error set.
detail::PyRef get_path(PyObject* root, const std::string& path) {
  detail::PyRef cur = detail::PyRef::borrow(root);
  std::size_t start = 0;
  while (start <= path.size()) {
    auto dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (part.empty()) {
      PyErr_Format(PyExc_AttributeError, "empty attribute name in \"%s\"", path.c_str());
      return {};
    }
    cur = detail::PyRef::steal(PyObject_GetAttrString(cur.get(), part.c_str()));
    if (!cur)
      return {};
    if (dot == std::string::npos)
      break;
    start = dot + 1;
  }
  return cur;
}

detail::PyRef import_module(const std::string& name) {
  detail::PyRef n = detail::PyRef::steal(PyUnicode_FromString(name.c_str()));
  if (!n)
    return {};
  // The fast path: already imported.
  detail::PyRef m = detail::PyRef::steal(PyImport_GetModule(n.get()));
  if (m)
    return m;
  if (PyErr_Occurred())
    return {};
  return detail::PyRef::steal(PyImport_Import(n.get()));
}

} // namespace

struct Interpreter::Impl {
  InterpreterOptions options;
  PyThreadState* main_tstate = nullptr;
  detail::HandleTable table;
  PyObject* main_dict = nullptr;  // borrowed from __main__
  int signo = 0;
  std::string origin;
  // The batch cache: the last target resolved in the current batch.
  bool in_batch = false;
  std::string cached_target;
  detail::PyRef cached_callable;
  std::shared_ptr<detail::CapabilityPolicy> policy;
  // The memory watch's code and state (memory_watch.cpp).
  detail::PyRef memory_state;

  detail::RefContext refs() {
    return detail::RefContext{&table, &options.release_ref, &origin};
  }

  // Converts a call's result: a Ref when asked, else a Value. A Python
  // error's `where` is the request's target (`where`).
  Expected<Value> result(detail::PyRef obj, bool want_ref, const std::string& where) {
    if (!obj) {
      Error e = detail::fetch_python_error();
      if (e.where.empty() && e.code != ErrorCode::capability_denied)
        e.where = where;
      return e;
    }
    if (want_ref)
      return Value(detail::make_ref(obj.get(), refs()));
    return detail::from_python(obj.get(), "result");
  }

  // Resolves the object a Ref names; null with `err` set when stale.
  PyObject* resolve(const Ref& r, const std::string& what, Error& err) {
    PyObject* o = table.get(r.id(), r.epoch());
    if (!o) {
      err = Error(ErrorCode::stale_ref, what + ": Ref #" + std::to_string(r.id()) + " ("
                                            + r.type_name()
                                            + ") is stale: its object was released or its "
                                              "interpreter is gone");
      err.where = what;
    }
    return o;
  }
};

Interpreter::Interpreter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Interpreter::~Interpreter() = default;

Expected<std::unique_ptr<Interpreter>> Interpreter::start(InterpreterOptions options) {
  {
    std::lock_guard<std::mutex> guard(g_slot_mutex);
    if (g_slot == Slot::taken)
      return bad_request("there can be only one interpreter per process: another gilkeeper "
                         "runtime with thread isolation is running (use process isolation "
                         "for more than one interpreter)");
    if (g_slot == Slot::abandoned)
      return bad_request("a previous interpreter in this process could not be finalized "
                         "(its Python threads never ended); start a new process");
    if (Py_IsInitialized())
      return bad_request("Python is already initialised in this process by someone else; "
                         "gilkeeper must own the interpreter");
    g_slot = Slot::taken;
  }
  auto fail = [](Error e) {
    std::lock_guard<std::mutex> guard(g_slot_mutex);
    g_slot = Slot::free;
    return e;
  };

  static std::once_flag inittab_once;
  std::call_once(inittab_once, [] { PyImport_AppendInittab("gilkeeper", &init_module_trampoline); });

  // The audit hook must be in place before Python starts; its rules are
  // enforced from the end of start-up (start-up imports stay unchecked).
  auto policy = detail::make_capability_policy(options.capabilities);
  const bool police = detail::restricts_anything(*policy);
  if (police)
    detail::install_capability_hook(policy);

  PyConfig config;
  PyConfig_InitPythonConfig(&config);
  config.install_signal_handlers = 0;  // the host keeps its signal handlers
  config.parse_argv = 0;
  // The host's C stdin/stdout are the host's: PYTHONUNBUFFERED and friends
  // must not make them unbuffered.
  config.configure_c_stdio = 0;
  // sys.executable must be a real interpreter: multiprocessing starts it.
  PyStatus status = PyConfig_SetBytesString(&config, &config.executable, options.executable.c_str());
  if (!PyStatus_Exception(status))
    status = Py_InitializeFromConfig(&config);
  PyConfig_Clear(&config);
  if (PyStatus_Exception(status)) {
    detail::retire_capabilities();
    return fail(internal_error(std::string("Python failed to start: ")
                               + (status.err_msg ? status.err_msg : "unknown error")));
  }

  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  impl->policy = policy;
  impl->table.set_epoch(impl->options.epoch != 0 ? impl->options.epoch : ++g_epochs);

  auto setup_failed = [&](const std::string& what) {
    Error e = PyErr_Occurred() ? detail::fetch_python_error() : internal_error(what);
    e.message = what + ": " + e.message;
    detail::reset_caches();
    detail::reset_module_types();
    Py_FinalizeEx();
    detail::retire_capabilities();
    return fail(e);
  };

  // sys.path: configured entries first, in order.
  detail::PyRef sys_path = detail::PyRef::borrow(PySys_GetObject("path"));
  if (!sys_path)
    return setup_failed("sys.path is missing");
  for (auto i = impl->options.python_path.size(); i-- > 0;) {
    detail::PyRef entry = detail::PyRef::steal(PyUnicode_FromString(impl->options.python_path[i].c_str()));
    if (!entry || PyList_Insert(sys_path.get(), 0, entry.get()) != 0)
      return setup_failed("cannot extend sys.path");
  }

  detail::PyRef gk_module = import_module("gilkeeper");
  if (!gk_module)
    return setup_failed("cannot import the gilkeeper module");

  if (impl->options.interrupt_signal) {
    int signo = SIGRTMIN + *impl->options.interrupt_signal;
    if (signo > SIGRTMAX)
      return setup_failed("interrupt_signal SIGRTMIN+" + std::to_string(*impl->options.interrupt_signal)
                          + " is beyond SIGRTMAX");
    detail::PyRef signal_mod = import_module("signal");
    detail::PyRef handler = detail::PyRef::steal(PyObject_GetAttrString(gk_module.get(), "_interrupt"));
    if (!signal_mod || !handler)
      return setup_failed("cannot set up the interrupt signal");
    detail::PyRef r = detail::PyRef::steal(
        PyObject_CallMethod(signal_mod.get(), "signal", "iO", signo, handler.get()));
    if (!r)
      return setup_failed("cannot install the interrupt handler for signal " + std::to_string(signo));
    // In front of Python's C-level handler: note whether the signal found
    // this thread holding the GIL (see Interpreter::probe_native).
    struct sigaction python_action {};
    if (sigaction(signo, nullptr, &python_action) != 0)
      return setup_failed("cannot read the interrupt handler for signal " + std::to_string(signo));
    g_python_interrupt_action = python_action;
    struct sigaction front = python_action;
    front.sa_flags |= SA_SIGINFO;
    front.sa_sigaction = &interrupt_front;
    if (sigaction(signo, &front, nullptr) != 0)
      return setup_failed("cannot install the interrupt handler for signal " + std::to_string(signo));
    impl->signo = signo;
  }

  // Formatting the first traceback would otherwise import `traceback`
  // (several ms) just when a deadline error should be quick.
  if (!import_module("traceback"))
    PyErr_Clear();

  // The cyclic GC cannot be interrupted: a signal that arrives during a pass
  // is handled after it. Start-up leaves thousands of young objects behind,
  // so the first collections of an allocating request would scan them (the
  // first soft interrupt of a fresh runtime came >1 ms late that way); collect
  // them now, and freeze what survives (modules, classes, functions that live
  // as long as the interpreter), so that no later full pass scans it again
  // (0.4-1.2 ms per pass on the 2-core test machine).
  detail::PyRef gc_module = import_module("gc");
  detail::PyRef collected = gc_module ? detail::PyRef::steal(PyObject_CallMethod(gc_module.get(), "collect", nullptr))
                                      : detail::PyRef();
  detail::PyRef frozen = collected ? detail::PyRef::steal(PyObject_CallMethod(gc_module.get(), "freeze", nullptr))
                                   : detail::PyRef();
  if (!frozen)
    PyErr_Clear();

  detail::PyRef main_module = import_module("__main__");
  if (!main_module)
    return setup_failed("cannot import __main__");
  impl->main_dict = PyModule_GetDict(main_module.get());

  // multiprocessing must not fork this threaded process: "spawn" by default.
  if (!detail::install_multiprocessing_defaults(*policy))
    return setup_failed("cannot set multiprocessing's default start method");
  if (police && !detail::activate_capabilities(*policy))
    return setup_failed("cannot activate the capability rules");

  detail::interrupt_state().on_interrupted = impl->options.on_interrupted;
  auto& host = detail::host_call_state();
  host.call = impl->options.host_call;
  host.names = impl->options.host_names;
  host.policy = policy.get();
  host.owner = pthread_self();
  detail::buffer_owner().table = &impl->table;
  detail::buffer_owner().release = impl->options.release_buffer;
  impl->main_tstate = PyEval_SaveThread();
  return std::unique_ptr<Interpreter>(new Interpreter(std::move(impl)));
}

void Interpreter::wake_on_interrupt(int fd) noexcept {
  g_interrupt_wake_fd.store(fd, std::memory_order_release);
}

bool Interpreter::interrupt_pending(std::uint64_t seq) noexcept {
  return detail::interrupt_aimed_at(seq);
}

void Interpreter::acquire_gil() {
  PyEval_RestoreThread(impl_->main_tstate);
}

void Interpreter::release_gil() {
  impl_->main_tstate = PyEval_SaveThread();
}

void Interpreter::begin_request(std::uint64_t seq, const std::string& label, Deadline deadline) {
  auto& st = detail::interrupt_state();
  st.current = seq;
  st.label = label;
  st.deadline = deadline;
  impl_->origin = label;
}

void Interpreter::end_request() {
  auto& st = detail::interrupt_state();
  st.current = 0;
  st.deadline = Deadline{};
  detail::clear_interrupt();
  // The interrupted exception, and what the code built that its frames
  // hold, goes here: after an early answer to the caller (on_interrupted),
  // and before the next request's time starts.
  detail::drop_interrupted();
}

Expected<Value> Interpreter::run(const ImportRequest& r) {
  if (r.module.empty())
    return bad_request("import: empty module name");
  detail::PyRef m = import_module(r.module);
  if (!m)
    return impl_->result({}, false, r.module);
  return Value();
}

Expected<Value> Interpreter::run(const CallRequest& r) {
  auto& impl = *impl_;
  // Made only on an error.
  auto where = [&] { return r.self ? "<" + r.self.type_name() + ">" + (r.target.empty() ? "" : "." + r.target) : r.target; };
  detail::PyRef callable;
  if (r.self) {
    Error err;
    PyObject* self = impl.resolve(r.self, "self", err);
    if (!self)
      return err;
    callable = r.target.empty() ? detail::PyRef::borrow(self) : get_path(self, r.target);
  } else if (impl.in_batch && impl.cached_callable && r.target == impl.cached_target) {
    callable = detail::PyRef::borrow(impl.cached_callable.get());
  } else {
    Target t;
    if (!split_target(r.target, t))
      return bad_request("call: target \"" + r.target + "\" is not \"module:function\"", r.target);
    detail::PyRef m = import_module(t.module);
    if (m)
      callable = get_path(m.get(), t.path);
    if (callable && impl.in_batch) {
      impl.cached_target = r.target;
      impl.cached_callable = detail::PyRef::borrow(callable.get());
    }
  }
  if (!callable)
    return impl.result({}, false, where());

  auto refs = impl.refs();
  Error err;
  detail::PyRef args = detail::PyRef::steal(PyTuple_New(static_cast<Py_ssize_t>(r.args.size())));
  if (!args)
    return impl.result({}, false, where());
  for (std::size_t i = 0; i < r.args.size(); ++i) {
    PyObject* a = detail::to_python(r.args[i], refs, "args[" + std::to_string(i) + "]", err);
    if (!a)
      return err;
    PyTuple_SET_ITEM(args.get(), static_cast<Py_ssize_t>(i), a);
  }
  detail::PyRef kwargs;
  if (!r.kwargs.empty()) {
    detail::PyRef d = detail::PyRef::steal(detail::to_python(Value(r.kwargs), refs, "kwargs", err));
    if (!d)
      return err;
    kwargs = std::move(d);
  }
  detail::PyRef out = detail::PyRef::steal(PyObject_Call(callable.get(), args.get(), kwargs.get()));
  return impl.result(std::move(out), r.want_ref, out ? std::string() : where());
}

Expected<Value> Interpreter::run(const EvalRequest& r) {
  detail::PyRef code = detail::PyRef::steal(Py_CompileString(r.expression.c_str(), "<eval>", Py_eval_input));
  if (!code)
    return impl_->result({}, false, {});
  return impl_->result(
      detail::PyRef::steal(PyEval_EvalCode(code.get(), impl_->main_dict, impl_->main_dict)), r.want_ref, {});
}

Expected<Value> Interpreter::run(const ExecRequest& r) {
  detail::PyRef code = detail::PyRef::steal(Py_CompileString(r.code.c_str(), "<exec>", Py_file_input));
  if (!code)
    return impl_->result({}, false, {});
  detail::PyRef out = detail::PyRef::steal(PyEval_EvalCode(code.get(), impl_->main_dict, impl_->main_dict));
  if (!out)
    return impl_->result({}, false, {});
  return Value();
}

Expected<Value> Interpreter::run(const GetattrRequest& r) {
  auto& impl = *impl_;
  detail::PyRef obj;
  if (r.object) {
    Error err;
    PyObject* o = impl.resolve(r.object, "object", err);
    if (!o)
      return err;
    obj = r.target.empty() ? detail::PyRef::borrow(o) : get_path(o, r.target);
  } else {
    Target t;
    if (!split_target(r.target, t))
      return bad_request("getattr: target \"" + r.target + "\" is not \"module:attribute\"", r.target);
    detail::PyRef m = import_module(t.module);
    if (m)
      obj = get_path(m.get(), t.path);
  }
  std::string where = obj ? std::string() : r.object ? "<" + r.object.type_name() + ">." + r.target : r.target;
  return impl.result(std::move(obj), r.want_ref, where);
}

Expected<Value> Interpreter::run(const ReleaseRequest& r) {
  if (!impl_->table.remove(r.id, r.epoch)) {
    Error e(ErrorCode::stale_ref, "release: Ref #" + std::to_string(r.id) + " is not live");
    return e;
  }
  return Value();
}

void Interpreter::begin_batch() {
  impl_->in_batch = true;
}

void Interpreter::end_batch() {
  impl_->in_batch = false;
  impl_->cached_target.clear();
  impl_->cached_callable = detail::PyRef();
}

std::size_t Interpreter::live_refs() const {
  return impl_->table.size();
}

std::uint64_t Interpreter::epoch() const noexcept {
  return impl_->table.epoch();
}

std::string Interpreter::python_version() {
  return PY_VERSION;
}

int Interpreter::signal_number() const noexcept {
  return impl_->signo;
}

std::uint64_t Interpreter::capability_denials() const {
  return impl_->policy ? detail::capability_denials(*impl_->policy) : 0;
}

void Interpreter::interrupt(pthread_t owner, std::uint64_t seq, bool cancel) noexcept {
  if (impl_->signo == 0)
    return;
  detail::aim_interrupt(seq, cancel ? detail::InterruptReason::cancelled : detail::InterruptReason::deadline);
  pthread_kill(owner, impl_->signo);
}

bool Interpreter::free_threaded() noexcept {
#ifdef Py_GIL_DISABLED
  return true;
#else
  return false;
#endif
}

bool Interpreter::gil_enabled() {
  if (!free_threaded())
    return true;
  PyObject* sys = PyImport_AddModule("sys");  // borrowed
  detail::PyRef r = sys ? detail::PyRef::steal(PyObject_CallMethod(sys, "_is_gil_enabled", nullptr)) : detail::PyRef();
  if (!r) {
    PyErr_Clear();
    return true;
  }
  return PyObject_IsTrue(r.get()) == 1;
}

bool Interpreter::start_tracing_memory() {
  return detail::start_tracemalloc();
}

std::vector<AllocationSite> Interpreter::top_allocations(int top) {
  if (!impl_->memory_state)
    impl_->memory_state = detail::PyRef::steal(PyDict_New());
  return impl_->memory_state ? detail::top_allocations(impl_->memory_state.get(), top) : std::vector<AllocationSite>{};
}

LeakCheck Interpreter::check_leaks(int top) {
  if (!impl_->memory_state)
    impl_->memory_state = detail::PyRef::steal(PyDict_New());
  return impl_->memory_state ? detail::check_leaks(impl_->memory_state.get(), top) : LeakCheck{};
}

NativeProbe Interpreter::probe_native(std::uint64_t seq, std::chrono::nanoseconds probe) noexcept {
  if (!detail::interrupt_aimed_at(seq))
    return NativeProbe::taken;
  auto d = detail::delivery();
  if (d.at == 0)
    return NativeProbe::undelivered;
  if (!d.gil_held)
    return NativeProbe::blocking;
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  std::int64_t now_ns = static_cast<std::int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
  return now_ns - d.at >= probe.count() ? NativeProbe::stuck : NativeProbe::undelivered;
}

namespace {

std::mutex g_sample_mutex;  // one sample at a time per process
std::atomic<std::uint64_t> g_pending_probe{0};

int probe_python_ran(void* arg) {
  g_pending_probe.store(reinterpret_cast<std::uintptr_t>(arg), std::memory_order_release);
  return 0;
}

// "  File "x.py", line 3 in f" -> "x.py:3 in f" kept as written: the first
// frame line of a faulthandler dump (the innermost frame).
std::string innermost_frame(const std::string& dump) {
  auto at = dump.find("  File ");
  if (at == std::string::npos)
    return {};
  auto end = dump.find('\n', at);
  return dump.substr(at + 2, end == std::string::npos ? std::string::npos : end - at - 2);
}

} // namespace

StackSample Interpreter::sample_stack(pthread_t owner, std::chrono::nanoseconds wait) const {
  StackSample out;
  if (impl_->signo == 0) {
    out.note = "no interrupt signal ([runtime] interrupt_signal = \"none\"): the stack cannot be taken";
    return out;
  }
  std::lock_guard<std::mutex> g(g_sample_mutex);
  static int fd = [] {
    int f = ::memfd_create("gk-stack", MFD_CLOEXEC);
    detail::set_probe_fd(f);
    return f;
  }();
  if (fd < 0) {
    out.note = "cannot create the buffer for a stack sample";
    return out;
  }
  if (::ftruncate(fd, 0) != 0 || ::lseek(fd, 0, SEEK_SET) != 0) {
    out.note = "cannot reset the buffer for a stack sample";
    return out;
  }
  // The pending call runs when Python code next checks the eval breaker,
  // which Python's own handler of the signal sets (a pending call added from
  // another thread does not set it by itself).
  static std::atomic<std::uintptr_t> probes{0};
  auto mark = ++probes;
  bool probing = Py_AddPendingCall(&probe_python_ran, reinterpret_cast<void*>(mark)) == 0;
  detail::set_sample_state(detail::SampleState::pending);
  auto until = std::chrono::steady_clock::now() + wait;
  pthread_kill(owner, impl_->signo);
  while (detail::sample_state() != detail::SampleState::taken) {
    if (std::chrono::steady_clock::now() >= until) {
      detail::set_sample_state(detail::SampleState::idle);
      out.note = "the interpreter's thread did not take the sample signal within "
                 + std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(wait).count()) + " ms";
      return out;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  detail::set_sample_state(detail::SampleState::idle);
  out.taken = true;
  out.gil_held = detail::sample_gil_held();
  char buf[8192];
  ssize_t n = 0;
  off_t at = 0;
  while ((n = ::pread(fd, buf, sizeof buf, at)) > 0 && out.stack.size() < (1u << 20)) {
    out.stack.append(buf, static_cast<std::size_t>(n));
    at += n;
  }
  out.where = innermost_frame(out.stack);
  if (!out.gil_held) {
    out.in_native = true;  // a blocking call that released the GIL
  } else {
    // Holding the GIL: Python code runs the pending call within
    // microseconds; native code that holds the GIL does not.
    // A pending call that cannot be added means the queue of them is full:
    // Python code has not run for a while (native code holds the GIL).
    out.in_native = true;
    if (probing) {
      auto native_until = std::chrono::steady_clock::now() + std::chrono::milliseconds(5);
      while (g_pending_probe.load(std::memory_order_acquire) != mark
             && std::chrono::steady_clock::now() < native_until)
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      out.in_native = g_pending_probe.load(std::memory_order_acquire) != mark;
    }
  }
  return out;
}

namespace {

// Joins non-daemon Python threads for up to `grace`; returns the names of
// those still alive. PRECONDITION: GIL held.
std::vector<std::string> join_python_threads(std::chrono::nanoseconds grace) {
  static const char* code =
      "def _gk_join_threads(grace):\n"
      "    import sys, time\n"
      "    threading = sys.modules.get('threading')\n"
      "    if threading is None:\n"
      "        return []\n"
      "    me = threading.current_thread()\n"
      "    end = time.monotonic() + grace\n"
      "    def pending():\n"
      "        return [t for t in threading.enumerate()\n"
      "                if t is not me and not t.daemon and t.is_alive()]\n"
      "    for t in pending():\n"
      "        t.join(max(0.0, end - time.monotonic()))\n"
      "    return [t.name for t in pending()]\n";
  std::vector<std::string> alive;
  detail::PyRef globals = detail::PyRef::steal(PyDict_New());
  if (!globals)
    return alive;
  PyDict_SetItemString(globals.get(), "__builtins__", PyEval_GetBuiltins());
  detail::PyRef r = detail::PyRef::steal(PyRun_String(code, Py_file_input, globals.get(), globals.get()));
  PyObject* fn = r ? PyDict_GetItemString(globals.get(), "_gk_join_threads") : nullptr;
  detail::PyRef names;
  if (fn)
    names = detail::PyRef::steal(PyObject_CallFunction(fn, "d", std::chrono::duration<double>(grace).count()));
  if (!names) {
    PyErr_Clear();
    return alive;
  }
  auto v = detail::from_python(names.get(), "threads");
  if (v && v->is_list())
    for (auto& n : v->as_list())
      if (n.is_string())
        alive.push_back(n.as_string());
  return alive;
}

} // namespace

ShutdownReport Interpreter::finalize(std::chrono::nanoseconds grace) {
  auto& impl = *impl_;
  detail::interrupt_state().on_interrupted = nullptr;
  detail::host_call_state().call = nullptr;
  detail::host_call_state().names = nullptr;
  detail::buffer_owner().table = nullptr;
  detail::buffer_owner().release = nullptr;
  ShutdownReport report;
  for (auto& [id, e] : impl.table.entries())
    report.leaked_refs.push_back(LeakedRef{id, e.type_name, e.origin});
  impl.table.clear();
  impl.memory_state = detail::PyRef();
  if (!report.leaked_refs.empty())
    report.message = std::to_string(report.leaked_refs.size()) + " Ref(s) still alive at shutdown";

  auto alive = join_python_threads(grace);
  if (!alive.empty()) {
    std::string names;
    for (auto& n : alive)
      names += (names.empty() ? "" : ", ") + n;
    if (!report.message.empty())
      report.message += "; ";
    report.message += "interpreter not finalized: non-daemon Python thread(s) still running after "
                      + std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(grace).count())
                      + "ms: " + names;
    impl.main_tstate = PyEval_SaveThread();
    std::lock_guard<std::mutex> guard(g_slot_mutex);
    g_slot = Slot::abandoned;
    return report;
  }
  detail::reset_caches();
  detail::reset_module_types();
  int rc = Py_FinalizeEx();
  // The rules held while atexit handlers ran; the interpreter is gone now.
  detail::retire_capabilities();
  report.finalized = rc == 0;
  if (rc != 0)
    report.message += std::string(report.message.empty() ? "" : "; ") + "Py_FinalizeEx reported an error";
  // Python restored the default action (terminate) for our signal; a late
  // interrupt must not kill the host.
  if (impl.signo != 0)
    std::signal(impl.signo, SIG_IGN);
  impl.main_tstate = nullptr;
  std::lock_guard<std::mutex> guard(g_slot_mutex);
  g_slot = Slot::free;
  return report;
}

} // namespace gk
