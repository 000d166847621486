"""demo: the stages of demo.toml, the README's demo job.

A three-stage pipeline over product reviews (see enrich.py for parse and
score). The first stage, "fingerprint", derives a key from each review with
PBKDF2 (OpenSSL, native code) and decodes an optional attachment with a
native decoder. Some records carry an absurd iteration count: OpenSSL then
spins for minutes in C, where no Python-level timeout can reach it. One
record carries a corrupt attachment that crashes the native decoder.
With process isolation, gilkeeper kills the stuck workers at their hard
deadline, replaces the crashed one, and the other records flow through.
"""

import ctypes
import hashlib

import enrich


def fingerprint(record):
    """Stage 1: a PBKDF2 fingerprint of the review, and its attachment."""
    if not isinstance(record, dict):
        raise enrich.InvalidReview(f"expected an object, got {type(record).__name__}")
    rounds = int(record.get("rounds", 1000))
    key = hashlib.pbkdf2_hmac("sha256", str(record.get("id")).encode(), b"gilkeeper-demo", rounds)
    if record.get("attachment") == "corrupt":
        # A buggy native decoder reading through a bad header pointer.
        ctypes.string_at(0)
    return {**record, "fingerprint": key.hex()[:16]}


def parse(record):
    """Stage 2: enrich.parse, keeping the fingerprint."""
    out = enrich.parse(record)
    out["fingerprint"] = record["fingerprint"]
    return out


score = enrich.score
