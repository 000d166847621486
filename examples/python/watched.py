"""Functions for the observability example: slow, native, and leaky."""
import hashlib
import time

_kept = []


def slow_lookup(seconds):
    time.sleep(seconds)  # a slow call: its stack names this line
    return seconds


def hash_password(rounds):
    return hashlib.pbkdf2_hmac("sha256", b"secret", b"salt", rounds).hex()


def remember(record):
    _kept.append(bytearray(1 << 20))  # a leak: one more MiB kept per call
    return len(_kept)
