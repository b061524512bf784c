"""Shared helpers of the peer-oracle generators (numpy only).

Every generator runs in its own virtual environment (see setup.sh) and imports only numpy from
here, so this module must not import any peer package.

Inputs
- `synthetic`: seeded Gaussian data written by make_inputs.py to
  __test__/fixtures/peer-oracles/inputs-synthetic.json (float32 values, committed).
- `real`: a slice of ../shared/realdata/crosslingual_fasttext/aligned/en-fr (rows given below).
  ../shared may not be copied into the repository, so the fixture files name the files and row
  ranges and the tests read the same rows from ../shared.
"""
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
FIXTURES = REPO / "__test__" / "fixtures" / "peer-oracles"
SHARED = Path(os.environ.get("DBNORM_SHARED", REPO.parent / "shared")).resolve()

# The real slice: file under ../shared/realdata, first row, row count. Rows are L2-normalised
# float32 (see ../shared/realdata/README.md). Queries and gallery are test rows, the banks are the
# train rows (query bank: mapped English words, gallery bank: French words).
REAL_DIR = "realdata/crosslingual_fasttext/aligned/en-fr"
REAL_SLICE = {
    "queries": {"file": f"{REAL_DIR}/query_test.npy", "start": 0, "rows": 40},
    "gallery": {"file": f"{REAL_DIR}/gallery_test.npy", "start": 0, "rows": 60},
    "queryBank": {"file": f"{REAL_DIR}/query_bank.npy", "start": 0, "rows": 80},
    "galleryBank": {"file": f"{REAL_DIR}/gallery_bank.npy", "start": 0, "rows": 70},
}


def load_synthetic():
    """The committed synthetic inputs as float64 arrays holding float32 values."""
    with open(FIXTURES / "inputs-synthetic.json") as f:
        doc = json.load(f)
    out = {}
    for key, m in doc["matrices"].items():
        a = np.asarray(m["data"], dtype=np.float32).reshape(m["rows"], m["cols"])
        out[key] = a.astype(np.float64)
    return out


def load_real():
    """The real slice (float32 rows from ../shared, as float64)."""
    out = {}
    for key, s in REAL_SLICE.items():
        a = np.load(SHARED / s["file"])
        assert a.dtype == np.float32, (s, a.dtype)
        out[key] = a[s["start"] : s["start"] + s["rows"]].astype(np.float64)
    return out


def datasets():
    """(name, description, matrices) for every input set the oracles run on."""
    sets = [("synthetic", {"kind": "synthetic", "file": "inputs-synthetic.json"}, load_synthetic())]
    if (SHARED / REAL_DIR).exists():
        sets.append(("real", {"kind": "shared-slice", "slice": REAL_SLICE}, load_real()))
    else:
        print(f"warning: {SHARED / REAL_DIR} not found; real-data oracles not written", file=sys.stderr)
    return sets


def cosine(a, b):
    """Cosine similarity of the rows of a against the rows of b, float64."""
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    return an @ bn.T


def num(x, digits=13):
    """A JSON-ready flat list (row-major) of Python floats rounded to `digits` significant digits,
    or of ints (no NaN: a non-finite output is a generator error)."""
    a = np.asarray(x).ravel()
    if a.dtype.kind == "f":
        assert np.all(np.isfinite(a)), "non-finite oracle output"
        return [float(f"{v:.{digits}g}") for v in a.astype(np.float64)]
    return a.astype(np.int64).tolist()


def environment(packages):
    """Versions of the interpreter and of the named packages (importlib.metadata)."""
    from importlib.metadata import version

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {p: version(p) for p in packages},
    }


def write(name, doc):
    path = FIXTURES / name
    with open(path, "w") as f:
        json.dump(doc, f, indent=None, sort_keys=False)
        f.write("\n")
    print(f"wrote {path.relative_to(REPO)} ({path.stat().st_size} bytes)")
