"""Functions that take their time, for the timeout examples."""
import time


def nap(seconds):
    time.sleep(seconds)
    return seconds


def quick_check(seconds):
    time.sleep(seconds)
    return "checked"


def spin():
    while True:
        pass
