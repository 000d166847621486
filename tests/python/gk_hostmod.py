"""Python side of the host-function tests (tests/runtime/host_functions_test.cpp)."""

import threading

import gilkeeper
from gilkeeper import host


def add(a, b):
    return host.add(a, b)


def via_import_form(a, b):
    import gilkeeper.host as h
    return h.add(a, b)


def down(n):
    """Python -> host -> Python -> ... n levels deep; returns the depth."""
    if n == 0:
        return 0
    return host.down(n - 1) + 1


def call_named(name, *args):
    """Calls host function `name` and says what happened, as a dict."""
    try:
        return {"ok": getattr(host, name)(*args)}
    except gilkeeper.HostError as e:
        return {"type": "HostError", "code": e.code, "message": e.message, "function": e.function}
    except gilkeeper.CapabilityDenied as e:
        return {"type": type(e).__name__, "message": str(e),
                "is_permission_error": isinstance(e, PermissionError)}


def from_thread(name, *args):
    """The same, from a Python thread of our own."""
    out = {}
    t = threading.Thread(target=lambda: out.update(call_named(name, *args)))
    t.start()
    t.join()
    return out


def wait_for(name):
    """Calls a host function that outlives the deadline; reports how it ended."""
    try:
        host.__getattr__(name)()
        return "returned"
    except gilkeeper.DeadlineExceeded:
        return "deadline"


def loop(n):
    """n host calls (the benchmark's host.call figure)."""
    f = host.noop
    for _ in range(n):
        f()
    return n
