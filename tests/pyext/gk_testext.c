/* A CPython extension for tests only: native code that Python cannot
 * interrupt (a C loop holding the GIL), and native crashes. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
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

/* raw_fork() -> pid or -errno: fork() straight from C, past Python's audit
 * events. A child exits at once. */
static PyObject* raw_fork(PyObject* self, PyObject* args) {
  (void)self;
  (void)args;
  pid_t pid = fork();
  if (pid == 0)
    _exit(0);
  if (pid < 0)
    return PyLong_FromLong(-errno);
  int status;
  waitpid(pid, &status, 0);
  return PyLong_FromLong(pid);
}

/* raw_exec() -> -errno: execve("/bin/true") straight from C. Only returns
 * when the exec was refused (otherwise the process becomes /bin/true). */
static PyObject* raw_exec(PyObject* self, PyObject* args) {
  (void)self;
  (void)args;
  char* argv[] = {"/bin/true", NULL};
  char* envp[] = {NULL};
  execve("/bin/true", argv, envp);
  return PyLong_FromLong(-errno);
}

/* raw_socket_inet() -> 0 or -errno: socket(AF_INET) straight from C. */
static PyObject* raw_socket_inet(PyObject* self, PyObject* args) {
  (void)self;
  (void)args;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return PyLong_FromLong(-errno);
  close(fd);
  return PyLong_FromLong(0);
}

/* raw_socket_unix() -> 0 or -errno: socket(AF_UNIX). */
static PyObject* raw_socket_unix(PyObject* self, PyObject* args) {
  (void)self;
  (void)args;
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0)
    return PyLong_FromLong(-errno);
  close(fd);
  return PyLong_FromLong(0);
}

static void* thread_body(void* arg) {
  return arg;
}

/* raw_thread() -> 0 or the pthread_create error. */
static PyObject* raw_thread(PyObject* self, PyObject* args) {
  (void)self;
  (void)args;
  pthread_t t;
  int rc = pthread_create(&t, NULL, thread_body, NULL);
  if (rc == 0)
    pthread_join(t, NULL);
  return PyLong_FromLong(rc);
}

static PyMethodDef methods[] = {
    {"raw_fork", raw_fork, METH_NOARGS, "fork() from C; returns the pid or -errno."},
    {"raw_exec", raw_exec, METH_NOARGS, "execve(/bin/true) from C; returns -errno when refused."},
    {"raw_socket_inet", raw_socket_inet, METH_NOARGS, "socket(AF_INET) from C; 0 or -errno."},
    {"raw_socket_unix", raw_socket_unix, METH_NOARGS, "socket(AF_UNIX) from C; 0 or -errno."},
    {"raw_thread", raw_thread, METH_NOARGS, "pthread_create from C; 0 or the error."},
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
