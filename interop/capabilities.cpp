// The capability rules of [capabilities], enforced by a C-level audit hook
// (PEP 578), and multiprocessing's fork-safe defaults. docs/capabilities.md
// says what each rule means; this file says how the audit events map to it.
//
// PRECONDITION for the hook and everything it calls: the GIL is held (CPython
// raises audit events only from threads that hold it), so the policy's
// non-atomic state needs no lock.

#include "interop/capabilities.hpp"
#include "interop/detail/py.hpp"

#include <arpa/inet.h>
#include <atomic>
#include <cctype>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <mutex>
#include <netinet/in.h>
#include <optional>
#include <string_view>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace gk::detail {

class CapabilityPolicy {
public:
  struct DenyEntry {
    std::string name;   // a module name that is denied
    std::string entry;  // the deny_modules entry it comes from
  };

  CapabilitiesConfig caps;
  std::vector<DenyEntry> deny;
  bool module_rules = false;   // deny or allow lists given
  bool native_rule = false;    // native_extensions is not "allow"
  bool network_rule = false;   // network is not true
  // Filled in by activate_capabilities():
  std::string stdlib_dir;      // dirname(os.__file__), as sys.path spells it
  std::string stdlib_dynload;  // realpath of <stdlib_dir>/lib-dynload
  std::vector<std::string> write_dirs;  // realpath when it exists, else lexical
  std::atomic<bool> active{false};
  std::atomic<std::uint64_t> denials{0};
};

namespace {

// -- small helpers --------------------------------------------------------------

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A dotted name matches a rule when it is the rule or one of its submodules.
bool module_matches(std::string_view name, std::string_view rule) {
  return starts_with(name, rule) && (name.size() == rule.size() || name[rule.size()] == '.');
}

// A path is under a directory when it is the directory or inside it.
bool path_under(std::string_view path, std::string_view dir) {
  if (dir == "/")
    return !path.empty() && path[0] == '/';
  return starts_with(path, dir) && (path.size() == dir.size() || path[dir.size()] == '/');
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

// str, bytes or os.PathLike -> the path; nullopt for anything else (ints
// are file descriptors and handled by the callers).
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

// The directory a *_dir_fd argument names, or the working directory.
std::string base_dir(PyObject* dir_fd) {
  if (dir_fd && PyLong_Check(dir_fd)) {
    long fd = PyLong_AsLong(dir_fd);
    PyErr_Clear();
    if (fd >= 0) {
      char buf[PATH_MAX];
      std::string link = "/proc/self/fd/" + std::to_string(fd);
      ssize_t n = ::readlink(link.c_str(), buf, sizeof buf - 1);
      if (n > 0)
        return std::string(buf, static_cast<std::size_t>(n));
    }
  }
  return current_dir();
}

// Where a write to `path` lands, symlinks resolved like the kernel does.
// `follow`: the final component is followed when it is a symlink (open,
// chmod, truncate...); otherwise the name itself is acted on (remove,
// rename, mkdir...). Components that do not exist yet are kept as written.
std::string resolve_for_write(std::string path, const std::string& base, bool follow, int depth = 0) {
  if (path.empty() || path[0] != '/')
    path = base + "/" + path;
  while (path.size() > 1 && path.back() == '/')
    path.pop_back();
  std::string name = basename_of(path);
  if (follow || name == "." || name == "..") {
    if (auto r = real_path(path))
      return *r;
    struct stat st;
    if (follow && depth < 40 && ::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
      // A dangling symlink: open(O_CREAT) creates its target.
      char buf[PATH_MAX];
      ssize_t n = ::readlink(path.c_str(), buf, sizeof buf - 1);
      if (n > 0)
        return resolve_for_write(std::string(buf, static_cast<std::size_t>(n)),
                                 resolve_for_write(dirname_of(path), "/", false, depth + 1), true,
                                 depth + 1);
    }
  }
  // The deepest existing ancestor, then the rest as written.
  std::string parent = dirname_of(path);
  std::string rest = name;
  for (;;) {
    if (auto r = real_path(parent))
      return (*r == "/" ? "" : *r) + "/" + rest;
    if (parent == "/" || parent == ".")
      return path;
    rest = basename_of(parent) + "/" + rest;
    parent = dirname_of(parent);
  }
}

// -- denial -----------------------------------------------------------------------

// Raises gilkeeper.CapabilityDenied (a PermissionError) naming the rule:
//   capability denied by capabilities.<key>: <what>
// with attributes `rule` ("capabilities.<key>: <subject>") and `key`.
int deny(CapabilityPolicy& p, const std::string& key, const std::string& subject,
         const std::string& what) {
  p.denials.fetch_add(1, std::memory_order_relaxed);
  const std::string full_key = "capabilities." + key;
  const std::string message = "capability denied by " + full_key + ": " + what;
  PyObject* type = capability_denied_type();
  // The class belongs to the main interpreter; elsewhere raise its base.
  if (!type || PyInterpreterState_Get() != PyInterpreterState_Main())
    type = PyExc_PermissionError;
  PyRef exc = PyRef::steal(PyObject_CallFunction(type, "s", message.c_str()));
  if (!exc)
    return -1;  // MemoryError or similar, already set
  PyRef rule = PyRef::steal(PyUnicode_FromString((full_key + ": " + subject).c_str()));
  PyRef key_obj = PyRef::steal(PyUnicode_FromString(full_key.c_str()));
  if (!rule || !key_obj || PyObject_SetAttrString(exc.get(), "rule", rule.get()) != 0
      || PyObject_SetAttrString(exc.get(), "key", key_obj.get()) != 0)
    PyErr_Clear();
  PyErr_SetObject(type, exc.get());
  return -1;
}

// -- modules ------------------------------------------------------------------------

// Standard-library helpers that import a module their *caller* named: for
// an import made inside one of their functions, the caller is the importer.
bool imports_for_caller(std::string_view module) {
  static constexpr std::string_view names[] = {
      "importlib", "zipimport", "runpy",          "pkgutil",       "pickle",  "pydoc",
      "logging.config", "unittest.loader", "unittest.mock", "xml.sax", "xml.dom.domreg",
      "gilkeeper"};  // our multiprocessing finder
  for (auto n : names)
    if (module_matches(module, n))
      return true;
  return false;
}

// The module a source file or frozen code object belongs to, when it is part
// of the standard library (lexically under stdlib_dir but not in a
// site-packages/dist-packages directory there, or frozen), or the runtime's
// own Python code ("<gilkeeper ...>").
std::optional<std::string> stdlib_module(const CapabilityPolicy& p, std::string_view filename) {
  if (starts_with(filename, "<frozen ") && ends_with(filename, ">"))
    return std::string(filename.substr(8, filename.size() - 9));
  if (starts_with(filename, "<gilkeeper"))
    return std::string("gilkeeper");
  if (p.stdlib_dir.empty() || !starts_with(filename, p.stdlib_dir) || filename.size() <= p.stdlib_dir.size()
      || filename[p.stdlib_dir.size()] != '/')
    return std::nullopt;
  std::string_view rel = filename.substr(p.stdlib_dir.size() + 1);
  if (starts_with(rel, "site-packages/") || starts_with(rel, "dist-packages/"))
    return std::nullopt;
  std::string name(rel);
  if (ends_with(name, "/__init__.py"))
    name.resize(name.size() - 12);
  else if (ends_with(name, ".py"))
    name.resize(name.size() - 3);
  for (auto& c : name)
    if (c == '/')
      c = '.';
  return name;
}

struct Importer {
  bool host = true;        // no Python code on the stack: the runtime itself
  bool trusted = false;    // standard-library code
  std::string description; // "module (file)" for messages
};

// Who is importing: the innermost Python frame, skipping the functions of
// helpers that import on their caller's behalf.
Importer find_importer(const CapabilityPolicy& p) {
  Importer who;
  PyFrameObject* frame = PyEval_GetFrame();  // borrowed
  PyRef hold = PyRef::borrow(reinterpret_cast<PyObject*>(frame));
  while (frame) {
    PyRef code = PyRef::steal(reinterpret_cast<PyObject*>(PyFrame_GetCode(frame)));
    auto* co = reinterpret_cast<PyCodeObject*>(code.get());
    std::string filename = utf8(co->co_filename);
    bool module_body = utf8(co->co_name) == "<module>";
    auto std_module = stdlib_module(p, filename);
    if (!(std_module && !module_body && imports_for_caller(*std_module))) {
      who.host = false;
      who.trusted = std_module.has_value();
      PyRef globals = PyRef::steal(PyFrame_GetGlobals(frame));
      PyObject* name = globals ? PyDict_GetItemString(globals.get(), "__name__") : nullptr;
      std::string module = name ? utf8(name) : std::string();
      who.description = (module.empty() ? std::string("code") : module) + " (" + filename + ")";
      return who;
    }
    PyFrameObject* back = PyFrame_GetBack(frame);  // new reference
    hold = PyRef::steal(reinterpret_cast<PyObject*>(back));
    frame = back;
  }
  return who;
}

// Checks the load of a module known by `names` (the first is the one
// reported) against deny_modules and allow_modules. `how` says how it is
// loaded ("" for a plain import).
int check_module(CapabilityPolicy& p, const std::vector<std::string>& names, const std::string& how) {
  const std::string what = "import of " + quoted(names.front()) + how;
  for (auto& name : names)
    for (auto& d : p.deny)
      if (module_matches(name, d.name)) {
        std::string why = what;
        if (d.name != d.entry)
          why += " (denying " + quoted(d.entry) + " also denies " + quoted(d.name) + ")";
        return deny(p, "deny_modules", d.entry, why);
      }
  if (p.caps.allow_modules.empty())
    return 0;
  for (auto& name : names)
    for (auto& a : p.caps.allow_modules)
      if (module_matches(name, a))
        return 0;
  Importer who = find_importer(p);
  if (who.trusted)
    return 0;  // the standard library's own imports (json imports re)
  return deny(p, "allow_modules", names.front(),
              what + " (not in allow_modules; imported by "
                  + (who.host ? std::string("the runtime (a request's target)") : who.description) + ")");
}

// The dotted names a module file would have, one per sys.path entry it is under.
std::vector<std::string> module_names_for_file(const std::string& filename) {
  std::vector<std::string> names;
  PyObject* sys_path = PySys_GetObject("path");  // borrowed
  if (!sys_path || !PyList_Check(sys_path))
    return names;
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(sys_path); ++i) {
    std::string entry = utf8(PyList_GET_ITEM(sys_path, i));
    if (entry.empty())
      entry = current_dir();
    while (entry.size() > 1 && entry.back() == '/')
      entry.pop_back();
    if (!starts_with(filename, entry) || filename.size() <= entry.size() + 1 || filename[entry.size()] != '/')
      continue;
    std::string rel = filename.substr(entry.size() + 1);
    if (ends_with(rel, "/__init__.py"))
      rel.resize(rel.size() - 12);
    else if (ends_with(rel, ".py"))
      rel.resize(rel.size() - 3);
    else
      continue;
    bool valid = !rel.empty();
    for (auto& c : rel) {
      if (c == '/')
        c = '.';
      else if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_'))
        valid = false;
    }
    if (valid)
      names.push_back(rel);
  }
  return names;
}

// `exec` of a module body: importlib.import_module, importlib.reload and
// spec_from_file_location load pure-Python modules without an `import`
// event, but the module's code object still names its file.
int check_module_exec(CapabilityPolicy& p, PyObject* code) {
  if (!code || !PyCode_Check(code))
    return 0;
  auto* co = reinterpret_cast<PyCodeObject*>(code);
  if (utf8(co->co_name) != "<module>")
    return 0;
  std::string filename = utf8(co->co_filename);
  if (filename.empty() || filename[0] != '/')
    return 0;
  auto names = module_names_for_file(filename);
  if (names.empty())
    return 0;
  return check_module(p, names, " (executing " + filename + ")");
}

// Stdlib extension modules are part of Python (Debian builds many of them
// as files); the FFI and the test-only modules are not.
bool stdlib_extension(const CapabilityPolicy& p, const std::string& filename, const std::string& stem) {
  if (p.stdlib_dynload.empty())
    return false;
  auto dir = real_path(dirname_of(filename));
  if (!dir || *dir != p.stdlib_dynload)
    return false;
  return !(starts_with(stem, "_ctypes") || starts_with(stem, "_test") || starts_with(stem, "_xx")
           || starts_with(stem, "xx"));
}

// The `import` event: (module, filename, sys.path, sys.meta_path,
// sys.path_hooks). filename is None for the import statement's event and the
// extension's file when a native extension is loaded (_imp.create_dynamic).
int check_import(CapabilityPolicy& p, PyObject* args) {
  std::string module = utf8(arg(args, 0));
  auto filename = path_of(arg(args, 1));
  if (!filename)
    return p.module_rules ? check_module(p, {module}, "") : 0;

  // A native extension: its init function is PyInit_<last name>, so the last
  // name and the file's stem count too (spec_from_file_location("x._ctypes", ...)).
  std::string stem = basename_of(*filename);
  stem = stem.substr(0, stem.find('.'));
  std::string last = module.substr(module.rfind('.') + 1);
  if (p.module_rules) {
    std::vector<std::string> names{module};
    if (last != module)
      names.push_back(last);
    if (stem != module && stem != last && !stem.empty())
      names.push_back(stem);
    if (check_module(p, names, " (loading " + *filename + ")") != 0)
      return -1;
  }
  if (!p.native_rule || stdlib_extension(p, *filename, stem))
    return 0;
  if (p.caps.native_extensions == NativePolicy::allowlist)
    for (auto& a : p.caps.allow_native)
      if (module_matches(module, a))
        return 0;
  return deny(p, "native_extensions", module,
              "loading the native extension " + quoted(module) + " from " + *filename
                  + (p.caps.native_extensions == NativePolicy::deny ? std::string(" (native_extensions = \"deny\")")
                                                                    : std::string(" (not in allow_native)")));
}

// ctypes.dlopen(name) and sqlite3.load_extension(connection, path) load
// native code too. `name` is None for ctypes' own dlopen(NULL).
int check_library(CapabilityPolicy& p, const char* event, PyObject* name_obj) {
  if (!p.native_rule)
    return 0;
  auto name = path_of(name_obj);
  if (p.caps.native_extensions == NativePolicy::allowlist) {
    if (!name)
      return 0;
    for (auto& a : p.caps.allow_native)
      if (*name == a || basename_of(*name) == a)
        return 0;
  }
  std::string what = name ? *name : std::string("the process itself");
  return deny(p, "native_extensions", what, std::string(event) + " of " + quoted(what));
}

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

// -- network ------------------------------------------------------------------------

bool loopback_host(std::string host) {
  if (auto pct = host.find('%'); pct != std::string::npos)
    host.resize(pct);  // an IPv6 zone
  for (auto& c : host)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (host == "localhost")
    return true;
  in_addr v4;
  if (::inet_aton(host.c_str(), &v4) != 0)
    return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6;
  if (::inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6))
      return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

std::string host_of(PyObject* o) {
  if (o && PyBytes_Check(o))
    return std::string(PyBytes_AS_STRING(o), static_cast<std::size_t>(PyBytes_GET_SIZE(o)));
  return utf8(o);
}

// socket.connect/bind/sendto/sendmsg: (socket, address).
int check_address(CapabilityPolicy& p, const char* event, PyObject* address) {
  if (!address || address == Py_None || PyUnicode_Check(address) || PyBytes_Check(address)
      || PyByteArray_Check(address))
    return 0;  // no address (a connected socket) or an AF_UNIX path
  std::string host;
  if (PyTuple_Check(address) && PyTuple_GET_SIZE(address) >= 1)
    host = host_of(PyTuple_GET_ITEM(address, 0));
  if (p.caps.network == NetworkPolicy::loopback && !host.empty() && loopback_host(host))
    return 0;
  PyRef repr = PyRef::steal(PyObject_Repr(address));
  std::string shown = repr ? utf8(repr.get()) : std::string("?");
  PyErr_Clear();
  return deny(p, "network", shown,
              std::string(event) + " to " + shown
                  + (p.caps.network == NetworkPolicy::loopback ? " (network = \"loopback\": only 127.0.0.0/8, ::1 "
                                                                 "and localhost)"
                                                               : " (network = false)"));
}

int check_socket_new(CapabilityPolicy& p, PyObject* args) {
  long family = -1;
  if (PyObject* f = arg(args, 1); f && PyLong_Check(f))
    family = PyLong_AsLong(f);
  PyErr_Clear();
  if (family == AF_UNIX)
    return 0;
  if (p.caps.network == NetworkPolicy::loopback && (family == AF_INET || family == AF_INET6))
    return 0;  // what it may reach is checked at connect/bind/sendto
  std::string shown = family == AF_INET ? "AF_INET" : family == AF_INET6 ? "AF_INET6"
                      : family == -1    ? "an inherited descriptor of unknown family"
                                        : "family " + std::to_string(family);
  return deny(p, "network", "socket(" + shown + ")",
              "creating a socket of " + shown
                  + (p.caps.network == NetworkPolicy::loopback ? " (network = \"loopback\")" : " (network = false)"));
}

// Name resolution is network traffic (DNS) unless it names the loopback.
int check_lookup(CapabilityPolicy& p, const char* event, PyObject* host_obj) {
  std::string host = host_of(host_obj);
  if (p.caps.network == NetworkPolicy::loopback && (!host_obj || host_obj == Py_None || loopback_host(host)))
    return 0;
  PyErr_Clear();
  std::string shown = host_obj && host_obj != Py_None ? host : std::string("None");
  return deny(p, "network", shown,
              std::string(event) + " of " + quoted(shown)
                  + (p.caps.network == NetworkPolicy::loopback ? " (network = \"loopback\")" : " (network = false)"));
}

// -- writes -------------------------------------------------------------------------

int check_write(CapabilityPolicy& p, const char* event, PyObject* path_obj, PyObject* dir_fd, bool follow) {
  if (!path_obj || PyLong_Check(path_obj))
    return 0;  // an open file descriptor: opening it was checked
  auto path = path_of(path_obj);
  std::string target;
  if (path) {
    if (*path == "/dev/null")
      return 0;
    target = resolve_for_write(*path, base_dir(dir_fd), follow);
    for (auto& dir : p.write_dirs)
      if (path_under(target, dir))
        return 0;
  }
  std::string shown = path ? *path : std::string("?");
  return deny(p, "write_paths", target.empty() ? shown : target,
              std::string(event) + " of " + quoted(shown)
                  + (target.empty() || target == shown ? std::string() : " (" + target + ")")
                  + (p.write_dirs.empty() ? " (write_paths = []: no writes anywhere)"
                                          : " (not under write_paths)"));
}

// Binding an AF_UNIX socket to a path creates a file there.
int check_unix_bind(CapabilityPolicy& p, PyObject* address) {
  if (!p.caps.write_paths_set || !address || !(PyUnicode_Check(address) || PyBytes_Check(address)))
    return 0;
  auto path = path_of(address);
  if (!path || path->empty() || (*path)[0] == '\0')
    return 0;  // the abstract namespace: no file
  return check_write(p, "socket.bind", address, nullptr, false);
}

int check_open(CapabilityPolicy& p, PyObject* args) {
  PyObject* flags_obj = arg(args, 2);
  long flags = flags_obj && PyLong_Check(flags_obj) ? PyLong_AsLong(flags_obj) : 0;
  PyErr_Clear();
  if ((flags & O_ACCMODE) == O_RDONLY && !(flags & (O_CREAT | O_TRUNC | O_APPEND)))
    return 0;
  return check_write(p, "open for writing", arg(args, 0), nullptr, true);
}

// sqlite3 opens its files itself: "file:" URIs are read-only with mode=ro.
int check_sqlite(CapabilityPolicy& p, PyObject* args) {
  auto db = path_of(arg(args, 0));
  if (!db || db->empty() || *db == ":memory:")
    return 0;
  if (starts_with(*db, "file:")) {
    std::string rest = db->substr(5);
    auto q = rest.find('?');
    std::string query = q == std::string::npos ? std::string() : rest.substr(q + 1);
    rest = rest.substr(0, q);
    if (query.find("mode=ro") != std::string::npos || query.find("mode=memory") != std::string::npos)
      return 0;
    if (starts_with(rest, "//"))
      rest = rest.substr(rest.find('/', 2) == std::string::npos ? rest.size() : rest.find('/', 2));
    PyRef s = PyRef::steal(PyUnicode_FromString(rest.c_str()));
    if (!s)
      PyErr_Clear();
    return check_write(p, "sqlite3.connect", s ? s.get() : arg(args, 0), nullptr, true);
  }
  return check_write(p, "sqlite3.connect", arg(args, 0), nullptr, true);
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

bool install_multiprocessing_defaults(const CapabilityPolicy& p) {
  // Runs once per interpreter, in a private namespace. The finder removes
  // itself at the first import of multiprocessing, which costs nothing more.
  static const char* code = R"PY(
def _install(method, audit_spawn):
    import sys, atexit

    def configure(mp):
        ctx = mp.context
        default = getattr(ctx, '_default_context', None)
        concrete = getattr(ctx, '_concrete_contexts', {})
        if default is not None and method in concrete and getattr(default, '_actual_context', 1) is None:
            # The default, not a choice: set_start_method() still works.
            default._default_context = concrete[method]
        if audit_spawn:
            # multiprocessing starts processes with _posixsubprocess, which
            # raises no audit event; make it visible to the subprocess rule.
            import multiprocessing.util as util
            spawnv_passfds = util.spawnv_passfds
            def audited_spawnv_passfds(path, args, passfds):
                sys.audit('subprocess.Popen', path, args, None, None)
                return spawnv_passfds(path, args, passfds)
            util.spawnv_passfds = audited_spawnv_passfds

    class MultiprocessingDefaults:
        """gilkeeper: multiprocessing starts processes with "spawn" by default."""
        def find_spec(self, name, path=None, target=None):
            if name != 'multiprocessing':
                return None
            try:
                sys.meta_path.remove(self)
            except ValueError:
                pass
            for finder in sys.meta_path:
                find_spec = getattr(finder, 'find_spec', None)
                spec = find_spec(name, path, target) if find_spec else None
                if spec is not None:
                    break
            else:
                return None
            loader = spec.loader
            exec_module = getattr(loader, 'exec_module', None)
            if exec_module is not None:
                def exec_module_with_defaults(module):
                    exec_module(module)
                    configure(module)
                loader.exec_module = exec_module_with_defaults
            return spec

    def stop_helpers():
        # Helper processes must not outlive the interpreter (the host
        # process lives on). The forkserver first: it holds the resource
        # tracker's pipe too.
        for name, attr in (('multiprocessing.forkserver', '_forkserver'),
                           ('multiprocessing.resource_tracker', '_resource_tracker')):
            helper = getattr(sys.modules.get(name), attr, None)
            stop = getattr(helper, '_stop', None)
            if stop is not None:
                try:
                    stop()
                except OSError:
                    pass  # e.g. the forkserver's socket went with its temp dir

    if 'multiprocessing' in sys.modules:
        configure(sys.modules['multiprocessing'])
    else:
        sys.meta_path.insert(0, MultiprocessingDefaults())
    # Registered first, so it runs after multiprocessing's own exit handler.
    atexit.register(stop_helpers)
)PY";
  PyRef globals = PyRef::steal(PyDict_New());
  PyRef name = PyRef::steal(PyUnicode_FromString("gilkeeper._multiprocessing"));
  if (!globals || !name || PyDict_SetItemString(globals.get(), "__builtins__", PyEval_GetBuiltins()) != 0
      || PyDict_SetItemString(globals.get(), "__name__", name.get()) != 0)
    return false;
  PyRef compiled = PyRef::steal(Py_CompileString(code, "<gilkeeper multiprocessing defaults>", Py_file_input));
  if (!compiled)
    return false;
  PyRef r = PyRef::steal(PyEval_EvalCode(compiled.get(), globals.get(), globals.get()));
  if (!r)
    return false;
  PyObject* install = PyDict_GetItemString(globals.get(), "_install");  // borrowed
  if (!install)
    return false;
  PyRef done = PyRef::steal(PyObject_CallFunction(install, "sO", "spawn", p.caps.subprocess ? Py_False : Py_True));
  return static_cast<bool>(done);
}

} // namespace gk::detail
