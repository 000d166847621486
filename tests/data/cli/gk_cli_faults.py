"""A stage whose records may be faults: each record says what it does."""
import os
import time

_hoard = []


def run(rec):
    kind = rec.get("fault")
    if kind is None:
        return {"id": rec["id"], "ok": True}
    if kind == "raise":
        raise ValueError("fault record %d" % rec["id"])
    if kind == "sleep":
        time.sleep(30)
    elif kind == "spin":
        while True:
            pass
    elif kind == "hang_c":
        import gk_testext
        gk_testext.spin(30.0)
    elif kind == "segfault":
        import gk_testext
        gk_testext.segfault()
    elif kind == "exit":
        os._exit(3)
    elif kind == "hoard":
        _hoard.append(bytearray(96 << 20))
    return {"id": rec["id"], "fault": kind}
