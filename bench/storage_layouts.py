"""Which patch-token layout keeps the F1: the abaw10 rows that read patch tokens (+HGA, +AG-SSM)
trained on one synthetic world stored several ways, over several training seeds.

    python -m bench.storage_layouts [--tracks 16] [--frames 200] [--epochs 45] [--seeds 3]
        [--out DIR]

The synthetic world of the proving ground (bench/synthetic_world.py), with the demo's tiny
DINOv2 fed 224-pixel crops so its patch grid is 16 x 16 like DINOv2-B/14's (the hidden size
stays small). The store is extracted once in fp16; every other layout is derived from it by
`auwild-extract transcode` (extract/store/transcode.py), so the rows differ only in storage.
Each layout's store trains the two rows with the proving ground's overrides, once per training
seed 0..N-1 (`auwild-train ablate --seeds`), seed by seed, so a run cut short still holds every
layout at the seeds done. Runs already scored are skipped; a killed run resumes.

Writes DIR/layouts.csv (per layout and row: each seed's validation mean F1, their mean and
standard deviation, the mean as a fraction of fp16's, the gap and its standard errors) and
prints the table and what the rule "the smallest layout that keeps >= 98 % of fp16's mean F1
on every row" gives, with each layout's gap to fp16 against the seed spread: the standard error
of the difference of means (pooled from both layouts' spreads), and that of the per-seed
differences (paired: a seed starts every layout from the same weights and window order).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pandas as pd

from bench.proving_ground import SYNTH_OVERRIDES, all_positive_f1
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
REAL_DIM = 768  # DINOv2-B's token width, for bytes per frame at real size
KEEP = 0.98  # the rule: the smallest layout keeping this fraction of fp16's mean F1 on every row


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
    ap.add_argument("--epochs", type=int, default=45)
    ap.add_argument("--seeds", type=int, default=3, help="training seeds 0..N-1 per row")
    ap.add_argument("--world-seed", type=int, default=0, help="seed of the synthetic world")
    ap.add_argument("--layouts", nargs="+", default=[n for n, _, _ in LAYOUTS])
    ap.add_argument("--rows", nargs="+", default=list(ROWS), help="ablation rows to train")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data, models, manifest = prepare(out, args.tracks, args.frames, args.world_seed)
    dinov2 = dinov2_at(models, SIDE)
    fp16 = out / "fp16.zarr"
    if not (fp16 / "zarr.json").exists():
        extract(manifest, fp16, f"dinov2={dinov2}", f"wavlm={models / 'wavlm'},logmel",
                "--no-progress", "--token-dtype", "fp16", "--patch-pool", "0")  # fmt: skip
    overrides = [o for o in SYNTH_OVERRIDES if not o.startswith("optim.epochs=")]
    overrides.append(f"optim.epochs={args.epochs}")
    stores = {
        name: layout_store(out, fp16, name, kind, pool)
        for name, kind, pool in LAYOUTS
        if name in args.layouts
    }
    for seed in range(args.seeds):  # seed by seed: a run cut short holds every layout
        for row in args.rows:
            for name, store in stores.items():
                train_row(out, name, store, manifest, row, seed, overrides)
    table = collect(out, args.seeds)
    table.to_csv(out / "layouts.csv", index=False, float_format="%.4f")
    print(table.to_string(index=False), flush=True)
    trivial = all_positive_f1(pd.read_parquet(manifest))["mean_f1"]
    print(f"all-positive mean F1 (val): {trivial:.4f}")
    print(verdict(table))
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


def run_dir(out: Path, name: str, row: str, seed: int) -> Path:
    """DIR/ablation_<layout>/<i>_<row>/seed<k>, as `auwild-train ablate` lays it out."""
    from train.ablate import row_dir
    from train.recipes import ABLATIONS

    index = {r: i for i, (r, _) in enumerate(ABLATIONS["abaw10"])}
    return row_dir(out / f"ablation_{name}", index[row], row) / f"seed{seed}"


def train_row(
    out: Path, name: str, store: Path, manifest: Path, row: str, seed: int, overrides
) -> None:
    """Train and score one ablation row on one layout's store at training seed `seed` (skipped
    when that seed is already scored). `ablate --seeds seed+1` also trains any earlier seed not
    yet scored and resumes a killed one; finished earlier seeds are only scored again."""
    if (run_dir(out, name, row, seed) / "metrics.json").exists():
        print(f"{name} {row} seed {seed}: already scored, skipped", flush=True)
        return
    ablate(store, manifest, out / f"ablation_{name}", seed + 1, [*overrides, "--no-progress"],
           rows=[row])  # fmt: skip


def bytes_per_frame(kind: str, side: int, dim: int = REAL_DIM) -> int:
    """Stored bytes of one frame's patch tokens: fp16 values, or int8 values plus one float32
    scale per token."""
    tokens = side * side
    return tokens * dim * 2 if kind == "fp16" else tokens * (dim + 4)


def collect(out: Path, seeds: int) -> pd.DataFrame:
    """One line per (layout, row) scored so far: each seed's validation mean F1 at thresholds
    tuned on val (f1_seed<k>), their mean and standard deviation (ddof 1), the mean of the honest
    F1 (thresholds from the other half of val's tracks), the mean as a fraction of fp16's mean,
    the difference to fp16's mean with its standard error from both seed spreads (se_diff) and
    that of the per-seed differences (se_paired)."""
    lines = []
    for name, kind, _ in LAYOUTS:
        patch = next((out / f"{name}.zarr").glob("tracks/*/visual/dinov2/patch/zarr.json"), None)
        if patch is None:
            continue
        shape = json.loads(patch.read_text())["shape"]  # (T, h, w, D)
        for row in ROWS:
            f1, honest = {}, []
            for seed in range(seeds):
                metrics = run_dir(out, name, row, seed) / "metrics.json"
                if metrics.exists():
                    scored = json.loads(metrics.read_text())
                    f1[seed] = scored["mean_f1"]
                    honest.append(scored.get("honest_mean_f1", math.nan))
            if not f1:
                continue
            values = pd.Series(f1, dtype=float)
            entry = {
                "layout": name,
                "grid": f"{shape[1]}x{shape[2]}",
                "bytes_per_frame": bytes_per_frame(kind, shape[1]),
                "row": row,
                "n_seeds": len(values),
                **{f"f1_seed{k}": v for k, v in f1.items()},
                "mean": values.mean(),
                "sd": values.std(ddof=1) if len(values) > 1 else math.nan,
                "honest_mean": pd.Series(honest, dtype=float).mean(),
            }
            lines.append(entry)
    table = pd.DataFrame(lines)
    if table.empty:
        return table
    seed_cols = sorted((c for c in table if c.startswith("f1_seed")), key=lambda c: int(c[7:]))
    head = ["layout", "grid", "bytes_per_frame", "row", "n_seeds"]
    table = table[head + seed_cols + ["mean", "sd", "honest_mean"]]
    ref = table[table["layout"] == "fp16"].set_index("row")
    fp16_mean = table["row"].map(ref["mean"])
    table["of_fp16"] = table["mean"] / fp16_mean
    table["diff"] = table["mean"] - fp16_mean
    table["se_diff"] = (
        table["sd"] ** 2 / table["n_seeds"]
        + (table["row"].map(ref["sd"]) ** 2 / table["row"].map(ref["n_seeds"]))
    ) ** 0.5
    table["se_paired"] = [
        paired_se(r, ref.loc[r["row"]], seed_cols) if r["row"] in ref.index else math.nan
        for _, r in table.iterrows()
    ]
    table.loc[table["layout"] == "fp16", ["se_diff", "se_paired"]] = math.nan  # itself
    return table


def paired_se(line: pd.Series, fp16: pd.Series, seed_cols: list[str]) -> float:
    """Standard error of the mean per-seed difference to fp16, over the seeds both scored: a
    seed starts every layout from the same weights and window order, so the per-seed difference
    removes the spread the seeds share."""
    diffs = (line[seed_cols] - fp16[seed_cols]).dropna().astype(float)
    return float(diffs.std(ddof=1) / math.sqrt(len(diffs))) if len(diffs) > 1 else math.nan


def verdict(table: pd.DataFrame, keep: float = KEEP) -> str:
    """What the rule gives: per layout, its lowest fraction of fp16's mean F1 over the rows and
    whether each row's gap to fp16 exceeds twice its standard error; then the smallest layout
    (fewest bytes per frame) keeping `keep` on every row."""
    if table.empty or "fp16" not in set(table["layout"]):
        return "no fp16 runs scored yet: nothing to compare with"
    rows = sorted(set(table["row"]))
    lines, passing = [], []
    for layout, part in table.groupby("layout", sort=False):
        part = part.set_index("row")
        gaps = []
        for row in rows:
            if row not in part.index:
                gaps.append(f"{row} not scored")
                continue
            r = part.loc[row]
            if layout == "fp16":
                gaps.append(f"{row} {r['mean']:.4f} ± {r['sd']:.4f}")
                continue
            if math.isnan(r["se_diff"]):
                noise = "one seed, no spread"
            else:
                noise = ", ".join(
                    f"{kind} se {r[col]:.4f}: "
                    f"{'beyond' if abs(r['diff']) > 2 * r[col] else 'within'} 2 se"
                    for kind, col in (("pooled", "se_diff"), ("paired", "se_paired"))
                    if not math.isnan(r[col])
                )
            gaps.append(f"{row} {r['of_fp16']:.3f} of fp16 (diff {r['diff']:+.4f}, {noise})")
        complete = all(row in part.index for row in rows)
        keeps = complete and bool((part["of_fp16"] >= keep).all())
        if keeps:
            passing.append((int(part["bytes_per_frame"].iloc[0]), layout))
        mark = "keeps" if keeps else "does not keep"
        lines.append(f"  {layout}: {mark} {keep:.0%} on every row; " + "; ".join(gaps))
    choice = min(passing)[1] if passing else "none"
    return "\n".join(
        [f"rule (smallest layout keeping {keep:.0%} of fp16's mean F1 on every row): {choice}"]
        + lines
    )


if __name__ == "__main__":
    raise SystemExit(main())
