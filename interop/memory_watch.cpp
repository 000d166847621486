// Python's allocations for the memory alerts and the leak check
// (docs/observability.md): tracemalloc's top sites and the comparison of
// its snapshots, run on the interpreter's thread between requests.

#include "interop/interpreter.hpp"
#include "interop/detail/py.hpp"

namespace gk::detail {

namespace {

// The state (the last snapshot, the totals seen) lives in the dict the
// code runs in, which the interpreter owns.
const char* kCode =
    "import tracemalloc as _tm\n"
    "_filters = None\n"
    "def _gk_filters():\n"
    "    global _filters\n"
    "    if _filters is None:\n"
    "        _filters = (_tm.Filter(False, _tm.__file__), _tm.Filter(False, '<unknown>'),\n"
    "                    _tm.Filter(False, '<frozen importlib._bootstrap>'),\n"
    "                    _tm.Filter(False, '<frozen importlib._bootstrap_external>'))\n"
    "    return _filters\n"
    "def _gk_sites(stats, top, diff):\n"
    "    out = []\n"
    "    for s in stats:\n"
    "        if len(out) >= top:\n"
    "            break\n"
    "        size = s.size_diff if diff else s.size\n"
    "        if diff and size <= 0:\n"
    "            continue\n"
    "        f = s.traceback[0]\n"
    "        out.append([f.filename, f.lineno, size, s.count_diff if diff else s.count])\n"
    "    return out\n"
    "def _gk_top(top):\n"
    "    if not _tm.is_tracing():\n"
    "        return []\n"
    "    snap = _tm.take_snapshot().filter_traces(_gk_filters())\n"
    "    return _gk_sites(snap.statistics('lineno'), top, False)\n"
    "_prev = None\n"
    "_totals = []\n"
    "def _gk_leaks(top):\n"
    "    global _prev\n"
    "    if not _tm.is_tracing():\n"
    "        return None\n"
    "    snap = _tm.take_snapshot().filter_traces(_gk_filters())\n"
    "    total = sum(t.size for t in snap.traces)\n"
    "    _totals.append(total)\n"
    "    del _totals[:-3]\n"
    "    prev, _prev = _prev, snap\n"
    "    sites = _gk_sites(snap.compare_to(prev, 'lineno'), top, True) if prev is not None else []\n"
    "    return [list(_totals), sites]\n";

std::vector<AllocationSite> sites_of(PyObject* list) {
  std::vector<AllocationSite> out;
  auto v = from_python(list, "sites");
  if (!v || !v->is_list())
    return out;
  for (auto& row : v->as_list()) {
    if (!row.is_list() || row.as_list().size() != 4)
      continue;
    auto& r = row.as_list();
    AllocationSite site;
    site.file = r[0].is_string() ? r[0].as_string() : std::string();
    site.line = r[1].is_int() ? static_cast<int>(r[1].as_int()) : 0;
    site.size = r[2].is_int() ? r[2].as_int() : 0;
    site.count = r[3].is_int() ? r[3].as_int() : 0;
    out.push_back(std::move(site));
  }
  return out;
}

PyObject* function(PyObject* state, const char* name) {
  if (!PyDict_GetItemString(state, "_gk_top")) {
    PyDict_SetItemString(state, "__builtins__", PyEval_GetBuiltins());
    PyRef r = PyRef::steal(PyRun_String(kCode, Py_file_input, state, state));
    if (!r) {
      PyErr_Clear();
      return nullptr;
    }
  }
  return PyDict_GetItemString(state, name);
}

} // namespace

bool start_tracemalloc() {
  PyRef tm = PyRef::steal(PyImport_ImportModule("tracemalloc"));
  PyRef r = tm ? PyRef::steal(PyObject_CallMethod(tm.get(), "start", nullptr)) : PyRef();
  if (!r) {
    PyErr_Clear();
    return false;
  }
  return true;
}

std::vector<AllocationSite> top_allocations(PyObject* state, int top) {
  PyObject* fn = function(state, "_gk_top");
  PyRef r = fn ? PyRef::steal(PyObject_CallFunction(fn, "i", top)) : PyRef();
  if (!r) {
    PyErr_Clear();
    return {};
  }
  return sites_of(r.get());
}

LeakCheck check_leaks(PyObject* state, int top) {
  LeakCheck out;
  PyObject* fn = function(state, "_gk_leaks");
  PyRef r = fn ? PyRef::steal(PyObject_CallFunction(fn, "i", top)) : PyRef();
  if (!r) {
    PyErr_Clear();
    return out;
  }
  if (r.get() == Py_None)
    return out;
  out.tracing = true;
  PyObject* totals = PyList_GetItem(r.get(), 0);
  PyObject* sites = PyList_GetItem(r.get(), 1);
  if (!totals || !sites) {
    PyErr_Clear();
    return out;
  }
  auto t = from_python(totals, "totals");
  if (t && t->is_list())
    for (auto& x : t->as_list())
      if (x.is_int())
        out.totals.push_back(x.as_int());
  out.grown = sites_of(sites);
  return out;
}

} // namespace gk::detail
