"""Loader throughput against the model's training step, on the same machine (ratio).

The loader must keep the model the bottleneck. A synthetic store with DINOv2-small-like CLS
(384), pooled patch tokens (4 x 4 x 384), 17 ROIs and WavLM-base-like audio (768) is written
to a temporary folder; windows per second are measured for the in-memory cache (RAM, and GPU
when present), for reading windows from the store (0 and 2 workers), and for a training step
(forward, backward, AdamW) of the baseline and ABAW10 models. A ratio above 1 means the loader
is faster than the step.

    python -m bench.bench_loader [--tracks 8] [--frames 600] [--batch 16] [--window 64]

Writes bench/results/loader.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
D_CLS, D_AUDIO, GRID, N_ROIS = 384, 768, 4, 17


def write_store(path: Path, tracks: int, frames: int, seed: int = 0) -> None:
    from extract.store import StoreWriter

    rng = np.random.default_rng(seed)
    w = StoreWriter(str(path), create=True)
    w.register_group("face", {"bench": 1})
    w.register_group("visual/dinov2", {"bench": 1})
    w.register_group("audio/wavlm", {"bench": 1})
    w.register_group("audio", {"bench": 1})
    for i in range(tracks):
        n = frames
        with w.open_track(f"t{i:03d}", n_frames=n) as tw:
            arrays = {
                "time": (np.arange(n) / 30.0, "float64"),
                "face/valid": (rng.random(n) > 0.05, "bool"),
                "face/box": (np.zeros((n, 4), np.float32), "float32"),
                "face/landmarks": (np.zeros((n, 68, 2), np.float32), "float32"),
                "face/align": (np.zeros((n, 2, 3), np.float32), "float32"),
                "face/rois": (rng.random((n, N_ROIS, 4)).astype(np.float32), "float32"),
                "visual/dinov2/cls": (rng.normal(size=(n, D_CLS)), "float16"),
                "visual/dinov2/patch": (rng.normal(size=(n, GRID, GRID, D_CLS)), "float16"),
                "audio/wavlm": (rng.normal(size=(n, D_AUDIO)), "float16"),
                "audio/valid": (np.ones(n, bool), "bool"),
            }
            for name, (values, dtype) in arrays.items():
                tw.create_array(name, values.shape, dtype)
                tw.write(name, 0, values)
            for g in ("face", "visual/dinov2", "audio/wavlm", "audio"):
                tw.finish_group(g)


def timed(fn, min_seconds: float = 2.0, min_iters: int = 3) -> float:
    """Seconds per call of fn (after one warm-up call)."""
    fn()
    n, t0 = 0, time.perf_counter()
    while n < min_iters or time.perf_counter() - t0 < min_seconds:
        fn()
        n += 1
    return (time.perf_counter() - t0) / n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", type=int, default=8)
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--out", default=str(HERE / "results" / "loader.md"))
    args = ap.parse_args(argv)

    import pandas as pd
    import torch

    from train import data as D
    from train.config import DataConfig
    from train.models import build_model

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    features = {
        "cls": "visual/dinov2/cls",
        "patch": "visual/dinov2/patch",
        "rois": "face/rois",
        "audio": "audio/wavlm",
    }
    keys = sorted(features)
    cfg = DataConfig(features=features, window=args.window, stride=args.window // 2)
    rows = []
    with tempfile.TemporaryDirectory(prefix="auwild-bench-loader-") as tmp:
        store = Path(tmp) / "features.zarr"
        t0 = time.perf_counter()
        write_store(store, args.tracks, args.frames)
        write_s = time.perf_counter() - t0
        reader = D.open_store(str(store))
        manifest = pd.DataFrame({"track_id": reader.tracks(), "labels": ""})
        tracks = [D.load_track(reader, r, features, keys, cfg) for _, r in manifest.iterrows()]
        for t in tracks:  # labels are not in the bench store: random 0/1 for the window filter
            t.labels = np.random.default_rng(0).integers(0, 2, t.labels.shape).astype(np.int8)
        windows = D.training_windows(tracks, cfg)
        rng = np.random.default_rng(0)

        def batch_ids():
            return windows[rng.integers(0, len(windows), args.batch)]

        loaders: dict[str, callable] = {}
        mem = D.TensorWindows(tracks, keys, cfg)

        def ram():
            sel = batch_ids()
            b = mem.gather(sel[:, 0], sel[:, 1], cfg.window)
            return {k: v.to(device, non_blocking=True) for k, v in b.items()}

        loaders["RAM cache (gather)"] = ram
        if device.type == "cuda":
            gpu = D.TensorWindows(tracks, keys, cfg, device=device)

            def on_gpu():
                sel = batch_ids()
                gpu.gather(sel[:, 0], sel[:, 1], cfg.window)
                torch.cuda.synchronize()

            loaders["GPU-resident cache"] = on_gpu
        lazy_tracks = [
            D.Track(t.track_id, t.n_frames, t.labels, t.face_valid, t.audio_valid) for t in tracks
        ]
        for workers in (0, 2):
            ds = D.StoreWindows(str(store), lazy_tracks, windows, features, keys, cfg)
            loader = torch.utils.data.DataLoader(
                ds,
                batch_size=args.batch,
                sampler=torch.utils.data.RandomSampler(ds, replacement=True, num_samples=10**9),
                num_workers=workers,
                pin_memory=device.type == "cuda",
                persistent_workers=workers > 0,
            )
            it = iter(loader)
            loaders[f"store reads, {workers} workers"] = lambda it=it: {
                k: v.to(device) for k, v in next(it).items()
            }
        dims = D.feature_dims(reader, tracks[0].track_id, features)
        batch = ram()
        batch["train_mask"] = batch["mask"]
        steps = {}
        for name, spec in (
            ("baseline (frame_mlp)", {"name": "frame_mlp", "hidden": 256}),
            ("abaw10 (hga_agssm)", {"name": "hga_agssm"}),
        ):
            torch.manual_seed(0)
            model = build_model(spec, dims).to(device)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            amp = device.type == "cuda"

            def step(model=model, opt=opt, amp=amp):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    logits = model(batch)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    logits.float(), batch["labels"].clamp(min=0)
                )
                opt.zero_grad()
                loss.backward()
                opt.step()
                if device.type == "cuda":
                    torch.cuda.synchronize()

            steps[name] = args.batch / timed(step)
        for name, fn in loaders.items():
            rows.append((name, args.batch / timed(fn)))

    lines = [
        "## Loader against training step",
        "",
        f"Command: `python -m bench.bench_loader --tracks {args.tracks} --frames {args.frames} "
        f"--batch {args.batch} --window {args.window}`",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"device {device}{' (' + torch.cuda.get_device_name() + ')' if device.type == 'cuda' else ''}, "
        f"torch {torch.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}.",
        f"Store: {args.tracks} tracks x {args.frames} frames, cls {D_CLS}, patch {GRID}x{GRID}x{D_CLS} "
        f"fp16, {N_ROIS} ROIs, audio {D_AUDIO}; written in {write_s:.1f} s. "
        f"Windows of {args.window} frames, batch {args.batch}; figures in windows per second.",
        "",
        "| loader | windows/s | " + " | ".join(f"ratio to {m} step" for m in steps) + " |",
        "|---|---:|" + "---:|" * len(steps),
    ]
    for name, rate in rows:
        lines.append(
            f"| {name} | {rate:,.0f} | "
            + " | ".join(f"{rate / s:.1f}" for s in steps.values())
            + " |"
        )
    lines += ["", "| training step | windows/s |", "|---|---:|"]
    lines += [f"| {m} | {s:,.1f} |" for m, s in steps.items()]
    text = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
