// The `gilkeeper` builtin module that Python code running in the runtime sees:
//   gilkeeper.DeadlineExceeded  (a TimeoutError) raised when a call runs past
//                               its deadline;
//   gilkeeper.CapabilityDenied  the base of what capability rules raise:
//     gilkeeper.ImportDenied      (also an ImportError) for a module or native
//                                 extension that may not be loaded,
//     gilkeeper.PermissionDenied  (also a PermissionError) for anything else;
//   gilkeeper.Cancelled         raised in a running call that was cancelled;
//   gilkeeper.host.NAME(...)   calls the host function NAME (host_call.cpp);
//   gilkeeper.HostError         raised when a host function fails;
//   gilkeeper.remaining()       seconds left before the running request's
//                               deadline, or None;
//   gilkeeper._interrupt        the signal handler behind soft deadlines.

#include "interop/detail/py.hpp"
#include "interop/detail/host_call.hpp"
#include "interop/detail/buffer_convert.hpp"
#include "interop/detail/interrupt.hpp"
#include "interop/detail/stack_trace.hpp"

namespace gk::detail {

namespace {

PyObject* g_deadline_exceeded = nullptr;
PyObject* g_capability_denied = nullptr;
PyObject* g_import_denied = nullptr;
PyObject* g_permission_denied = nullptr;
PyObject* g_cancelled = nullptr;

// Raises `type(message)` in the interrupted code, whose innermost frame is
// `frame`, and tells the runtime at once (InterruptState::on_interrupted)
// with the traceback of where the code was: its caller need not wait for the
// exception to unwind (except/finally blocks, freeing what the code built).
void raise_interrupt(PyObject* type, ErrorCode code, const std::string& message, PyObject* frame) {
  auto& st = interrupt_state();
  PyRef exc = PyRef::steal(PyObject_CallFunction(type, "s", message.c_str()));
  if (!exc)
    return;  // that error (a MemoryError) is raised instead
  Error e(code, message);
  if (code == ErrorCode::deadline_exceeded)
    e.phase = DeadlinePhase::soft;
  e.type = type_name(exc.get());
  e.traceback = format_stack_traceback(frame, e.type, message);
  Py_XSETREF(st.raised, Py_NewRef(exc.get()));
  st.raised_traceback = e.traceback;
  if (st.on_interrupted) {
    try {
      st.on_interrupted(std::move(e));
    } catch (...) {
      // Nothing may unwind through Python's frames; the executor's own reply
      // still answers the caller.
    }
  }
  PyErr_SetObject(type, exc.get());
}

PyObject* py_interrupt(PyObject*, PyObject* args) {
  auto& st = interrupt_state();
  // Only the request the interrupt was aimed at is interrupted: a signal
  // that arrives late (its request already finished) is ignored here.
  InterruptReason reason = InterruptReason::deadline;
  if (st.current != 0 && consume_interrupt(st.current, reason)) {
    // A Python-level signal handler is called with (signum, frame).
    PyObject* frame = PyTuple_Check(args) && PyTuple_GET_SIZE(args) >= 2 ? PyTuple_GET_ITEM(args, 1) : nullptr;
    if (reason == InterruptReason::cancelled)
      raise_interrupt(g_cancelled, ErrorCode::cancelled, st.label + " was cancelled", frame);
    else
      raise_interrupt(g_deadline_exceeded, ErrorCode::deadline_exceeded, st.label + " ran past its deadline", frame);
    return nullptr;
  }
  Py_RETURN_NONE;
}

PyObject* py_remaining(PyObject*, PyObject*) {
  auto& st = interrupt_state();
  if (st.current == 0 || !st.deadline.is_finite())
    Py_RETURN_NONE;
  auto ns = st.deadline.remaining().count();
  return PyFloat_FromDouble(static_cast<double>(ns) / 1e9);
}

PyMethodDef methods[] = {
    {"_interrupt", py_interrupt, METH_VARARGS, "Signal handler for soft deadlines (internal)."},
    {"remaining", py_remaining, METH_NOARGS,
     "Seconds left before the running request's deadline, or None when it has none."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "gilkeeper",
                          "The gilkeeper runtime, as seen from Python code it runs.", -1, methods,
                          nullptr, nullptr, nullptr, nullptr};

} // namespace

PyObject* init_gilkeeper_module() {
  PyObject* m = PyModule_Create(&module_def);
  if (!m)
    return nullptr;
  // Fresh classes per interpreter (a runtime may be restarted in a process).
  g_deadline_exceeded = PyErr_NewExceptionWithDoc(
      "gilkeeper.DeadlineExceeded",
      "The running request passed its deadline. Catch it to clean up; the caller "
      "is told deadline_exceeded either way.",
      PyExc_TimeoutError, nullptr);
  // A denial is one of two builtin kinds, so that code written for that kind
  // copes (`except ImportError` around an optional import). ImportError and
  // PermissionError have different C layouts and cannot both be bases of one
  // class: CapabilityDenied is a plain Exception that both kinds derive from,
  // so `except gilkeeper.CapabilityDenied` still catches every denial.
  // ImportDenied is not a ModuleNotFoundError: the import system swallows
  // that one for `from package import submodule`, which would lose the rule.
  g_capability_denied = PyErr_NewExceptionWithDoc(
      "gilkeeper.CapabilityDenied",
      "A capability rule of the runtime denied this action: the base of ImportDenied and "
      "PermissionDenied. `rule` names the rule (\"capabilities.<key>: <subject>\"), `key` the key.",
      PyExc_Exception, nullptr);
  PyRef import_bases, permission_bases;
  if (g_capability_denied) {
    import_bases = PyRef::steal(PyTuple_Pack(2, g_capability_denied, PyExc_ImportError));
    permission_bases = PyRef::steal(PyTuple_Pack(2, g_capability_denied, PyExc_PermissionError));
  }
  if (import_bases)
    g_import_denied = PyErr_NewExceptionWithDoc(
        "gilkeeper.ImportDenied",
        "A capability rule denied loading a module or a native extension. An ImportError, so "
        "optional imports fall back as their authors intended; `name` is the module.",
        import_bases.get(), nullptr);
  if (permission_bases)
    g_permission_denied = PyErr_NewExceptionWithDoc(
        "gilkeeper.PermissionDenied",
        "A capability rule denied an action other than an import (fork, a process, a socket, a "
        "write, a native library). A PermissionError.",
        permission_bases.get(), nullptr);
  g_cancelled = PyErr_NewExceptionWithDoc(
      "gilkeeper.Cancelled",
      "The running request was cancelled by its caller. Catch it to clean up; the caller "
      "is told cancelled either way.",
      PyExc_Exception, nullptr);
  if (!g_deadline_exceeded || !g_capability_denied || !g_import_denied || !g_permission_denied || !g_cancelled) {
    Py_DECREF(m);
    return nullptr;
  }
  Py_INCREF(g_deadline_exceeded);
  Py_INCREF(g_capability_denied);
  Py_INCREF(g_import_denied);
  Py_INCREF(g_permission_denied);
  Py_INCREF(g_cancelled);
  if (PyModule_AddObject(m, "DeadlineExceeded", g_deadline_exceeded) != 0
      || PyModule_AddObject(m, "CapabilityDenied", g_capability_denied) != 0
      || PyModule_AddObject(m, "ImportDenied", g_import_denied) != 0
      || PyModule_AddObject(m, "PermissionDenied", g_permission_denied) != 0
      || PyModule_AddObject(m, "Cancelled", g_cancelled) != 0
      || PyModule_AddStringConstant(m, "__version__", GK_VERSION) != 0 || !add_host_module(m) || !add_buffer_type(m)) {
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}

PyObject* deadline_exceeded_type() {
  return g_deadline_exceeded;
}

PyObject* capability_denied_type() {
  return g_capability_denied;
}

PyObject* import_denied_type() {
  return g_import_denied;
}

PyObject* permission_denied_type() {
  return g_permission_denied;
}

PyObject* cancelled_type() {
  return g_cancelled;
}

void drop_interrupted() {
  auto& st = interrupt_state();
  Py_CLEAR(st.raised);
  st.raised_traceback.clear();
}

void reset_module_types() {
  drop_interrupted();
  Py_CLEAR(g_deadline_exceeded);
  Py_CLEAR(g_capability_denied);
  Py_CLEAR(g_import_denied);
  Py_CLEAR(g_permission_denied);
  Py_CLEAR(g_cancelled);
  reset_host_module();
  reset_buffer_type();
}

InterruptState& interrupt_state() {
  // Never destroyed: an interpreter thread that shutdown had to leave
  // running (stuck in native code) may still use it after the host's main
  // returns and static destructors run.
  static InterruptState& st = *new InterruptState;
  return st;
}

} // namespace gk::detail
