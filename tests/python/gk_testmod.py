"""Python functions the tests call through the runtime."""
import datetime
import os
import socket
import sys
import threading
import time

counter = 0


def add(a, b):
    return a + b


def echo(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}


def identity(x):
    return x


def increment():
    """A check-then-set on shared state: racy between threads, atomic per message."""
    global counter
    current = counter
    counter = current + 1
    return counter


def get_counter():
    return counter


def raise_value_error(msg):
    raise ValueError(msg)


def nested_raise():
    def inner():
        raise KeyError("missing")
    inner()


def with_datetime():
    return [1, 2, {"when": datetime.datetime(2024, 1, 1)}]


def big_int():
    return 2 ** 70


def make_set():
    return {1, 2, 3}


def non_str_key():
    return {1: "one"}


def surrogate():
    return "bad \udc80 str"


def deep(n):
    v = []
    for _ in range(n):
        v = [v]
    return v


def cyclic():
    a = []
    a.append(a)
    return a


def special_floats():
    return [float("nan"), float("inf"), float("-inf")]


def tuple_and_bytearray():
    return (1, bytearray(b"ab"), (2, 3))


class Box:
    def __init__(self, value):
        self.value = value
        self.items = []

    def add(self, x):
        self.items.append(x)
        return len(self.items)

    def total(self):
        return sum(self.items)


def make_box(value):
    return Box(value)


def box_value(box):
    return box.value


# -- deadlines ------------------------------------------------------------

events = []


def busy_loop():
    while True:
        pass


def sleep_for(seconds):
    time.sleep(seconds)
    return seconds


def wait_event():
    threading.Event().wait()


def block_on_recv():
    a, b = socket.socketpair()
    try:
        a.recv(1)
    finally:
        a.close()
        b.close()


def join_forever():
    t = threading.Thread(target=lambda: threading.Event().wait(), daemon=True)
    t.start()
    t.join()


def catch_deadline(mark):
    """Records side effects before the deadline and in finally; none after."""
    import gilkeeper
    events.append(mark + ":start")
    try:
        while True:
            time.sleep(0.001)
    except gilkeeper.DeadlineExceeded:
        events.append(mark + ":caught")
        raise
    finally:
        events.append(mark + ":finally")


def record(mark):
    events.append(mark)
    return len(events)


def get_events():
    return list(events)


def clear_events():
    events.clear()


def sleep_then_record(seconds, mark):
    time.sleep(seconds)
    events.append(mark)
    return mark


def spin_native(seconds):
    import gk_testext
    return gk_testext.spin(seconds)


def remaining():
    import gilkeeper
    return gilkeeper.remaining()


# -- shutdown ----------------------------------------------------------------

def start_never_ending_thread():
    t = threading.Thread(target=lambda: threading.Event().wait(), name="never-ends", daemon=False)
    t.start()
    return t.name


def executable_in_child():
    import multiprocessing
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(_child_executable)


def _child_executable():
    import sys
    return sys.executable


def own_executable():
    return sys.executable


# -- process isolation ---------------------------------------------------------

def getpid():
    return os.getpid()


def crash_segv():
    import gk_testext
    gk_testext.segfault()


def crash_abort():
    import gk_testext
    gk_testext.abort_now()


def exit_now(code):
    os._exit(code)


_hog = []


def hog(megabytes):
    """Allocates and keeps `megabytes` of memory."""
    _hog.append(bytearray(megabytes * 1024 * 1024))
    return len(_hog)


def alloc_temporarily(megabytes):
    b = bytearray(megabytes * 1024 * 1024)
    return len(b)


def sleep_and_pid(seconds):
    time.sleep(seconds)
    return os.getpid()


# -- pipelines -------------------------------------------------------------------

def double(x):
    return x * 2


def jitter(x):
    import random
    time.sleep(random.random() * 0.004)
    return x


def crash_once(x, marker_dir):
    """Crashes the worker the first time it sees `x`, then succeeds."""
    marker = os.path.join(marker_dir, str(x))
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(9)
    return x


def fail_on(x, bad):
    if x == bad:
        raise ValueError(f"record {x} is bad")
    return x


def crash_once_rec(rec):
    """A record {"x": ..., "dir": ...}: crashes the worker the first time."""
    return crash_once(rec["x"], rec["dir"])


def crash_always(rec):
    os._exit(9)


def loop_if_13(x):
    """Loops forever on 13 (a pure-Python loop: soft interrupts stop it)."""
    while x == 13:
        pass
    return x * 2


def spin_native_if_7(x):
    """Spins in C (holding the GIL, deaf to interrupts) on 7."""
    if x == 7:
        spin_native(30)
    return x * 2


def spin_native_briefly_if_3(x):
    """Spins in C for a second (deaf to interrupts) on 3; records each x."""
    events.append("ran %d" % x)
    if x == 3:
        spin_native(1.0)
    return x * 2


def sleep_if_0(x):
    """Sleeps 0.6 s on 0."""
    if x == 0:
        time.sleep(0.6)
    return x * 2


# -- poison records (the crash breaker) -------------------------------------------

def segfault_if_poison(rec):
    """A record {"x": ..., "poison": ...}: a poison record segfaults its
    worker every time; the others give x * 2."""
    if rec["poison"]:
        import gk_testext
        gk_testext.segfault()
    return rec["x"] * 2


def touch_then_sleep(path, seconds):
    """Creates `path` (the call has started), then sleeps."""
    open(path, "w").close()
    time.sleep(seconds)
    return seconds


def pid_then_sleep(path, seconds):
    """Writes this process's pid to `path` (the call has started), then sleeps."""
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(path + ".tmp", path)
    time.sleep(seconds)
    return seconds


# -- memory ------------------------------------------------------------------

_hoard = []


def leak_mb():
    """Keeps one more MiB each call (a leak)."""
    _hoard.append(bytearray(1 << 20))
    return len(_hoard)
