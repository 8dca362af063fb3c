"""Feature store benchmark: window reads vs numpy and h5py, write throughput, bytes per frame.

    python -m bench.bench_store [--tracks 3 --frames 400 --grid 16 --dim 96 --window 32 --reads 300]

Writes a markdown table to stdout and to bench/results/store.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np

from extract.store import StoreReader, StoreWriter, TokenStorage
from extract.store.inspect import inspect_store
from extract.store.writer import chunk_layout

PATCH = "visual/bench/patch"
OPTIONS = {  # label -> token storage
    "fp16": TokenStorage("fp16"),
    "int8": TokenStorage("int8"),
    "int8+pool": None,  # pooled to half the grid side, filled in main()
}


def _tokens(rng, n, grid, dim) -> np.ndarray:
    """Token-like data: smooth over the grid plus noise, per-token magnitudes varying."""
    base = rng.normal(size=(n, 1, 1, dim)).astype(np.float32)
    return base + 0.5 * rng.normal(size=(n, grid, grid, dim)).astype(np.float32)  # (n, g, g, D)


def write_store(url, data, storage, batch) -> float:
    """Write all tracks; returns seconds."""
    t0 = time.perf_counter()
    w = StoreWriter(url, create=True)
    w.register_group("visual/bench", {"model": "bench", **storage.fingerprint_fields()})
    for tid, tokens in data.items():
        n = len(tokens)
        with w.open_track(tid, n_frames=n) as tw:
            tw.create_array("time", (n,), "float64")
            tw.write("time", 0, np.arange(n) / 30.0)
            tw.create_array(PATCH, tokens.shape, "float16", storage=storage)
            for a in range(0, n, batch):
                tw.write(PATCH, a, tokens[a : a + batch])
            tw.finish_group("visual/bench")
    return time.perf_counter() - t0


def time_reads(read, plan) -> float:
    """Mean seconds per window read over the plan [(tid, start, stop)]."""
    read(*plan[0])  # open metadata once, outside the timing
    t0 = time.perf_counter()
    for tid, a, b in plan:
        read(tid, a, b)
    return (time.perf_counter() - t0) / len(plan)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tracks", type=int, default=3)
    p.add_argument("--frames", type=int, default=400, help="frames per track")
    p.add_argument("--grid", type=int, default=16, help="patch grid side")
    p.add_argument("--dim", type=int, default=96, help="token dimension")
    p.add_argument("--window", type=int, default=32, help="frames per window read")
    p.add_argument("--reads", type=int, default=300, help="random window reads per backend")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "store.md"))
    args = p.parse_args(argv)
    OPTIONS["int8+pool"] = TokenStorage("int8", pool=args.grid // 2)

    rng = np.random.default_rng(0)
    data = {
        f"track{i:03d}": _tokens(rng, args.frames, args.grid, args.dim) for i in range(args.tracks)
    }
    fp16 = {k: v.astype(np.float16) for k, v in data.items()}
    total_frames = args.tracks * args.frames
    plan = []
    for _ in range(args.reads):
        tid = f"track{rng.integers(args.tracks):03d}"
        a = int(rng.integers(0, args.frames - args.window))
        plan.append((tid, a, a + args.window))

    tmp = tempfile.mkdtemp(prefix="bench-store-")
    rows_w, rows_r = [], []
    try:
        readers = {}
        for label, storage in OPTIONS.items():
            url = os.path.join(tmp, f"{label}.zarr")
            secs = write_store(url, data, storage, batch=64)
            info = inspect_store(url)
            rows_w.append(
                (
                    label,
                    total_frames / secs,
                    sum(v.nbytes for v in fp16.values()) / secs / 1e6,
                    info["arrays"][PATCH]["bytes_per_frame"],
                    info["bytes_per_frame"],
                )
            )
            readers[label] = StoreReader(url)

        t_np = time_reads(lambda tid, a, b: fp16[tid][a:b].copy(), plan)
        rows_r.append(("numpy in memory (fp16)", t_np))
        for label, out in (("fp16", "fp16 out"), ("int8", "float32 out")):
            r = readers[label]
            rows_r.append(
                (
                    f"store {label} ({out})",
                    time_reads(lambda tid, a, b, r=r: r.read(tid, PATCH, a, b), plan),
                )
            )
        cached = StoreReader(os.path.join(tmp, "fp16.zarr"), cache=True)
        rows_r.append(
            (
                "store fp16, cache=True (incl. first loads)",
                time_reads(lambda tid, a, b: cached.read(tid, PATCH, a, b), plan),
            )
        )

        import h5py

        chunk, _ = chunk_layout((args.grid, args.grid, args.dim), 2, args.frames)
        for comp, kw in [
            ("gzip-1+shuffle", {"compression": "gzip", "compression_opts": 1, "shuffle": True}),
            ("uncompressed", {}),
        ]:
            path = os.path.join(tmp, f"bench-{comp}.h5")
            with h5py.File(path, "w") as f:
                for tid, v in fp16.items():
                    f.create_dataset(tid, data=v, chunks=(chunk, *v.shape[1:]), **kw)
            with h5py.File(path, "r") as f:
                rows_r.append(
                    (
                        f"h5py {comp}, same chunks",
                        time_reads(lambda tid, a, b, f=f: f[tid][a:b], plan),
                    )
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    cmd = "python -m bench.bench_store " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "## Feature store",
        "",
        f"`{cmd.strip()}` — {args.tracks} tracks x {args.frames} frames, patch tokens "
        f"({args.grid}, {args.grid}, {args.dim}), fp16 chunk {chunk} frames; {args.reads} random "
        f"windows of {args.window} frames; {platform.machine()}, {os.cpu_count()} CPUs, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}.",
        "",
        "| storage | write frames/s | write MB/s (fp16 input) | patch bytes/frame | store bytes/frame |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, fps, mbs, patch_bpf, bpf in rows_w:
        lines.append(f"| {label} | {fps:,.0f} | {mbs:,.1f} | {patch_bpf:,.0f} | {bpf:,.0f} |")
    raw = args.grid * args.grid * args.dim * 2
    lines += [
        "",
        f"Uncompressed fp16 patch tokens: {raw:,} bytes/frame.",
        "",
        "| window read | ms / read | x numpy |",
        "|---|---:|---:|",
    ]
    for label, secs in rows_r:
        lines.append(f"| {label} | {secs * 1e3:.3f} | {secs / t_np:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
