"""Stages for the CLI tests (tests/cli/*_test.cpp)."""
import os
import time


def identity(record):
    return record


def tokenize(record):
    """Stage 1: split a record's text into words."""
    return {"id": record["id"], "words": record["text"].split()}


def count_words(record):
    """Stage 2: count the words; record 13 is unlucky."""
    if record["id"] == 13:
        raise ValueError("unlucky record 13")
    return {"id": record["id"], "count": len(record["words"])}


def maybe_sleep(record):
    """Sleeps for record["sleep"] seconds when set."""
    time.sleep(record.get("sleep", 0))
    return record["id"]


def gated_sleep(record):
    """maybe_sleep, except that a record with "gate" (a path) first waits,
    up to 20 s, for that file to exist, having created "<gate>.reached"."""
    gate = record.get("gate")
    if gate and not os.path.exists(gate):
        open(gate + ".reached", "w").close()
        give_up = time.monotonic() + 20
        while not os.path.exists(gate) and time.monotonic() < give_up:
            time.sleep(0.001)
    return maybe_sleep(record)


def special(record):
    """Returns what record["kind"] asks for: NaN, inf, bytes or an object."""
    kind = record["kind"]
    if kind == "nan":
        return {"score": float("nan")}
    if kind == "inf":
        return [1.0, float("-inf")]
    if kind == "bytes":
        return {"raw": b"hi\x00\xff"}
    if kind == "object":
        return object()
    return kind


def say_hello(record):
    """Prints (which must not end up among the results) and returns."""
    print("hello from Python")
    return record


NOT_CALLABLE = 42


def native(record):
    """Spins in C holding the GIL for record["spin"] seconds, or crashes the
    process when record["crash"] is set (needs the gk_testext extension)."""
    import gk_testext
    if record.get("spin"):
        gk_testext.spin(float(record["spin"]))
    if record.get("crash"):
        gk_testext.segfault()
    return record["id"]
