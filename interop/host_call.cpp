// `gilkeeper.host`: host functions (Runtime::expose) as Python code sees
// them, and `gilkeeper.HostError`.
//
//   from gilkeeper import host
//   host.resize(img, 64)        # runs the host's "resize", GIL released
//
// The call converts its arguments to Values, checks the capability rules
// (`allow_host`, `deny_host`), releases the GIL and hands the call to the
// runtime (InterpreterOptions::host_call), which runs the host function on a
// host thread and, while it waits, serves requests the host function makes
// on the call's behalf (nesting). A deadline or cancel that reaches the
// waiting call is raised here as for any blocking call.

#include "interop/detail/host_call.hpp"
#include "interop/detail/capability_policy.hpp"
#include "interop/detail/interrupt.hpp"
#include "interop/detail/py.hpp"

#include <algorithm>
#include <pthread.h>

namespace gk::detail {

namespace {

PyObject* g_host_error = nullptr;

HostState& host_state() {
  // Never destroyed (see interrupt_state()).
  static HostState& st = *new HostState;
  return st;
}

// Raises gilkeeper.HostError for `e`: `code` is the ErrorCode's name,
// `message` its message; str() says which function failed and why.
PyObject* raise_host_error(const std::string& name, const Error& e) {
  std::string text = "host function '" + name + "' failed: " + std::string(to_string(e.code)) + ": " + e.message;
  PyRef exc = PyRef::steal(PyObject_CallFunction(g_host_error, "s", text.c_str()));
  if (!exc)
    return nullptr;
  PyRef code = PyRef::steal(PyUnicode_FromString(to_string(e.code)));
  PyRef message = PyRef::steal(PyUnicode_DecodeUTF8(e.message.data(), static_cast<Py_ssize_t>(e.message.size()), "replace"));
  PyRef fn = PyRef::steal(PyUnicode_FromString(name.c_str()));
  if (!code || !message || !fn || PyObject_SetAttrString(exc.get(), "code", code.get()) != 0
      || PyObject_SetAttrString(exc.get(), "message", message.get()) != 0
      || PyObject_SetAttrString(exc.get(), "function", fn.get()) != 0)
    return nullptr;
  PyErr_SetObject(g_host_error, exc.get());
  return nullptr;
}

bool listed(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end()
         || std::find(names.begin(), names.end(), "*") != names.end();
}

// Calls the host function named by `self` (a str) with positional arguments.
PyObject* py_host_call(PyObject* self, PyObject* args, PyObject* kwargs) {
  auto& st = host_state();
  std::string name = utf8(self);
  if (kwargs && PyDict_Size(kwargs) > 0) {
    PyErr_Format(PyExc_TypeError, "gilkeeper.host.%s takes positional arguments only", name.c_str());
    return nullptr;
  }
  if (st.policy) {
    auto& caps = st.policy->caps;
    if (listed(caps.deny_host, name))
      return deny(*st.policy, "deny_host", name, "calling the host function '" + name + "'"), nullptr;
    if (!caps.allow_host.empty() && !listed(caps.allow_host, name))
      return deny(*st.policy, "allow_host", name, "calling the host function '" + name + "' (not in allow_host)"), nullptr;
  }
  if (!st.call)
    return raise_host_error(name, Error(ErrorCode::bad_request, "this interpreter has no host functions"));
  List values;
  Py_ssize_t n = PyTuple_GET_SIZE(args);
  values.reserve(static_cast<std::size_t>(n));
  for (Py_ssize_t i = 0; i < n; ++i) {
    auto v = from_python(PyTuple_GET_ITEM(args, i), "argument " + std::to_string(i + 1));
    if (!v)
      return raise_host_error(name, v.error());
    values.push_back(std::move(*v));
  }
  HostCallSite site;
  site.request_thread = pthread_equal(pthread_self(), st.owner) != 0;
  if (site.request_thread) {
    auto& is = interrupt_state();
    site.seq = is.current;
    site.deadline = is.deadline;
  }
  Expected<Value> result = Error();
  Py_BEGIN_ALLOW_THREADS
  result = st.call(name, std::move(values), site);
  Py_END_ALLOW_THREADS
  // A deadline or a cancel that ended the wait raises here, with the
  // traceback of this call, as in any blocking call.
  if (site.request_thread && PyErr_CheckSignals() < 0)
    return nullptr;
  if (!result) {
    const Error& e = result.error();
    if (site.request_thread && e.code == ErrorCode::deadline_exceeded) {
      PyErr_SetString(deadline_exceeded_type(), (interrupt_state().label + " ran past its deadline").c_str());
      return nullptr;
    }
    if (site.request_thread && e.code == ErrorCode::cancelled) {
      PyErr_SetString(cancelled_type(), (interrupt_state().label + " was cancelled").c_str());
      return nullptr;
    }
    return raise_host_error(name, e);
  }
  Error err;
  PyObject* out = to_python(*result, RefContext{}, "result", err);
  if (!out)
    return raise_host_error(name, err);
  return out;
}

PyMethodDef host_call_def = {"host_function", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(py_host_call)),
                             METH_VARARGS | METH_KEYWORDS, "Calls the host function of this name."};

// Module-level __getattr__ of gilkeeper.host (PEP 562): any public name is a
// host function; whether the host exposes it is known when it is called.
PyObject* py_host_getattr(PyObject*, PyObject* name) {
  std::string n = utf8(name);
  if (n.empty() || n[0] == '_') {
    PyErr_Format(PyExc_AttributeError, "module 'gilkeeper.host' has no attribute '%U'", name);
    return nullptr;
  }
  return PyCFunction_NewEx(&host_call_def, name, nullptr);
}

PyObject* py_host_dir(PyObject*, PyObject*) {
  auto& st = host_state();
  std::vector<std::string> names = st.names ? st.names() : std::vector<std::string>{};
  PyRef out = PyRef::steal(PyList_New(0));
  if (!out)
    return nullptr;
  for (auto& n : names) {
    PyRef s = PyRef::steal(PyUnicode_FromString(n.c_str()));
    if (!s || PyList_Append(out.get(), s.get()) != 0)
      return nullptr;
  }
  return out.release();
}

PyMethodDef host_module_methods[] = {
    {"__getattr__", py_host_getattr, METH_O, "Any public name is a host function (Runtime::expose)."},
    {"__dir__", py_host_dir, METH_NOARGS, "The host functions exposed now (thread isolation)."},
    {nullptr, nullptr, 0, nullptr}};

} // namespace

HostState& host_call_state() {
  return host_state();
}

bool add_host_module(PyObject* gilkeeper) {
  g_host_error = PyErr_NewExceptionWithDoc(
      "gilkeeper.HostError",
      "A host function (gilkeeper.host.NAME) failed: it returned an error, threw, or returned "
      "a value with no Python form. `code` is the error's code (\"python_exception\", "
      "\"deadline_exceeded\", ...), `message` its message, `function` the host function's name.",
      PyExc_Exception, nullptr);
  if (!g_host_error)
    return false;
  Py_INCREF(g_host_error);
  if (PyModule_AddObject(gilkeeper, "HostError", g_host_error) != 0)
    return false;
  PyRef host = PyRef::steal(PyModule_New("gilkeeper.host"));
  if (!host || PyModule_AddFunctions(host.get(), host_module_methods) != 0)
    return false;
  // `import gilkeeper.host` as well as `from gilkeeper import host`.
  PyObject* modules = PyImport_GetModuleDict();  // borrowed
  if (!modules || PyDict_SetItemString(modules, "gilkeeper.host", host.get()) != 0)
    return false;
  return PyModule_AddObject(gilkeeper, "host", host.release()) == 0;
}

void reset_host_module() {
  Py_CLEAR(g_host_error);
}

} // namespace gk::detail
