#pragma once

// Internal to interop/: the compiled capability policy, what every rule uses,
// and the rules the audit hook calls. Includes Python.h.
//
// PRECONDITION for every function here: the GIL is held (see
// interop/capabilities.cpp).

#include "interop/capabilities.hpp"
#include "interop/detail/py.hpp"

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
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

// -- what every rule uses (capability_policy.cpp) ----------------------------

bool starts_with(std::string_view s, std::string_view prefix);
/// A Python str as UTF-8; empty (error cleared) for anything else.
std::string utf8(PyObject* s);
/// str, bytes or os.PathLike -> the path; nullopt for anything else (ints
/// are file descriptors and handled by the callers).
std::optional<std::string> path_of(PyObject* o);
std::string quoted(std::string_view s);
/// Item `i` of an audit event's argument tuple, or null.
PyObject* arg(PyObject* args, Py_ssize_t i);
std::string basename_of(std::string_view path);
std::string dirname_of(std::string_view path);
std::optional<std::string> real_path(const std::string& path);
std::string current_dir();

/// Raises gilkeeper.PermissionDenied (a CapabilityDenied and a
/// PermissionError) naming the rule `capabilities.<key>` (see
/// capability_policy.cpp) and counts the denial; returns -1.
int deny(CapabilityPolicy& p, const std::string& key, const std::string& subject,
         const std::string& what);
/// As `deny`, for loading the module `module` (Python code or a native
/// extension): raises gilkeeper.ImportDenied (a CapabilityDenied and an
/// ImportError, with `name` = `module`), so that code which copes with a
/// missing optional module copes with a denied one.
int deny_import(CapabilityPolicy& p, const std::string& key, const std::string& subject,
                const std::string& what, const std::string& module);

// -- the rules, one function per kind of audit event -------------------------
// Each returns 0 to allow, or -1 with the denial raised.

// Modules and native code (module_rules.cpp).
int check_import(CapabilityPolicy& p, PyObject* args);
int check_module_exec(CapabilityPolicy& p, PyObject* code);
int check_library(CapabilityPolicy& p, const char* event, PyObject* name_obj);

// The network (network_rules.cpp).
int check_address(CapabilityPolicy& p, const char* event, PyObject* address);
int check_socket_new(CapabilityPolicy& p, PyObject* args);
int check_lookup(CapabilityPolicy& p, const char* event, PyObject* host_obj);

// Writes (write_rules.cpp).
int check_write(CapabilityPolicy& p, const char* event, PyObject* path_obj, PyObject* dir_fd, bool follow);
int check_unix_bind(CapabilityPolicy& p, PyObject* address);
int check_open(CapabilityPolicy& p, PyObject* args);
int check_sqlite(CapabilityPolicy& p, PyObject* args);

} // namespace gk::detail
