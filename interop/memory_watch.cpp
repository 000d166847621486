// Python's allocations for the memory alerts and the leak check
// (docs/observability.md): tracemalloc's top sites and the comparison of
// its snapshots, run on the interpreter's thread between requests.

#include "interop/interpreter.hpp"
#include "interop/detail/py.hpp"

namespace gk::detail {

namespace {

// The state (the last snapshot, the totals seen) lives in the dict the
// code runs in, which the interpreter owns.
// Cheap at each look (the traced total is one C call); the snapshots, whose
// grouping by line walks every trace in Python, are taken only while the
// total grows: the first growth takes a baseline, the second compares.
const char* kCode =
    "import tracemalloc as _tm\n"
    "_skip = None\n"
    "def _gk_skip(name):\n"
    "    global _skip\n"
    "    if _skip is None:\n"
    "        _skip = (_tm.__file__, '<unknown>', '<gilkeeper memory watch>',\n"
    "                 '<frozen importlib._bootstrap>', '<frozen importlib._bootstrap_external>')\n"
    "    return name in _skip\n"
    "def _gk_sites(stats, top, diff):\n"
    "    out = []\n"
    "    for s in stats:\n"
    "        if len(out) >= top:\n"
    "            break\n"
    "        f = s.traceback[0]\n"
    "        if _gk_skip(f.filename):\n"
    "            continue\n"
    "        size = s.size_diff if diff else s.size\n"
    "        if diff and size <= 0:\n"
    "            continue\n"
    "        out.append([f.filename, f.lineno, size, s.count_diff if diff else s.count])\n"
    "    return out\n"
    "def _gk_top(top):\n"
    "    if not _tm.is_tracing():\n"
    "        return []\n"
    "    return _gk_sites(_tm.take_snapshot().statistics('lineno'), top, False)\n"
    "_base = None\n"
    "_totals = []\n"
    "def _gk_leaks(top):\n"
    "    global _base\n"
    "    if not _tm.is_tracing():\n"
    "        return None\n"
    "    _totals.append(_tm.get_traced_memory()[0])\n"
    "    del _totals[:-3]\n"
    "    growing = len(_totals) >= 2 and _totals[-1] > _totals[-2]\n"
    "    if not growing:\n"
    "        _base = None\n"
    "        return [list(_totals), []]\n"
    "    snap = _tm.take_snapshot()\n"
    "    base, _base = _base, snap\n"
    "    sites = _gk_sites(snap.compare_to(base, 'lineno'), top, True) if base is not None else []\n"
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
    PyRef code = PyRef::steal(Py_CompileString(kCode, "<gilkeeper memory watch>", Py_file_input));
    PyRef r = code ? PyRef::steal(PyEval_EvalCode(code.get(), state, state)) : PyRef();
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
