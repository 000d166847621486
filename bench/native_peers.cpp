// Raw-CPython figures of gk_bench (see native_peers.hpp).
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "native_peers.hpp"

#include <cstdlib>

#ifdef GK_BENCH_HAVE_PYBIND11
#include <pybind11/embed.h>
#endif

namespace gk_bench {

namespace {
// -- peers: host threads taking the GIL themselves --------------------------------
//
// The interpreter is initialised on the main thread, which then drops the
// GIL; `threads` host threads each loop on: take the GIL, call a trivial
// Python function, drop the GIL. A host thread has no Python thread state of
// its own, so each PyGILState_Ensure creates one and the matching Release
// destroys it (this is what a host that "just takes the GIL" pays).

const char* const kNoopSource = "def noop():\n    return None\n";

PyObject* define_noop() {
  PyObject* globals = PyModule_GetDict(PyImport_AddModule("__main__"));
  PyObject* r = PyRun_String(kNoopSource, Py_file_input, globals, globals);
  if (!r) {
    PyErr_Print();
    std::exit(1);
  }
  Py_DECREF(r);
  PyObject* fn = PyDict_GetItemString(globals, "noop");
  Py_INCREF(fn);
  return fn;
}

} // namespace

Result floor_pyobject_call(int n) {
  Py_InitializeEx(0);
  PyObject* fn = PyRun_String("lambda: None", Py_eval_input, PyModule_GetDict(PyImport_AddModule("__main__")),
                              PyModule_GetDict(PyImport_AddModule("__main__")));
  PyObject* args = PyTuple_New(0);
  Result r;
  r.unit = "ns";
  // Individual calls are too short to time one by one: time blocks of 1000.
  for (int i = 0; i < n; ++i) {
    auto t0 = clock_type::now();
    for (int k = 0; k < 1000; ++k)
      Py_DECREF(PyObject_Call(fn, args, nullptr));
    r.samples.push_back(us_since(t0));  // us per 1000 calls == ns per call
  }
  Py_DECREF(args);
  Py_DECREF(fn);
  Py_FinalizeEx();
  r.extra["calls_per_s"] = 1e9 / percentile(r.samples, 0.5);
  return r;
}

// One thread: `n` round trips. Several: every thread for `seconds`.
Result peer_gilstate(int threads, int n, double seconds) {
  Py_InitializeEx(0);
  PyObject* fn = define_noop();
  PyObject* args = PyTuple_New(0);
  PyThreadState* main_state = PyEval_SaveThread();
  auto call = [&] {
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject* res = PyObject_Call(fn, args, nullptr);
    if (!res) {
      PyErr_Print();
      std::exit(1);
    }
    Py_DECREF(res);
    PyGILState_Release(g);
  };
  Result r = drive(threads, n, seconds, call);
  PyEval_RestoreThread(main_state);
  Py_DECREF(args);
  Py_DECREF(fn);
  Py_FinalizeEx();
  return r;
}

// The same, but each host thread keeps one Python thread state for its whole
// life and only swaps the GIL in and out (PyEval_RestoreThread /
// PyEval_SaveThread): the cheapest way for a host thread to call Python.
Result peer_kept_tstate(int threads, int n, double seconds) {
  Py_InitializeEx(0);
  PyObject* fn = define_noop();
  PyObject* args = PyTuple_New(0);
  PyInterpreterState* interp = PyInterpreterState_Get();
  PyThreadState* main_state = PyEval_SaveThread();
  thread_local PyThreadState* mine = nullptr;
  auto call = [&] {
    if (!mine)
      mine = PyThreadState_New(interp);  // once per host thread
    PyEval_RestoreThread(mine);
    PyObject* res = PyObject_Call(fn, args, nullptr);
    if (!res) {
      PyErr_Print();
      std::exit(1);
    }
    Py_DECREF(res);
    PyEval_SaveThread();
  };
  auto done = [&] {
    // Leave no thread state behind (Py_FinalizeEx would find it).
    if (mine) {
      PyEval_RestoreThread(mine);
      PyThreadState_Clear(mine);
      PyThreadState_DeleteCurrent();
      mine = nullptr;
    }
  };
  Result r = drive(threads, n, seconds, call, done);
  PyEval_RestoreThread(main_state);
  Py_DECREF(args);
  Py_DECREF(fn);
  Py_FinalizeEx();
  return r;
}

#ifdef GK_BENCH_HAVE_PYBIND11
namespace py = pybind11;

// The same through pybind11: `py::gil_scoped_acquire` + `fn()`.
Result peer_pybind11(int threads, int n, double seconds) {
  py::scoped_interpreter interp(false);
  Result r;
  {
    py::dict globals = py::globals();
    py::exec(kNoopSource, globals);
    py::object fn = globals["noop"];
    py::gil_scoped_release released;
    auto call = [&] {
      py::gil_scoped_acquire gil;
      fn();
    };
    r = drive(threads, n, seconds, call);
  }
  return r;
}
#endif

} // namespace gk_bench
