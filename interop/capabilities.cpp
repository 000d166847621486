// The capability rules of [capabilities], enforced by a C-level audit hook
// (PEP 578): the hook, the policy's lifetime, and the process rules (fork,
// subprocess). docs/capabilities.md says what each rule means; this file says
// how the audit events map to it (the rules on modules, the network and
// writes are in interop/detail/*_rules.cpp).
//
// PRECONDITION for the hook and everything it calls: the GIL is held (CPython
// raises audit events only from threads that hold it), so the policy's
// non-atomic state needs no lock.

#include "interop/capabilities.hpp"
#include "interop/detail/capability_policy.hpp"

#include <cstring>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

namespace gk::detail {

namespace {

// -- processes ----------------------------------------------------------------------

int deny_fork(CapabilityPolicy& p, const std::string& event) {
  return deny(p, "fork", event,
              event + "() (fork is denied by default: forking a process that has other threads can "
                      "leave the child deadlocked on a lock another thread held; use subprocess, or "
                      "multiprocessing with its default \"spawn\" start method; fork = \"allow\" under "
                      "[capabilities] allows it)");
}

std::string program_of(const char* event, PyObject* args) {
  PyObject* first = arg(args, 0);
  if (std::strcmp(event, "subprocess.Popen") == 0 && (!first || first == Py_None)) {
    PyObject* argv = arg(args, 1);
    if (argv && PySequence_Check(argv) && !PyUnicode_Check(argv) && !PyBytes_Check(argv)) {
      PyRef item = PyRef::steal(PySequence_GetItem(argv, 0));
      PyErr_Clear();
      if (item)
        return path_of(item.get()).value_or("?");
    }
    return path_of(argv).value_or("?");
  }
  return path_of(first).value_or("?");
}

// -- the hook -----------------------------------------------------------------------

int check_event(CapabilityPolicy& p, const char* event, PyObject* args) {
  const std::string_view ev(event);
  switch (event[0]) {
  case 'i':
    if (ev == "import" && (p.module_rules || p.native_rule))
      return check_import(p, args);
    return 0;
  case 'e':
    if (ev == "exec" && p.module_rules)
      return check_module_exec(p, arg(args, 0));
    return 0;
  case 'c':
    if (ev == "ctypes.dlopen")
      return check_library(p, event, arg(args, 0));
    return 0;
  case 'o':
    if (ev == "open")
      return p.caps.write_paths_set ? check_open(p, args) : 0;
    if (ev == "os.fork" || ev == "os.forkpty")
      return p.caps.fork ? 0 : deny_fork(p, std::string(ev));
    if (ev == "os.system" || ev == "os.posix_spawn" || ev == "os.exec")
      return p.caps.subprocess ? 0
                               : deny(p, "subprocess", std::string(ev),
                                      std::string(ev) + " of " + quoted(program_of(event, args)));
    if (!p.caps.write_paths_set || !starts_with(ev, "os."))
      return 0;
    if (ev == "os.remove" || ev == "os.rmdir")
      return check_write(p, event, arg(args, 0), arg(args, 1), false);
    if (ev == "os.mkdir")
      return check_write(p, event, arg(args, 0), arg(args, 2), false);
    if (ev == "os.rename" || ev == "os.link")
      return check_write(p, event, arg(args, 0), arg(args, 2), false) != 0
                 ? -1
                 : check_write(p, event, arg(args, 1), arg(args, 3), false);
    if (ev == "os.symlink")
      return check_write(p, event, arg(args, 1), arg(args, 2), false);
    if (ev == "os.chmod" || ev == "os.utime")
      return check_write(p, event, arg(args, 0), arg(args, ev == "os.chmod" ? 2 : 3), true);
    if (ev == "os.chown")
      return check_write(p, event, arg(args, 0), arg(args, 3), true);
    if (ev == "os.truncate" || ev == "os.setxattr" || ev == "os.removexattr")
      return check_write(p, event, arg(args, 0), nullptr, true);
    return 0;
  case 's':
    if (ev == "subprocess.Popen")
      return p.caps.subprocess ? 0
                               : deny(p, "subprocess", "subprocess.Popen",
                                      "subprocess.Popen of " + quoted(program_of(event, args)));
    if (starts_with(ev, "socket.")) {
      if (!p.network_rule)
        return ev == "socket.bind" ? check_unix_bind(p, arg(args, 1)) : 0;
      if (ev == "socket.__new__")
        return check_socket_new(p, args);
      if (ev == "socket.bind" && check_unix_bind(p, arg(args, 1)) != 0)
        return -1;
      if (ev == "socket.connect" || ev == "socket.bind" || ev == "socket.sendto" || ev == "socket.sendmsg")
        return check_address(p, event, arg(args, 1));
      if (ev == "socket.getaddrinfo" || ev == "socket.gethostbyname" || ev == "socket.gethostbyaddr")
        return check_lookup(p, event, arg(args, 0));
      if (ev == "socket.getnameinfo") {
        PyObject* sa = arg(args, 0);
        return check_lookup(p, event, sa && PyTuple_Check(sa) && PyTuple_GET_SIZE(sa) > 0 ? PyTuple_GET_ITEM(sa, 0)
                                                                                          : nullptr);
      }
      return 0;
    }
    if (ev == "shutil.rmtree")
      return p.caps.write_paths_set ? check_write(p, event, arg(args, 0), arg(args, 1), false) : 0;
    if (ev == "sqlite3.connect")
      return p.caps.write_paths_set ? check_sqlite(p, args) : 0;
    if (ev == "sqlite3.load_extension")
      return check_library(p, event, arg(args, 1));
    if (ev == "sqlite3.enable_load_extension" && p.native_rule && arg(args, 1)
        && PyObject_IsTrue(arg(args, 1)) == 1)
      // SQL's load_extension() raises no audit event: loading stays off.
      return deny(p, "native_extensions", "sqlite3.enable_load_extension",
                  "sqlite3 enable_load_extension(True) (SQL could then load any native library)");
    return 0;
  default:
    return 0;
  }
}

int audit_hook(const char* event, PyObject* args, void* user_data) {
  auto* p = static_cast<CapabilityPolicy*>(user_data);
  if (!p->active.load(std::memory_order_acquire))
    return 0;
  // Events may be raised while an exception is pending; keep it intact.
  PyObject *type = nullptr, *value = nullptr, *tb = nullptr;
  const bool pending = PyErr_Occurred() != nullptr;
  if (pending)
    PyErr_Fetch(&type, &value, &tb);
  int rc = check_event(*p, event, args);
  if (pending) {
    if (rc == 0)
      PyErr_Restore(type, value, tb);
    else {
      Py_XDECREF(type);
      Py_XDECREF(value);
      Py_XDECREF(tb);
    }
  }
  return rc;
}

// Every policy ever installed stays alive: an audit hook that CPython did not
// clear (an interpreter that could not be finalized) may still point at it.
std::mutex g_policies_mutex;
std::vector<std::shared_ptr<CapabilityPolicy>> g_policies;

const std::pair<std::string_view, std::string_view> implied_denials[] = {{"ctypes", "_ctypes"},
                                                                         {"cffi", "_cffi_backend"}};

} // namespace

std::shared_ptr<CapabilityPolicy> make_capability_policy(const CapabilitiesConfig& caps) {
  auto p = std::make_shared<CapabilityPolicy>();
  p->caps = caps;
  for (auto& d : caps.deny_modules) {
    p->deny.push_back({d, d});
    for (auto& [from, to] : implied_denials)
      if (d == from)
        p->deny.push_back({std::string(to), d});
  }
  p->module_rules = !caps.deny_modules.empty() || !caps.allow_modules.empty();
  p->native_rule = caps.native_extensions != NativePolicy::allow;
  p->network_rule = caps.network != NetworkPolicy::allow;
  return p;
}

bool restricts_anything(const CapabilityPolicy& p) noexcept {
  return p.module_rules || p.native_rule || p.network_rule || !p.caps.fork || !p.caps.subprocess
         || p.caps.write_paths_set;
}

void install_capability_hook(std::shared_ptr<CapabilityPolicy> policy) {
  CapabilityPolicy* raw = policy.get();
  {
    std::lock_guard<std::mutex> guard(g_policies_mutex);
    for (auto& old : g_policies)
      old->active.store(false, std::memory_order_release);
    g_policies.push_back(std::move(policy));
  }
  // CPython 3.11 clears C-level hooks in Py_FinalizeEx, so each interpreter
  // gets its own; Python code cannot remove it.
  PySys_AddAuditHook(&audit_hook, raw);
}

bool activate_capabilities(CapabilityPolicy& p) {
  PyObject* modules = PySys_GetObject("modules");  // borrowed
  PyObject* os = modules ? PyDict_GetItemString(modules, "os") : nullptr;
  PyRef file = os ? PyRef::steal(PyObject_GetAttrString(os, "__file__")) : PyRef();
  if (!file) {
    PyErr_Clear();
    PyErr_SetString(PyExc_RuntimeError, "cannot locate the standard library (os.__file__)");
    return false;
  }
  p.stdlib_dir = dirname_of(utf8(file.get()));
  p.stdlib_dynload = real_path(p.stdlib_dir + "/lib-dynload").value_or(std::string());
  p.write_dirs.clear();
  for (auto& dir : p.caps.write_paths)
    p.write_dirs.push_back(real_path(dir).value_or(dir));
  p.active.store(true, std::memory_order_release);
  return true;
}

void retire_capabilities() noexcept {
  std::lock_guard<std::mutex> guard(g_policies_mutex);
  for (auto& old : g_policies)
    old->active.store(false, std::memory_order_release);
}

std::uint64_t capability_denials(const CapabilityPolicy& p) noexcept {
  return p.denials.load(std::memory_order_relaxed);
}

} // namespace gk::detail
