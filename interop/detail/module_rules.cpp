// The capability rules on modules and native code: deny_modules,
// allow_modules and native_extensions, from the import, exec, ctypes.dlopen
// and sqlite3.load_extension audit events.

#include "interop/detail/capability_policy.hpp"

#include <cctype>

namespace gk::detail {

namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A dotted name matches a rule when it is the rule or one of its submodules.
bool module_matches(std::string_view name, std::string_view rule) {
  return starts_with(name, rule) && (name.size() == rule.size() || name[rule.size()] == '.');
}

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
        return deny_import(p, "deny_modules", d.entry, why, names.front());
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
  return deny_import(p, "allow_modules", names.front(),
                     what + " (not in allow_modules; imported by "
                         + (who.host ? std::string("the runtime (a request's target)") : who.description) + ")",
                     names.front());
}

// The directories of sys.path as the import system joins them to file names
// ("" is the working directory), without trailing slashes.
std::vector<std::string> sys_path_entries() {
  std::vector<std::string> entries;
  PyObject* sys_path = PySys_GetObject("path");  // borrowed
  if (!sys_path || !PyList_Check(sys_path))
    return entries;
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(sys_path); ++i) {
    std::string entry = utf8(PyList_GET_ITEM(sys_path, i));
    if (entry.empty())
      entry = current_dir();
    while (entry.size() > 1 && entry.back() == '/')
      entry.pop_back();
    entries.push_back(std::move(entry));
  }
  return entries;
}

// The dotted names a module file would have, one per sys.path entry it is under.
std::vector<std::string> module_names_for_file(const std::string& filename) {
  std::vector<std::string> names;
  for (auto& entry : sys_path_entries()) {
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

// True when the extension file is where the import system finds `module`:
// <a sys.path entry>/<module's dots as slashes>.<suffix>, so that
// allow_native = ["numpy"] admits numpy's own extensions and not any file
// loaded under a name inside numpy (spec_from_file_location("numpy.x", path)).
bool extension_at_home(const std::string& module, const std::string& filename) {
  std::string rel = module;
  for (auto& c : rel)
    if (c == '.')
      c = '/';
  for (auto& entry : sys_path_entries()) {
    const std::string stem = entry + "/" + rel + ".";
    if (starts_with(filename, stem) && filename.find('/', stem.size()) == std::string::npos)
      return true;
  }
  return false;
}

} // namespace

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
  std::string why = " (native_extensions = \"deny\")";
  if (p.caps.native_extensions == NativePolicy::allowlist) {
    why = " (not in allow_native)";
    for (auto& a : p.caps.allow_native)
      if (module_matches(module, a)) {
        if (extension_at_home(module, *filename))
          return 0;
        why = " (allow_native admits " + quoted(a) + "'s extensions from its own directory on sys.path only)";
        break;
      }
  }
  return deny_import(p, "native_extensions", module,
                     "loading the native extension " + quoted(module) + " from " + *filename + why, module);
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

} // namespace gk::detail
