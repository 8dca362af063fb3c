"""A small synthetic world for the extraction job tests: data, manifest, tiny models, helpers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]


def make_world(base: Path) -> dict:
    """3 tracks x 30 frames of the synthetic Aff-Wild2 layout, its manifest and tiny models."""
    from data_manifest.cli import main as manifest_main
    from extract.tiny_models import write_tiny_models

    data = base / "data"
    synth = ["synth", "--out", str(data), "--tracks", "3", "--frames", "30", "--seed", "1"]
    assert manifest_main([*synth, "--quiet"]) == 0
    manifest = base / "manifest.parquet"
    assert manifest_main(["affwild2", "--root", str(data), "--out", str(manifest)]) == 0
    models = write_tiny_models(base / "models")
    return {"base": base, "data": data, "manifest": manifest, "models": models}


def args_for(world, store, *extra, audio="logmel", visual=True, manifest=None):
    args = [
        "run",
        "--manifest",
        str(manifest or world["manifest"]),
        "--store",
        str(store),
        "--no-progress",
        "--batch-size",
        "8",
        "--crop-size",
        "56",
    ]
    if visual:
        args += ["--visual", f"dinov2={world['models']['dinov2']}"]
    if audio:
        args += ["--audio", audio]
    return args + list(extra)


def arrays_of(store, consolidated: bool = True) -> dict[str, np.ndarray]:
    from extract.store import StoreReader

    reader = StoreReader(str(store), consolidated=consolidated)
    out = {}
    for tid in reader.tracks():
        for name in reader.arrays(tid):
            out[f"{tid}/{name}"] = reader.read(tid, name)
    return out


def assert_same_arrays(a, b):
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def chunk_files(store: Path) -> dict[str, bytes]:
    """Every data file of a store (not metadata, not hidden lease or temporary files)."""
    return {
        str(p.relative_to(store)): p.read_bytes()
        for p in store.rglob("*")
        if p.is_file()
        and p.name != "zarr.json"
        and not any(part.startswith(".") for part in p.relative_to(store).parts)
    }


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "extract", *args]


def cli_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    return env
