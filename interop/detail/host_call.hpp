#pragma once

// Internal to interop/: the state behind `gilkeeper.host` (host_call.cpp).
// Includes Python.h.

#include "interop/detail/py.hpp"

#include <functional>
#include <pthread.h>
#include <string>
#include <vector>

namespace gk::detail {

class CapabilityPolicy;

struct HostState {
  /// InterpreterOptions::host_call (empty: no host functions).
  std::function<Expected<Value>(const std::string&, List, const HostCallSite&)> call;
  /// InterpreterOptions::host_names.
  std::function<std::vector<std::string>()> names;
  CapabilityPolicy* policy = nullptr;
  pthread_t owner{};
};
HostState& host_call_state();

/// Adds `gilkeeper.HostError` and the `gilkeeper.host` module (also in
/// sys.modules). PRECONDITION: GIL held, inside the module's init.
bool add_host_module(PyObject* gilkeeper);
/// Drops HostError. PRECONDITION: GIL held, before finalizing.
void reset_host_module();

} // namespace gk::detail
