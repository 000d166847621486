"""Python side of the benchmarks."""
import time

caught_at = []


def noop():
    return None


def identity(x):
    return x


def loop_until_interrupted():
    try:
        while True:
            pass
    except BaseException:
        caught_at.append(time.monotonic())
        raise


def sleep_until_interrupted():
    try:
        time.sleep(30)
    except BaseException:
        caught_at.append(time.monotonic())
        raise


def grow_lists_until_interrupted():
    kept = []
    while True:
        kept.append([0] * 10)


def build_strs_until_interrupted():
    return [str(i) for i in range(10**8)]


def last_caught():
    return caught_at[-1] if caught_at else None


def cpu(n):
    s = 0
    for i in range(n):
        s += i * i
    return s


def spin_native(seconds):
    import gk_testext
    return gk_testext.spin(seconds)


# For the pebble peers (run in pebble's worker processes; they end by being
# killed).
def spin_forever():
    while True:
        pass


def sleep_long():
    time.sleep(30)


# For the CLI figures on int records (cli.*.int): the same work in the plain
# loop, the peers and the gilkeeper job.
def plus_one(x):
    return x + 1


def burn(x):
    """About a millisecond of pure-Python CPU work, then x."""
    s = 0
    for i in range(20000):
        s += i * i
    return x


def host_loop(k):
    """k calls of the host function `noop` (the host.call figure)."""
    from gilkeeper import host
    f = host.noop
    for _ in range(k):
        f()
    return k


def numpy_identity(view):
    """The host's buffer as a numpy array, returned (no copy either way)."""
    import numpy
    return numpy.asarray(view)
