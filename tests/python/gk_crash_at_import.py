"""A module whose import kills the process every time (a broken extension)."""
import os

os._exit(3)


def never():
    return "unreachable"
