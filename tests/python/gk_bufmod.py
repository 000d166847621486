"""Python side of the buffer tests (tests/interop/buffer_test.cpp)."""

import numpy as np

KEPT = np.arange(10, dtype=np.float64)


def describe(view):
    """What Python sees of a host buffer."""
    return {"type": type(view).__name__, "format": view.format, "shape": list(view.shape),
            "nbytes": view.nbytes, "readonly": view.readonly, "first": view.tobytes()[:4]}


def total(view):
    return int(np.asarray(view).sum())


def double_in_place(view):
    a = np.asarray(view)
    a *= 2
    return a.ctypes.data  # the address numpy wrote to


def kept():
    """A module-level array: the host's Buffer must be this memory."""
    return KEPT


def poke(value):
    KEPT[0] = value


def every_other(n):
    return np.arange(n, dtype=np.int32)[::2]


def identity(x):
    return x


def as_numpy_and_back(view):
    return np.asarray(view)


def try_write(view):
    try:
        np.asarray(view)[0] = 1
        return "written"
    except ValueError as e:
        return "refused: " + str(e)


def matrix():
    return np.arange(6, dtype=np.int64).reshape(2, 3)


def checksum(view):
    return int(np.asarray(view, dtype=np.uint8).sum(dtype=np.uint64))


def gk_buffers_here():
    """Shared memory of gilkeeper's buffers this process holds: open
    descriptors and mappings."""
    import os
    fds = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if "gk-buffer" in os.readlink("/proc/self/fd/" + name):
                fds += 1
        except OSError:
            pass
    with open("/proc/self/maps") as maps:
        mapped = sum(1 for line in maps if "gk-buffer" in line)
    return {"fds": fds, "maps": mapped}


def new_array(n):
    return np.arange(n, dtype=np.float64)


def hold(view, seconds):
    import time
    a = np.asarray(view)
    time.sleep(seconds)
    return int(a[0])


def scale(view):
    """A pipeline stage: doubles the array in place, returns it."""
    a = np.asarray(view)
    a *= 2
    return a


def address(view):
    """A pipeline stage: where the array it got lives."""
    return np.asarray(view).ctypes.data


def scalars():
    return [np.int64(5), np.float32(0.5), np.bool_(True), np.uint8(200)]


def structured(n):
    return np.zeros(n, dtype=[("x", "<i4"), ("y", "<f8")])
