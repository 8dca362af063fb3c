"""The run directory: what `fit` leaves behind and what eval, predict and report read.

RUN/run.json        store and manifest paths, folds, recipe (so later commands need only RUN)
RUN/config.json     the resolved configuration
RUN/history.jsonl   one line per epoch: losses, validation F1, learning rate
RUN/last.pt, best.pt (+ .json metadata)   checkpoints of a single model, or
RUN/fold_<k>/...    one model directory per fold with the same files
RUN/metrics.json    written by eval
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data_manifest.cli_support import UserError
from data_manifest.shared_files import write_text_atomic
from train.checkpoint import load_checkpoint
from train.config import TrainConfig, from_dict

RUN_FILE = "run.json"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.jsonl"
LAST = "last.pt"
BEST = "best.pt"


def write_run_info(run: Path, info: dict[str, Any]) -> None:
    write_text_atomic(run / RUN_FILE, json.dumps(info, indent=2, sort_keys=True) + "\n")


def read_run_info(run: str | Path) -> dict[str, Any]:
    path = Path(run) / RUN_FILE
    if not path.exists():
        raise UserError(
            f"{run} is not a run directory (no {RUN_FILE}); run `auwild-train fit` first"
        )
    return json.loads(path.read_text())


def model_dirs(run: str | Path) -> list[Path]:
    """The model directories of a run: the fold folders, or the run itself."""
    info = read_run_info(run)
    k = int(info.get("folds", 0) or 0)
    if k:
        return [Path(run) / f"fold_{i}" for i in range(k)]
    return [Path(run)]


def read_history(model_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(model_dir) / HISTORY_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_model(model_dir: str | Path, which: str = "best", device: str | torch.device = "cpu"):
    """(model, meta, config) from a model directory's checkpoint (`best` falls back to `last`)."""
    from train.models import build_model

    model_dir = Path(model_dir)
    path = model_dir / (BEST if which == "best" else LAST)
    if not path.exists() and which == "best":
        path = model_dir / LAST
    if not path.exists():
        raise UserError(f"{model_dir}: no checkpoint ({BEST} or {LAST}); did fit finish an epoch?")
    state, meta = load_checkpoint(path, map_location=device)
    config: TrainConfig = from_dict(meta["config"])
    dims = dict(meta["dims"])
    if "grid" in dims:
        dims["grid"] = tuple(dims["grid"])
    model = build_model(config.model, dims)
    model.load_state_dict(state["model"])
    model.to(device).eval()
    return model, meta, config


def thresholds_of(meta: dict[str, Any]) -> np.ndarray:
    return np.asarray(meta.get("thresholds") or [0.5] * 12, dtype=np.float64)
