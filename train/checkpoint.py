"""Checkpoints: a state dict plus JSON metadata, written atomically, loaded with weights_only.

A checkpoint file holds only tensors and plain Python values so `torch.load(weights_only=True)`
can read it: the metadata (config, epoch, step, schema version, store group fingerprints,
thresholds) travels as a JSON string and also sits beside the file as `<name>.json` for people.
Writes go through `write_atomic` (temporary file beside the target, synced, renamed, mode from
the umask), so a killed run leaves either the old or the new checkpoint, never half of one.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data_manifest.shared_files import write_atomic, write_text_atomic

CHECKPOINT_SCHEMA = 1


def atomic_write_bytes(path: Path, write) -> None:
    """Run `write(fileobj)` into memory, then replace `path` whole, synced to disk.

    The file gets the mode the umask gives (see data_manifest/shared_files.py), so teammates can
    read checkpoints; readers see the old or the new file, never a part.
    """
    buf = io.BytesIO()
    write(buf)
    write_atomic(path, buf.getvalue(), fsync=True)


def atomic_write_text(path: Path, text: str) -> None:
    write_text_atomic(path, text, fsync=True)


def save_checkpoint(path: str | Path, state: dict[str, Any], meta: dict[str, Any]) -> None:
    """Save `state` (tensors, state dicts, plain values) and `meta` (JSON-able) atomically."""
    path = Path(path)
    meta = {"checkpoint_schema": CHECKPOINT_SCHEMA, **meta}
    meta_json = json.dumps(meta, sort_keys=True, default=_json_default)
    payload = {**state, "meta_json": meta_json}
    atomic_write_bytes(path, lambda f: torch.save(payload, f))
    atomic_write_text(path.with_suffix(".json"), json.dumps(json.loads(meta_json), indent=2) + "\n")


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[dict, dict]:
    """(state, meta) from a checkpoint; refuses anything but tensors and plain values."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    payload = torch.load(path, map_location=map_location, weights_only=True)
    meta = json.loads(payload.pop("meta_json"))
    if meta.get("checkpoint_schema") != CHECKPOINT_SCHEMA:
        raise ValueError(
            f"{path}: checkpoint schema {meta.get('checkpoint_schema')} != {CHECKPOINT_SCHEMA}"
        )
    return payload, meta


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in checkpoint metadata")


def rng_state() -> dict[str, Any]:
    """Every random generator training touches, as weights_only-safe values."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached": float(np_state[4]),
        },
        "python": list(random.getstate()[1]),
        "python_gauss": random.getstate()[2],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    random.setstate((3, tuple(state["python"]), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
