#pragma once

// The figures that embed CPython directly (the floor of a raw call and the
// peers that take the GIL from host threads). They live apart from the
// gilkeeper figures: this is the only benchmark code that uses the CPython API,
// because measuring raw CPython is its purpose. Each initialises and
// finalises its own interpreter: never run one in a process with a Runtime.

#include "harness.hpp"

namespace gk_bench {

/// `PyObject_Call` of a trivial function with the GIL held (ns per call).
Result floor_pyobject_call(int n);
/// Host threads each doing PyGILState_Ensure + call + Release.
Result peer_gilstate(int threads, int n, double seconds);
/// Host threads each keeping one thread state and swapping the GIL.
Result peer_kept_tstate(int threads, int n, double seconds);
#ifdef GK_BENCH_HAVE_PYBIND11
/// The same through pybind11's gil_scoped_acquire.
Result peer_pybind11(int threads, int n, double seconds);
#endif

} // namespace gk_bench
