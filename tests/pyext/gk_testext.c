/* A CPython extension for tests only: native code that Python cannot
 * interrupt (a C loop holding the GIL), and native crashes. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <signal.h>
#include <stdlib.h>
#include <time.h>

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* spin(seconds) -> iterations: busy-loops in C for `seconds`, holding the
 * GIL and never checking for signals. */
static PyObject* spin(PyObject* self, PyObject* args) {
  double seconds;
  (void)self;
  if (!PyArg_ParseTuple(args, "d", &seconds))
    return NULL;
  double end = now_seconds() + seconds;
  volatile unsigned long long n = 0;
  while (now_seconds() < end)
    n++;
  return PyLong_FromUnsignedLongLong(n);
}

/* segfault(): dereferences a null pointer. */
static PyObject* segfault(PyObject* self, PyObject* args) {
  (void)self;
  (void)args;
  volatile int* p = NULL;
  *p = 42;
  Py_RETURN_NONE;
}

/* abort_now(): calls abort(). */
static PyObject* abort_now(PyObject* self, PyObject* args) {
  (void)self;
  (void)args;
  abort();
  Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"spin", spin, METH_VARARGS, "Busy-loop in C for the given seconds, holding the GIL."},
    {"segfault", segfault, METH_NOARGS, "Crash with SIGSEGV."},
    {"abort_now", abort_now, METH_NOARGS, "Crash with SIGABRT."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "gk_testext",
                                    "Native helpers for gilkeeper's tests.", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_gk_testext(void) {
  return PyModule_Create(&module);
}
