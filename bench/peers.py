#!/usr/bin/python3
"""The Python-side peers of gilkeeper's benchmarks; one figure per run.

    /usr/bin/python3 bench/peers.py FIGURE [--iterations N]
    /usr/bin/python3 bench/peers.py --list

Prints one JSON line in gk_bench's format (figure, unit, median, p99,
iterations, samples in microseconds). The callables are gk_benchmod's, the
same functions gilkeeper calls. Pools use this interpreter's default start
method (fork on Linux) and are started and warmed up before timing.
"""
import argparse
import concurrent.futures
import json
import multiprocessing
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "python"))
import gk_benchmod  # noqa: E402

WARMUP = 50
UNAVAILABLE = 3  # exit status: the peer is not installed here


def percentile(v, p):
    if not v:
        return 0.0
    s = sorted(v)
    return s[int(p * (len(s) - 1) + 0.5)]


def roundtrips(n, once):
    for _ in range(WARMUP):
        once()
    out = []
    clock = time.perf_counter
    for _ in range(n):
        t0 = clock()
        once()
        out.append((clock() - t0) * 1e6)
    return out


def threadpool(n):
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        return roundtrips(n, lambda: ex.submit(gk_benchmod.noop).result())


def mp_pool_apply(n):
    with multiprocessing.Pool(1) as pool:
        return roundtrips(n, lambda: pool.apply(gk_benchmod.noop))


def mp_pool_apply_1mib(n):
    """The same bytes gilkeeper's process.buffer1MiB sends, through a Pool."""
    payload = b"x" * (1 << 20)
    with multiprocessing.Pool(1) as pool:
        return roundtrips(n, lambda: pool.apply(gk_benchmod.identity, (payload,)))


def pebble_pool():
    try:
        from pebble import ProcessPool
    except ImportError:
        print("peers.py: pebble is not installed (Debian: python3-pebble)", file=sys.stderr)
        sys.exit(UNAVAILABLE)
    return ProcessPool(max_workers=1)


def pebble_schedule(n):
    pool = pebble_pool()
    try:
        return roundtrips(n, lambda: pool.schedule(gk_benchmod.noop, timeout=10).result())
    finally:
        pool.stop()
        pool.join()


# Pebble's timeout, measured as gk_bench measures gilkeeper's hard deadline:
# the task is scheduled on a ready worker with a 20 ms timeout; "told late" is
# how long after submit + timeout the future reports TimeoutError; "next
# served" is how long after submit + timeout the next trivial task's result
# arrives (pebble kills the worker and starts another one).
BUDGET = 0.020


def pebble_deadline(n, target, next_served):
    pool = pebble_pool()
    out = []
    clock = time.monotonic
    try:
        for _ in range(n):
            pool.schedule(gk_benchmod.noop, timeout=10).result()  # a worker is ready
            t0 = clock()
            fut = pool.schedule(target, timeout=BUDGET)
            try:
                fut.result()
                sys.exit("peers.py: expected a TimeoutError")
            except TimeoutError:
                pass
            due = t0 + BUDGET
            if next_served:
                pool.schedule(gk_benchmod.noop, timeout=10).result()
            out.append((clock() - due) * 1e6)
    finally:
        pool.stop()
        pool.join()
    return out


FIGURES = {
    "peer.threadpool": threadpool,
    "peer.mp_pool.apply": mp_pool_apply,
    "peer.mp_pool.apply1MiB": mp_pool_apply_1mib,
    "peer.pebble": pebble_schedule,
    "deadline.pebble.told_late.loop": lambda n: pebble_deadline(n, gk_benchmod.spin_forever, False),
    "deadline.pebble.told_late.sleep": lambda n: pebble_deadline(n, gk_benchmod.sleep_long, False),
    "deadline.pebble.next_served": lambda n: pebble_deadline(n, gk_benchmod.spin_forever, True),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("figure")
    ap.add_argument("--iterations", type=int, default=1000)
    args = ap.parse_args()
    if args.figure == "--list":
        print("\n".join(FIGURES))
        return
    if args.figure not in FIGURES:
        sys.exit(f"peers.py: unknown figure {args.figure}")
    samples = FIGURES[args.figure](args.iterations)
    print(json.dumps({
        "figure": args.figure, "unit": "us",
        "median": round(percentile(samples, 0.5), 3), "p99": round(percentile(samples, 0.99), 3),
        "iterations": len(samples),
        "python": sys.version.split()[0],
        "start_method": multiprocessing.get_start_method(),
        "samples": [round(s, 3) for s in samples],
    }))


if __name__ == "__main__":
    main()
