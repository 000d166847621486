"""Python functions the capability tests call through the runtime.

Only modules that are loaded at start-up are imported at the top, so that a
test with allow_modules can import this module; everything else is imported
where it is used.
(The gilkeeper module exists only inside the runtime, not in the processes
multiprocessing starts, hence imported where it is used too.)
"""
import sys


def attempt(fn, *args):
    """Runs fn(*args); returns "ok: <result>" or "denied: <message>" when a
    capability rule raised gilkeeper.CapabilityDenied (caught here)."""
    import gilkeeper
    try:
        return "ok: " + str(fn(*args))
    except gilkeeper.CapabilityDenied as e:
        # Every denial is also the builtin error that code expects there.
        assert isinstance(e, ImportError if isinstance(e, gilkeeper.ImportDenied) else PermissionError)
        return "denied: " + str(e)


def import_module(name):
    __import__(name)
    return name


def try_import(name):
    return attempt(import_module, name)


def optional_import(name):
    """Imports an optional module the usual way: an ImportError means it
    is not available."""
    try:
        __import__(name)
        return "ok: " + name
    except ImportError as e:
        return "%s: name=%s rule=%s: %s" % (type(e).__name__, e.name, getattr(e, "rule", None), e)


def fork():
    import os
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def try_fork():
    return attempt(fork)


def run_true():
    import subprocess
    return subprocess.run(["/bin/true"]).returncode


def try_subprocess():
    return attempt(run_true)


def system_true():
    import os
    return os.system("true")


def write_file(path, text="x"):
    with open(path, "w") as f:
        f.write(text)
    return path


def try_write(path):
    return attempt(write_file, path)


def read_file(path):
    with open(path) as f:
        return f.read()


def connect(host, port):
    import socket
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(2)
        s.connect((host, port))
        return "connected"
    except (ConnectionRefusedError, TimeoutError, OSError) as e:
        import gilkeeper
        if isinstance(e, gilkeeper.CapabilityDenied):
            raise
        return "network error: " + type(e).__name__
    finally:
        s.close()


def try_connect(host, port):
    return attempt(connect, host, port)


def loopback_echo():
    """A TCP echo over 127.0.0.1 with a listening socket and a client."""
    import socket
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    client = socket.create_connection(("localhost", port), timeout=5)
    conn, _ = server.accept()
    client.sendall(b"ping")
    data = conn.recv(4)
    for s in (conn, client, server):
        s.close()
    return data.decode()


def unix_socketpair():
    import socket
    a, b = socket.socketpair()
    a.sendall(b"hi")
    data = b.recv(2)
    a.close()
    b.close()
    return data.decode()


def square(x):
    return x * x


def pool_map(n):
    import multiprocessing
    with multiprocessing.Pool(2) as pool:
        squares = pool.map(square, range(n))
    return {"squares": squares, "start_method": multiprocessing.get_start_method(),
            "executable": sys.executable}


def pool_executables():
    import multiprocessing
    with multiprocessing.Pool(2) as pool:
        return sorted(set(pool.map(_executable, range(4))))


def _executable(_):
    """In a pool worker: its sys.executable and the binary it really runs."""
    import os
    import sys as child_sys
    return child_sys.executable + " " + os.readlink("/proc/self/exe")


def noop():
    return None


def time_opens(path, n):
    """Nanoseconds per open()+close() of a file for reading: each open raises
    an audit event that the hook inspects."""
    import time
    t0 = time.perf_counter_ns()
    for _ in range(n):
        open(path, "rb").close()
    return (time.perf_counter_ns() - t0) / n


def time_audit_events(n):
    """Nanoseconds per audit event that no rule looks at (the hook's floor)."""
    import time
    audit = sys.audit
    t0 = time.perf_counter_ns()
    for _ in range(n):
        audit("gilkeeper.bench", 1)
    return (time.perf_counter_ns() - t0) / n


def forkserver_pool_map(n):
    import multiprocessing
    with multiprocessing.get_context("forkserver").Pool(2) as pool:
        return pool.map(square, range(n))
