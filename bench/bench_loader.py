"""Loader throughput against the ABAW10 training step at real feature sizes, in one run.

A store with DINOv2-B/14-sized features (CLS 768, patch tokens 16 x 16 x 768) in the layouts
the store supports (fp16 tokens, int8 tokens with a per-token scale, fp16 tokens pooled to
4 x 4), 17 ROIs and WavLM-sized audio (768) is written to a temporary folder (a few tracks of
a few hundred frames, so it writes in about a minute). Measured, per layout:

- a store read of one window of patch tokens against a numpy copy of the same window;
- windows per second of each loader (RAM cache plain = the reference, RAM cache with a
  prefetch thread, store reads plain, with a prefetch thread and with 2 worker processes, and
  the GPU-resident cache on CUDA), for 64-frame windows and for long windows with the batch
  shrunk to keep frames per step constant;
- windows per second of the abaw10 training step (hga_agssm, forward, backward, AdamW; bf16
  autocast on CUDA) on the same batches. A loader/step ratio above 1 keeps the model the
  bottleneck.

    python -m bench.bench_loader [--quick] [--json OUT] [--out bench/results/loader.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
D_CLS, D_PATCH, GRID, D_AUDIO, N_ROIS = 768, 768, 16, 768, 17
LAYOUTS = {  # visual group -> token storage (kind, pool)
    "fp16": ("visual/fp16", "fp16", None),
    "int8": ("visual/int8", "int8", None),
    "pool4": ("visual/pool4", "fp16", 4),
}


def write_store(path: Path, tracks: int, frames: int, layouts: list[str], seed: int = 0) -> None:
    """Tracks of `frames` frames with every layout's CLS and patch tokens, written in blocks."""
    from extract.store import StoreWriter, TokenStorage

    rng = np.random.default_rng(seed)
    w = StoreWriter(str(path), create=True)
    w.register_group("face", {"bench": 1})
    for name in layouts:
        group, kind, pool = LAYOUTS[name]
        w.register_group(group, {"bench": 1, "tokens": kind, "pool": pool})
    w.register_group("audio/wavlm", {"bench": 1})
    w.register_group("audio", {"bench": 1})
    block = 64
    for i in range(tracks):
        n = frames
        with w.open_track(f"t{i:03d}", n_frames=n) as tw:
            small = {
                "time": np.arange(n) / 30.0,
                "face/valid": rng.random(n) > 0.05,
                "face/box": np.zeros((n, 4), np.float32),
                "face/landmarks": np.zeros((n, 68, 2), np.float32),
                "face/align": np.zeros((n, 2, 3), np.float32),
                "face/rois": rng.random((n, N_ROIS, 4)).astype(np.float32),
                "audio/wavlm": rng.normal(size=(n, D_AUDIO)).astype(np.float16),
                "audio/valid": np.ones(n, bool),
            }
            for name, values in small.items():
                tw.create_array(name, values.shape, values.dtype)
                tw.write(name, 0, values)
            for name in layouts:
                group, kind, pool = LAYOUTS[name]
                tw.create_array(f"{group}/cls", (n, D_CLS), "float16")
                tw.write(f"{group}/cls", 0, rng.normal(size=(n, D_CLS)).astype(np.float16))
                storage = TokenStorage(kind=kind, pool=pool)
                tw.create_array(f"{group}/patch", (n, GRID, GRID, D_PATCH), "float16", storage)
                for s in range(0, n, block):
                    m = min(block, n - s)
                    tokens = rng.standard_normal((m, GRID, GRID, D_PATCH), np.float32)
                    tw.write(f"{group}/patch", s, tokens.astype(np.float16))
            for g in ("face", *(LAYOUTS[x][0] for x in layouts), "audio/wavlm", "audio"):
                tw.finish_group(g)


def say(text: str) -> None:
    print(f"[bench_loader {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def per_call(fn, min_seconds: float, min_iters: int = 1) -> float:
    """Seconds per call of fn (after one warm-up call)."""
    fn()
    n, t0 = 0, time.perf_counter()
    while n < min_iters or time.perf_counter() - t0 < min_seconds:
        fn()
        n += 1
    return (time.perf_counter() - t0) / n


def read_vs_copy(reader, tid: str, path: str, window: int, reps: int) -> dict:
    """ms per window: store read (stored dtype, int8 with its scale) vs a numpy copy."""
    from train.tracks import read_frames

    n = reader.n_frames(tid)
    ((_, (full, scale)),) = read_frames(reader, tid, {"patch": path}, ["patch"])
    starts = np.random.default_rng(1).integers(0, max(1, n - window), reps)

    def read():
        for s in starts:
            read_frames(reader, tid, {"patch": path}, ["patch"], int(s), int(s) + window)

    def copy():
        for s in starts:
            full[s : s + window].copy()
            if scale is not None:
                scale[s : s + window].copy()

    t_read = per_call(read, 0.5) / reps
    t_copy = per_call(copy, 0.2) / reps
    mb = (full[:window].nbytes + (0 if scale is None else scale[:window].nbytes)) / 1e6
    return {"read_ms": 1e3 * t_read, "copy_ms": 1e3 * t_copy, "window_mb": mb}


def measure(store, reader, rows, features, dims, window, batch, n_batches, device, quick):
    """{"loaders": {name: windows/s}, "step": windows/s of the abaw10 step} for one setting."""
    import torch

    from train import loaders as L
    from train import tracks as T
    from train.config import DataConfig
    from train.models import build_model
    from train.windows import epoch_order, training_windows

    keys = sorted(features)
    cfg = DataConfig(features=features, window=window, stride=window // 2, normalize="track")
    tracks = [T.load_track(reader, r, features, keys, cfg, False) for _, r in rows.iterrows()]
    for t in tracks:  # no labels in the bench store: random 0/1
        t.labels = np.random.default_rng(0).integers(0, 2, t.labels.shape).astype(np.int8)
    windows = training_windows(tracks, cfg)
    order = epoch_order(len(windows), 0, 0, np.ones(len(windows)) / len(windows))
    order = np.resize(order, n_batches * batch)  # enough windows, drawn again
    table = L.build_cache("ram", reader, tracks, features, keys, cfg, device)

    def loader(kind, workers=0, prefetch=0, table=table):
        c = DataConfig(**{**cfg.__dict__, "workers": workers, "prefetch": prefetch})
        if kind == "stream":
            src = L.StoreBatches(str(store), tracks, windows, features, keys, c, batch)
            return L.WindowLoader(kind, windows, c, batch, device, store=src)
        return L.WindowLoader(kind, windows, c, batch, device, table=table)

    loaders = {
        "RAM cache, plain (reference)": loader("ram"),
        "RAM cache, prefetch thread": loader("ram", prefetch=2),
    }
    if device.type == "cuda":
        gpu_table = L.build_cache("gpu", reader, tracks, features, keys, cfg, device)
        loaders["GPU-resident cache"] = loader("gpu", table=gpu_table)
    loaders["store reads, plain"] = loader("stream")
    loaders["store reads, prefetch thread"] = loader("stream", prefetch=2)
    loaders["store reads, 2 worker processes"] = loader("stream", workers=2, prefetch=2)
    rates = {}
    say(f"{window} x {batch}: loaders")
    for name, source in loaders.items():
        next(iter(source.epoch(order[:batch])))  # warm-up
        t0 = time.perf_counter()
        n = sum(1 for _ in source.epoch(order))
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates[name] = n and len(order) / (time.perf_counter() - t0)
    # the step's batch: the setting's on CUDA; on a CPU 2 windows (the step is linear in windows
    # and a full batch of real-sized tokens takes minutes there)
    step_batch = batch if device.type == "cuda" or not quick else min(batch, 2)
    first = next(iter(loader("ram").epoch(order[:step_batch])))
    torch.manual_seed(0)
    model = build_model({"name": "hga_agssm", "pool": "flat"}, dims).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    amp = device.type == "cuda"

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(first)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits.float(), first["labels"].clamp(min=0)
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    say(f"{window} x {batch}: abaw10 step on {step_batch} windows")
    seconds = per_call(step, 0.5 if quick else 3.0)
    return {"loaders": rates, "step": step_batch / seconds, "step_batch": step_batch}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller store and fewer batches")
    ap.add_argument("--tracks", type=int, default=2)
    ap.add_argument("--frames", type=int, default=None, help="frames per track (600; quick 300)")
    ap.add_argument("--batch", type=int, default=None, help="windows per step at --window (16)")
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--long-window", type=int, default=None, help="512 (quick: 256)")
    ap.add_argument("--layouts", default="fp16,int8,pool4")
    ap.add_argument("--batches", type=int, default=None, help="batches timed per loader")
    ap.add_argument("--out", default=str(HERE / "results" / "loader.md"))
    ap.add_argument("--json", default="", help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    frames = args.frames or (300 if args.quick else 600)
    long_window = args.long_window or (256 if args.quick else 512)
    n_batches = args.batches or (3 if args.quick else 12)
    args.batch = args.batch or 16
    layouts = [x for x in args.layouts.split(",") if x]

    import pandas as pd
    import torch

    from train import loaders as L
    from train import tracks as T

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    frames_per_step = args.batch * args.window
    settings = [(args.window, args.batch)]
    if long_window < frames and long_window != args.window:
        settings.append((long_window, max(1, frames_per_step // long_window)))
    results: dict = {"layouts": {}, "settings": settings, "load_avg": os.getloadavg()[0]}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="auwild-bench-loader-") as tmp:
        store = Path(tmp) / "features.zarr"
        t0 = time.perf_counter()
        say(f"writing {args.tracks} tracks x {frames} frames, layouts {layouts}")
        write_store(store, args.tracks, frames, layouts)
        results["write_s"] = time.perf_counter() - t0
        reader = T.open_store(str(store))
        rows = pd.DataFrame({"track_id": reader.tracks(), "labels": ""})
        for name in layouts:
            group = LAYOUTS[name][0]
            features = {
                "cls": f"{group}/cls",
                "patch": f"{group}/patch",
                "rois": "face/rois",
                "audio": "audio/wavlm",
            }
            keys = sorted(features)
            say(f"layout {name}")
            res: dict = {"read": read_vs_copy(reader, "t000", features["patch"], args.window, 8)}
            dims = T.feature_dims(reader, "t000", features)
            res["frame_bytes"] = L.frame_bytes(reader, "t000", features, keys)
            for window, batch in settings:
                res[f"{window}x{batch}"] = measure(
                    store,
                    reader,
                    rows,
                    features,
                    dims,
                    window,
                    batch,
                    n_batches,
                    device,
                    args.quick,
                )
            results["layouts"][name] = res
    results["total_s"] = time.perf_counter() - t_start
    results["device"] = str(device) + (
        f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""
    )
    text = report(args, results, frames, torch.__version__)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


def first_step_batch(results: dict, key: str) -> int:
    return next(iter(results["layouts"].values()))[key]["step_batch"]


def report(args, results: dict, frames: int, torch_version: str) -> str:
    cmd = "python -m bench.bench_loader " + " ".join(sys.argv[1:])
    lines = [
        "## Loader against the abaw10 training step, real feature sizes",
        "",
        f"Command: `{cmd}` ({results['total_s']:.0f} s in all)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, device "
        f"{results['device']}, torch {torch_version}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, load average "
        f"{results['load_avg']:.1f} at the start.",
        f"Store: {args.tracks} tracks x {frames} frames, CLS {D_CLS}, patch tokens {GRID}x{GRID}x"
        f"{D_PATCH} per layout, {N_ROIS} ROIs, audio {D_AUDIO}; written in "
        f"{results['write_s']:.0f} s. Settings (window x batch): "
        + ", ".join(f"{w} x {b}" for w, b in results["settings"])
        + " (frames per step constant). Figures in windows per second.",
        "",
        "### Store read of one window of patch tokens vs a numpy copy of it",
        "",
        "| layout | bytes/frame in cache | window MB | store read ms | numpy copy ms | ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, res in results["layouts"].items():
        r = res["read"]
        lines.append(
            f"| {name} | {res['frame_bytes']:,} | {r['window_mb']:.1f} | {r['read_ms']:.1f} | "
            f"{r['copy_ms']:.2f} | {r['read_ms'] / max(r['copy_ms'], 1e-9):.1f} |"
        )
    for w, b in results["settings"]:
        key = f"{w}x{b}"
        lines += [
            "",
            f"### Windows of {w} frames, batch {b}",
            "",
            "| loader | " + " | ".join(results["layouts"]) + " |",
            "|---|" + "---:|" * len(results["layouts"]),
        ]
        first = next(iter(results["layouts"].values()))[key]["loaders"]
        for lname in first:
            cells = []
            for res in results["layouts"].values():
                rate, step = res[key]["loaders"][lname], res[key]["step"]
                cells.append(f"{rate:,.1f} ({rate / step:.1f}x step)")
            lines.append(f"| {lname} | " + " | ".join(cells) + " |")
        lines.append(
            f"| abaw10 step (hga_agssm, batch {first_step_batch(results, key)}) | "
            + " | ".join(f"{res[key]['step']:,.2f}" for res in results["layouts"].values())
            + " |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
