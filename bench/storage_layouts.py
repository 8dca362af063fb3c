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
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data, models, manifest = prepare(out, args.tracks, args.frames, args.seed)
    dinov2 = dinov2_at(models, SIDE)
    fp16 = out / "fp16.zarr"
    if not (fp16 / "zarr.json").exists():
        extract(manifest, fp16, f"dinov2={dinov2}", f"wavlm={models / 'wavlm'},logmel",
                "--no-progress", "--token-dtype", "fp16")  # fmt: skip
    overrides = [o for o in SYNTH_OVERRIDES if not o.startswith("optim.epochs=")]
    overrides.append(f"optim.epochs={args.epochs}")
    table = []
    for name, kind, pool in LAYOUTS:
        if name not in args.layouts:
            continue
        store = fp16
        if name != "fp16":
            store = out / f"{name}.zarr"
            if not (store / "zarr.json").exists():
                cmd = ["extract", "transcode", str(fp16), str(store), "--token-dtype", kind]
                if pool:
                    cmd += ["--patch-pool", str(pool)]
                step(*cmd)
        runs = out / f"ablation_{name}"
        if not (runs / "ablation.csv").exists():
            ablate(store, manifest, runs, 1, [*overrides, "--rows", *ROWS])
        df = pd.read_csv(runs / "ablation.csv").set_index("row")
        patch = next(store.glob("tracks/*/visual/dinov2/patch/zarr.json"))
        shape = json.loads(patch.read_text())["shape"]
        table.append(
            {"layout": name, "grid": f"{shape[1]}x{shape[2]}", "dim": shape[3],
             **{row: float(df.loc[row, "mean_f1"]) for row in ROWS if row in df.index}}
        )  # fmt: skip
        pd.DataFrame(table).to_csv(out / "layouts.csv", index=False, float_format="%.4f")
        print(pd.DataFrame(table).to_string(index=False), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
