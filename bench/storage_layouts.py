"""Which patch-token layout keeps the F1: the abaw10 rows that read patch tokens (+HGA, +AG-SSM)
trained on one synthetic world stored several ways.

    python -m bench.storage_layouts [--tracks 16] [--frames 200] [--epochs 20] [--out DIR]

The synthetic world of the proving ground (bench/synthetic_world.py), with the demo's tiny
DINOv2 fed 224-pixel crops so its patch grid is 16 x 16 like DINOv2-B/14's (the hidden size
stays small). The store is extracted once in fp16; every other layout is derived from it by
`auwild-extract transcode` (extract/store/transcode.py), so the rows differ only in storage.
Each layout's store trains the two rows with the proving ground's overrides (one seed, fewer
epochs: CPU time is scarce). Writes DIR/layouts.csv and prints the table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from bench.proving_ground import SYNTH_OVERRIDES
from bench.synthetic_world import ablate, extract, prepare, step

# (name, token kind, pooled grid side or None); "fp16" is the store extracted, the rest transcoded
LAYOUTS = (
    ("fp16", "fp16", None),
    ("int8", "int8", None),
    ("int8-pool8", "int8", 8),
    ("int8-pool4", "int8", 4),
)
ROWS = ("+HGA", "+AG-SSM")
SIDE = 224  # DINOv2-B/14's input: 16 x 16 patches of 14 pixels


def dinov2_at(models: Path, side: int) -> Path:
    """A copy of the demo DINOv2 whose preprocessor asks for `side`-pixel crops."""
    import shutil

    out = models / f"dinov2_{side}"
    if not out.exists():
        shutil.copytree(models / "dinov2", out)
        cfg_path = out / "preprocessor_config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["crop_size"] = {"height": side, "width": side}
        cfg["size"] = {"shortest_edge": side}
        cfg_path.write_text(json.dumps(cfg, indent=2))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bench_out/storage_layouts")
    ap.add_argument("--tracks", type=int, default=16)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layouts", nargs="+", default=[n for n, _, _ in LAYOUTS])
    ap.add_argument("--rows", nargs="+", default=list(ROWS), help="ablation rows to train")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data, models, manifest = prepare(out, args.tracks, args.frames, args.seed)
    dinov2 = dinov2_at(models, SIDE)
    fp16 = out / "fp16.zarr"
    if not (fp16 / "zarr.json").exists():
        extract(manifest, fp16, f"dinov2={dinov2}", f"wavlm={models / 'wavlm'},logmel",
                "--no-progress", "--token-dtype", "fp16", "--patch-pool", "0")  # fmt: skip
    overrides = [o for o in SYNTH_OVERRIDES if not o.startswith("optim.epochs=")]
    overrides.append(f"optim.epochs={args.epochs}")
    for row in args.rows:
        for name, kind, pool in LAYOUTS:
            if name in args.layouts:
                store = layout_store(out, fp16, name, kind, pool)
                train_row(out, name, store, manifest, row, overrides)
    table = collect(out)
    table.to_csv(out / "layouts.csv", index=False, float_format="%.4f")
    print(table.to_string(index=False), flush=True)
    return 0


def layout_store(out: Path, fp16: Path, name: str, kind: str, pool: int | None) -> Path:
    """The store of layout `name`: the extracted fp16 store, or transcoded from it once."""
    if name == "fp16":
        return fp16
    store = out / f"{name}.zarr"
    if not (store / "zarr.json").exists():
        cmd = ["extract", "transcode", str(fp16), str(store), "--token-dtype", kind]
        if pool:
            cmd += ["--patch-pool", str(pool)]
        step(*cmd)
    return store


def run_dir(out: Path, name: str, row: str) -> Path:
    from train.ablate import row_dir
    from train.recipes import ABLATIONS

    index = {r: i for i, (r, _) in enumerate(ABLATIONS["abaw10"])}
    return row_dir(out / f"ablation_{name}", index[row], row) / "seed0"


def train_row(out: Path, name: str, store: Path, manifest: Path, row: str, overrides) -> None:
    """Train and score one ablation row on one layout's store (skipped when already scored)."""
    if (run_dir(out, name, row) / "metrics.json").exists():
        return
    ablate(store, manifest, out / f"ablation_{name}", 1, [*overrides, "--rows", row])


def collect(out: Path) -> pd.DataFrame:
    """Validation mean F1 of every (layout, row) scored so far, with the stored grid."""
    rows = []
    for name, _, _ in LAYOUTS:
        store = out / f"{name}.zarr"
        patch = next(store.glob("tracks/*/visual/dinov2/patch/zarr.json"), None)
        if patch is None:
            continue
        shape = json.loads(patch.read_text())["shape"]
        entry = {"layout": name, "grid": f"{shape[1]}x{shape[2]}"}
        for row in ROWS:
            metrics = run_dir(out, name, row) / "metrics.json"
            if metrics.exists():
                entry[row] = json.loads(metrics.read_text())["mean_f1"]
        rows.append(entry)
    return pd.DataFrame(rows)


if __name__ == "__main__":
    raise SystemExit(main())
