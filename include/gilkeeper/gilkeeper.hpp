#pragma once

/// gilkeeper: run Python safely and on time from a multi-threaded C++ host.
/// This umbrella header brings in the host API (no CAF beyond caf/fwd.hpp,
/// no Python headers). Hosts that are CAF programs also include
/// <gilkeeper/actors/py_runtime.hpp> for the typed actor handle.

#include "gilkeeper/config/config.hpp"
#include "gilkeeper/config/log.hpp"
#include "gilkeeper/interop/deadline.hpp"
#include "gilkeeper/interop/error.hpp"
#include "gilkeeper/interop/expected.hpp"
#include "gilkeeper/interop/request.hpp"
#include "gilkeeper/interop/value.hpp"
#include "gilkeeper/runtime/runtime.hpp"
#include "gilkeeper/net/remote.hpp"
