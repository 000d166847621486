// What every capability rule uses: reading an audit event's arguments, names
// and paths, and raising the denial.

#include "interop/detail/capability_policy.hpp"

#include <climits>
#include <cstdlib>
#include <unistd.h>

namespace gk::detail {

// -- small helpers --------------------------------------------------------------

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

std::string utf8(PyObject* s) {
  Py_ssize_t n = 0;
  const char* c = s && PyUnicode_Check(s) ? PyUnicode_AsUTF8AndSize(s, &n) : nullptr;
  if (!c) {
    PyErr_Clear();
    return {};
  }
  return std::string(c, static_cast<std::size_t>(n));
}

std::optional<std::string> path_of(PyObject* o) {
  if (!o || o == Py_None || PyLong_Check(o))
    return std::nullopt;
  PyRef p = PyRef::steal(PyOS_FSPath(o));
  if (!p) {
    PyErr_Clear();
    return std::nullopt;
  }
  if (PyBytes_Check(p.get()))
    return std::string(PyBytes_AS_STRING(p.get()), static_cast<std::size_t>(PyBytes_GET_SIZE(p.get())));
  return utf8(p.get());
}

std::string quoted(std::string_view s) {
  return "\"" + std::string(s) + "\"";
}

PyObject* arg(PyObject* args, Py_ssize_t i) {
  return args && PyTuple_Check(args) && i < PyTuple_GET_SIZE(args) ? PyTuple_GET_ITEM(args, i) : nullptr;
}

std::string basename_of(std::string_view path) {
  auto slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

std::string dirname_of(std::string_view path) {
  auto slash = path.rfind('/');
  if (slash == std::string_view::npos)
    return ".";
  return slash == 0 ? "/" : std::string(path.substr(0, slash));
}

std::optional<std::string> real_path(const std::string& path) {
  char* r = ::realpath(path.c_str(), nullptr);
  if (!r)
    return std::nullopt;
  std::string out(r);
  std::free(r);
  return out;
}

std::string current_dir() {
  char buf[PATH_MAX];
  return ::getcwd(buf, sizeof buf) ? std::string(buf) : std::string("/");
}

// -- denial -----------------------------------------------------------------------

namespace {

// Raises `type` (a subclass of gilkeeper.CapabilityDenied) naming the rule:
//   capability denied by capabilities.<key>: <what>
// with attributes `rule` ("capabilities.<key>: <subject>"), `key`, and `name`
// when it is an ImportDenied. Outside the main interpreter, whose module the
// classes belong to, raises `fallback` (the builtin base) instead.
int raise_denial(CapabilityPolicy& p, PyObject* type, PyObject* fallback, const std::string& key,
                 const std::string& subject, const std::string& what, const std::string* module) {
  p.denials.fetch_add(1, std::memory_order_relaxed);
  const std::string full_key = "capabilities." + key;
  const std::string message = "capability denied by " + full_key + ": " + what;
  if (!type || PyInterpreterState_Get() != PyInterpreterState_Main())
    type = fallback;
  PyRef exc = PyRef::steal(PyObject_CallFunction(type, "s", message.c_str()));
  if (!exc)
    return -1;  // MemoryError or similar, already set
  PyRef rule = PyRef::steal(PyUnicode_FromString((full_key + ": " + subject).c_str()));
  PyRef key_obj = PyRef::steal(PyUnicode_FromString(full_key.c_str()));
  PyRef name = module ? PyRef::steal(PyUnicode_FromString(module->c_str())) : PyRef();
  if (!rule || !key_obj || PyObject_SetAttrString(exc.get(), "rule", rule.get()) != 0
      || PyObject_SetAttrString(exc.get(), "key", key_obj.get()) != 0
      || (module && (!name || PyObject_SetAttrString(exc.get(), "name", name.get()) != 0)))
    PyErr_Clear();
  PyErr_SetObject(type, exc.get());
  return -1;
}

} // namespace

int deny(CapabilityPolicy& p, const std::string& key, const std::string& subject,
         const std::string& what) {
  return raise_denial(p, permission_denied_type(), PyExc_PermissionError, key, subject, what, nullptr);
}

int deny_import(CapabilityPolicy& p, const std::string& key, const std::string& subject,
                const std::string& what, const std::string& module) {
  return raise_denial(p, import_denied_type(), PyExc_ImportError, key, subject, what, &module);
}

} // namespace gk::detail
