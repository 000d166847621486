// multiprocessing's fork-safe defaults (declared in interop/capabilities.hpp):
// "spawn" as the default start method, its process starts visible to the
// subprocess rule, and its helper processes stopped with the interpreter.

#include "interop/capabilities.hpp"
#include "interop/detail/capability_policy.hpp"

namespace gk::detail {

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
