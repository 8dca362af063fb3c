"""The synthetic world both the demo and the proving ground start from: dataset, manifest, tiny
models, the feature store and the ABAW10 ablation, each made by the same command a user runs,
printed before it runs."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path


def step(*args: str, env: dict[str, str] | None = None) -> None:
    """Run `python -m <args>`, showing the command and how long it took."""
    cmd = [sys.executable, "-m", *args]
    print(f"\n$ {' '.join(shlex.quote(c) for c in cmd)}", flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)


def prepare(
    out: Path, tracks: int, frames: int, seed: int, env: dict[str, str] | None = None
) -> tuple[Path, Path, Path]:
    """Synthetic dataset (kept when already there), its manifest and the tiny "demo"-size models
    under `out` -> (data folder, models folder, manifest path)."""
    data, models, manifest = out / "data", out / "models", out / "manifest.parquet"
    if not (data / "synth_truth.json").exists():
        step("data_manifest", "synth", "--out", str(data), "--tracks", str(tracks),
             "--frames", str(frames), "--seed", str(seed), env=env)  # fmt: skip
    step("data_manifest", "affwild2", "--root", str(data), "--out", str(manifest), env=env)
    if not (models / "dinov2").exists():
        step("extract", "tiny-models", "--out", str(models), "--size", "demo", env=env)
    return data, models, manifest


def extract(
    manifest: Path, store: Path, visual: str, audio: str, *extra: str, env: dict | None = None
) -> None:
    """`auwild-extract run` at the synthetic world's crop size (112 px, the tiny models' input)."""
    step("extract", "run", "--manifest", str(manifest), "--store", str(store),
         "--visual", visual, "--audio", audio, "--batch-size", "64", "--crop-size", "112",
         *extra, env=env)  # fmt: skip


def ablate(
    store: Path,
    manifest: Path,
    out: Path,
    seeds: int,
    overrides: list[str] | tuple[str, ...],
    env: dict | None = None,
    recipe: str = "abaw10",
    rows: list[str] | tuple[str, ...] | None = None,
) -> Path:
    """`auwild-train ablate --recipe RECIPE` with `--set overrides` (only `rows` when given)
    -> the ablation.csv path."""
    chosen = ["--rows", *rows] if rows else []
    step("train", "ablate", "--recipe", recipe, "--store", str(store), "--manifest",
         str(manifest), "--out", str(out), "--seeds", str(seeds), *chosen, "--set", *overrides,
         env=env)  # fmt: skip
    return out / "ablation.csv"
