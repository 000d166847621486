#pragma once

// Internal to interop/: includes Python.h. Never include from a public header.

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "gilkeeper/interop/deadline.hpp"
#include "gilkeeper/interop/error.hpp"
#include "gilkeeper/interop/expected.hpp"
#include "gilkeeper/interop/value.hpp"
#include "interop/interpreter.hpp"

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <utility>

namespace gk::detail {

/// An owned (strong) reference. PRECONDITION for every operation: GIL held.
class PyRef {
public:
  PyRef() = default;
  /// Steals a new reference (may be null).
  static PyRef steal(PyObject* o) { return PyRef(o); }
  /// Takes a new reference to a borrowed one.
  static PyRef borrow(PyObject* o) {
    Py_XINCREF(o);
    return PyRef(o);
  }
  PyRef(PyRef&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  PyRef& operator=(PyRef&& o) noexcept {
    if (this != &o) {
      Py_XDECREF(p_);
      p_ = std::exchange(o.p_, nullptr);
    }
    return *this;
  }
  PyRef(const PyRef&) = delete;
  PyRef& operator=(const PyRef&) = delete;
  ~PyRef() { Py_XDECREF(p_); }
  PyObject* get() const noexcept { return p_; }
  PyObject* release() noexcept { return std::exchange(p_, nullptr); }
  explicit operator bool() const noexcept { return p_ != nullptr; }

private:
  explicit PyRef(PyObject* o) : p_(o) {}
  PyObject* p_ = nullptr;
};

/// The table of objects that Refs point at. Owner thread, GIL held.
class HandleTable {
public:
  struct Entry {
    PyObject* object;  // strong
    std::string type_name;
    std::string origin;
  };
  /// Stores a new strong reference and returns its id.
  std::uint64_t add(PyObject* o, std::string origin);
  /// The object for (id, epoch), borrowed, or null when stale.
  PyObject* get(std::uint64_t id, std::uint64_t epoch) const;
  /// Drops a handle; false when it was not live.
  bool remove(std::uint64_t id, std::uint64_t epoch);
  std::size_t size() const { return entries_.size(); }
  std::uint64_t epoch() const { return epoch_; }
  void set_epoch(std::uint64_t e) { epoch_ = e; }
  const std::unordered_map<std::uint64_t, Entry>& entries() const { return entries_; }
  /// Drops every handle (DECREFs). Returns what was live.
  std::unordered_map<std::uint64_t, Entry> clear();

private:
  std::unordered_map<std::uint64_t, Entry> entries_;
  std::uint64_t next_id_ = 1;
  std::uint64_t epoch_ = 0;
};

/// Everything conversion needs to make and resolve Refs.
/// What a conversion needs to make and resolve Refs. Borrows from the
/// interpreter (made per request: no copies on the per-call path).
struct RefContext {
  HandleTable* table = nullptr;
  const std::function<void(std::uint64_t, std::uint64_t)>* release = nullptr;
  const std::string* origin = nullptr;
};

/// Value -> new reference. On failure returns null and sets `err` (a
/// conversion or stale_ref error naming `path`), with no Python error set.
PyObject* to_python(const Value& v, const RefContext& refs, const std::string& path, Error& err);

/// Python object -> Value. On failure returns a conversion error naming the
/// place below `path` (no Python error set).
Expected<Value> from_python(PyObject* o, const std::string& path);

/// Wraps `o` in a new Ref (adds it to the table).
Ref make_ref(PyObject* o, const RefContext& refs);

/// The Python type name of an object, qualified unless builtin.
std::string type_name(PyObject* o);

/// Turns the current Python exception into an Error (clears it).
/// PRECONDITION: PyErr_Occurred().
Error fetch_python_error();

/// The memory watch (memory_watch.cpp). PRECONDITION: GIL held; `state` a
/// dict the caller keeps for the interpreter's life.
bool start_tracemalloc();
std::vector<AllocationSite> top_allocations(PyObject* state, int top);
LeakCheck check_leaks(PyObject* state, int top);

/// Drops cached Python objects. PRECONDITION: GIL held, before finalizing.
void reset_caches();

/// The gilkeeper builtin module's init function (for PyImport_AppendInittab).
PyObject* init_gilkeeper_module();

/// The gilkeeper module's exception classes (borrowed; null before the
/// module was imported). CapabilityDenied is the base of ImportDenied (an
/// ImportError) and PermissionDenied (a PermissionError).
PyObject* deadline_exceeded_type();
PyObject* capability_denied_type();
PyObject* import_denied_type();
PyObject* permission_denied_type();
PyObject* cancelled_type();
/// Drops the module's classes. PRECONDITION: GIL held, before finalizing.
void reset_module_types();

/// Interrupt bookkeeping read by the Python-level signal handler.
struct InterruptState {
  std::uint64_t current = 0;  // the request running now (owner thread)
  std::string label;          // its name, for the exception message
  Deadline deadline;
  // The exception the handler raised in the current request (strong; kept
  // until the request ends, so that what the interrupted code built is freed
  // after its caller was answered), and the traceback of where the code was
  // when it was raised.
  PyObject* raised = nullptr;
  std::string raised_traceback;
  // Told the handler's error (code, type, message, traceback) as it raises
  // it, on the interpreter's thread (InterpreterOptions::on_interrupted).
  std::function<void(Error)> on_interrupted;
};
InterruptState& interrupt_state();
/// Drops the exception the interrupt handler raised (InterruptState::raised),
/// and with it what the interrupted code built. PRECONDITION: GIL held.
void drop_interrupted();

} // namespace gk::detail
