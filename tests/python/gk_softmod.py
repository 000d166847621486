"""Code that runs until a soft deadline interrupts it, for the soft traceback tests."""
import time

import gilkeeper


def spin():
    while True:
        pass


def grow_lists():
    kept = []
    while True:
        kept.append([0] * 10)


def build_strs():
    return [str(i) for i in range(10**8)]


def build_zeros():
    return [0 for _ in iter(int, 1)]


def nap():
    time.sleep(30)


def _down(n):
    if n:
        return _down(n - 1)
    while True:
        pass


def recurse():
    return _down(40)


def slow_cleanup(seconds):
    """Catches the deadline and takes `seconds` to clean up before re-raising."""
    try:
        while True:
            pass
    except gilkeeper.DeadlineExceeded:
        time.sleep(seconds)
        raise
