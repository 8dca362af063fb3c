"""auwild from Python: open a feature store, iterate a split as windows, predict with a run.

    import auwild
    store = auwild.open_store("features.zarr")  # or "s3://bucket/features.zarr"
    track = store.tracks()[0]
    x = store.read(track, "visual/dinov2/cls")  # (T, D) numpy; format="torch" for a tensor
    ds = auwild.SplitDataset(store, "manifest.parquet", "train", recipe="baseline")
    run = auwild.load_run("runs/baseline")
    probs, decisions = run.predict(store.window(track, run.arrays))  # (T, 12) each

Examples: docs/python_api.md. `import auwild` loads numpy only; torch and the trainer are
imported when SplitDataset, load_run or Run is first used.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

from auwild.store import Store, open_store
from data_manifest.aus import AUS

try:
    __version__ = version("auwild")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

_LAZY = {
    "SplitDataset": "auwild.dataset",
    "Run": "auwild.run",
    "load_run": "auwild.run",
    "f1_per_au": "train.metrics",
    "mean_f1": "train.metrics",
}

__all__ = [
    "AUS",
    "Run",
    "SplitDataset",
    "Store",
    "__version__",
    "f1_per_au",
    "load_run",
    "mean_f1",
    "open_store",
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'auwild' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
