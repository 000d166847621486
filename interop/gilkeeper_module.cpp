// The `gilkeeper` builtin module that Python code running in the runtime sees:
//   gilkeeper.DeadlineExceeded  (a TimeoutError) raised when a call runs past
//                               its deadline;
//   gilkeeper.CapabilityDenied  (a PermissionError) raised by capability rules;
//   gilkeeper.Cancelled         raised in a running call that was cancelled;
//   gilkeeper.remaining()       seconds left before the running request's
//                               deadline, or None;
//   gilkeeper._interrupt        the signal handler behind soft deadlines.

#include "interop/detail/py.hpp"
#include "interop/detail/interrupt.hpp"

namespace gk::detail {

namespace {

PyObject* g_deadline_exceeded = nullptr;
PyObject* g_capability_denied = nullptr;
PyObject* g_cancelled = nullptr;

PyObject* py_interrupt(PyObject*, PyObject*) {
  auto& st = interrupt_state();
  // Only the request the interrupt was aimed at is interrupted: a signal
  // that arrives late (its request already finished) is ignored here.
  InterruptReason reason = InterruptReason::deadline;
  if (st.current != 0 && consume_interrupt(st.current, reason)) {
    if (reason == InterruptReason::cancelled) {
      std::string msg = st.label + " was cancelled";
      PyErr_SetString(g_cancelled, msg.c_str());
    } else {
      std::string msg = st.label + " ran past its deadline";
      PyErr_SetString(g_deadline_exceeded, msg.c_str());
    }
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
  g_capability_denied = PyErr_NewExceptionWithDoc(
      "gilkeeper.CapabilityDenied", "A capability rule of the runtime denied this action.",
      PyExc_PermissionError, nullptr);
  g_cancelled = PyErr_NewExceptionWithDoc(
      "gilkeeper.Cancelled",
      "The running request was cancelled by its caller. Catch it to clean up; the caller "
      "is told cancelled either way.",
      PyExc_Exception, nullptr);
  if (!g_deadline_exceeded || !g_capability_denied || !g_cancelled) {
    Py_DECREF(m);
    return nullptr;
  }
  Py_INCREF(g_deadline_exceeded);
  Py_INCREF(g_capability_denied);
  Py_INCREF(g_cancelled);
  if (PyModule_AddObject(m, "DeadlineExceeded", g_deadline_exceeded) != 0
      || PyModule_AddObject(m, "CapabilityDenied", g_capability_denied) != 0
      || PyModule_AddObject(m, "Cancelled", g_cancelled) != 0
      || PyModule_AddStringConstant(m, "__version__", GK_VERSION) != 0) {
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

PyObject* cancelled_type() {
  return g_cancelled;
}

void reset_module_types() {
  Py_CLEAR(g_deadline_exceeded);
  Py_CLEAR(g_capability_denied);
  Py_CLEAR(g_cancelled);
}

InterruptState& interrupt_state() {
  static InterruptState st;
  return st;
}

} // namespace gk::detail
