"""A small job on a common scientific stack, as the capability recipe tests
run it: numpy, lxml, sqlite3 and PyYAML (Debian's python3-numpy,
python3-lxml and python3-yaml).

Nothing but start-up modules is imported at the top, so that each test
decides what the first import of every package sees.
"""


def summarize(xml_text, yaml_text):
    """Reads settings from YAML and numbers from XML, computes with numpy
    (array maths, linalg, fft, random), totals them in an in-memory SQLite
    database, and reports which native parts were used."""
    import sqlite3

    import numpy as np
    import yaml
    from lxml import etree

    settings = yaml.safe_load(yaml_text)
    root = etree.fromstring(xml_text.encode())
    values = np.array([float(v.text) for v in root.iter("v")]) * settings["scale"]
    rng = np.random.default_rng(settings["seed"])
    noise = rng.normal(size=values.size)
    db = sqlite3.connect(":memory:")
    try:
        db.execute("create table v (x real)")
        db.executemany("insert into v values (?)", [(float(x),) for x in values])
        total = db.execute("select sum(x) from v").fetchone()[0]
    finally:
        db.close()
    return {
        "total": total,
        "norm": float(np.linalg.norm(values)),
        "fft0": float(np.fft.fft(values)[0].real),
        "noise_finite": bool(np.isfinite(noise).all()),
        "dumped": yaml.dump({"total": total}, Dumper=yaml.CSafeDumper).strip(),
        "libyaml": yaml.__with_libyaml__,
        "numpy_has_ctypes": np.core._internal.ctypes is not None,
        "etree": type(root).__module__,
    }


def optional_ctypes():
    """Imports ctypes the way numpy does (optional: ImportError means
    "not available") and describes what was raised."""
    try:
        import ctypes  # noqa: F401
    except ImportError as e:
        import gilkeeper
        return {
            "type": type(e).__module__ + "." + type(e).__qualname__,
            "message": str(e),
            "rule": getattr(e, "rule", ""),
            "name": e.name,
            "capability_denied": isinstance(e, gilkeeper.CapabilityDenied),
            "permission_error": isinstance(e, PermissionError),
        }
    return "imported"


def import_ctypes():
    """Imports ctypes without catching anything."""
    import ctypes
    return ctypes.__name__
