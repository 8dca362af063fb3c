"""Feature store benchmark: window reads vs numpy and h5py, write throughput, bytes per frame.

    python -m bench.bench_store [--tracks 3 --frames 400 --grid 16 --dim 96 --window 32 --reads 300]
    python -m bench.bench_store --integrity [--tracks 16 --frames 160 --rounds 5]

Writes a markdown table to stdout and to bench/results/store.md. With --integrity it measures
instead what the per-track lease and the crc32c chunk checksum cost on writes and reads, as
ratios to the same writes and reads without them, all in one run (interleaved rounds, best of
each), and writes bench/results/store_integrity.md.
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


def write_store(url, data, storage, batch, leases: bool = True) -> float:
    """Write all tracks; returns seconds (wall)."""
    t0 = time.perf_counter()
    w = StoreWriter(url, create=True)
    w.leases = leases
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


def _direct_costs(tmp: str, data) -> tuple[float, float]:
    """(ms to take and release one track's lease, crc32c MB/s over chunk-sized buffers)."""
    import statistics

    import google_crc32c

    from extract.store.lease import Lease
    from extract.store.location import StoreLocation

    url = os.path.join(tmp, "leases.zarr")
    StoreWriter(url, create=True)
    loc = StoreLocation(url)
    times = []
    for i in range(200):
        t0 = time.perf_counter()
        Lease.acquire(loc, f"t{i % 20}").release()
        times.append(time.perf_counter() - t0)
    chunk = next(iter(data.values()))[:64].tobytes()
    reps = max(1, (256 << 20) // len(chunk))
    t0 = time.perf_counter()
    for _ in range(reps):
        google_crc32c.value(chunk)
    return statistics.median(times) * 1e3, reps * len(chunk) / (time.perf_counter() - t0) / 1e6


def integrity(args, argv) -> int:
    """Lease and checksum cost: write and read throughput with and without them, one run."""

    import extract.store.writer as writer_module

    rng = np.random.default_rng(0)
    data = {
        f"track{i:03d}": _tokens(rng, args.frames, args.grid, args.dim).astype(np.float16)
        for i in range(args.tracks)
    }
    nbytes = sum(v.nbytes for v in data.values())
    storage = TokenStorage("fp16")
    configs = {  # label -> (lease, checksum)
        "plain": (False, False),
        "lease": (True, False),
        "checksum": (False, True),
        "lease + checksum": (True, True),
    }
    plan = []
    for _ in range(args.reads):
        tid = f"track{rng.integers(args.tracks):03d}"
        a = int(rng.integers(0, args.frames - args.window))
        plan.append((tid, a, a + args.window))
    tmp = tempfile.mkdtemp(prefix="bench-store-integrity-")
    writes: dict[str, list[float]] = {k: [] for k in configs}
    reads: dict[str, list[float]] = {}
    windows: dict[str, list[float]] = {}
    cpu_w: dict[str, list[float]] = {}
    cpu_r: dict[str, list[float]] = {}
    try:
        lease_ms, crc_mbs = _direct_costs(tmp, data)
        warm = os.path.join(tmp, "warm-up.zarr")  # imports and codec set-up, not timed
        write_store(warm, {"w": data["track000"][:8]}, storage, 64)
        StoreReader(warm).read("w", PATCH)
        order = list(configs)
        for rnd in range(args.rounds):
            for label in order[rnd % len(order) :] + order[: rnd % len(order)]:
                lease, checksum = configs[label]
                url = os.path.join(tmp, f"{label.replace(' ', '')}-{rnd}.zarr")
                writer_module.CHECKSUMS = checksum
                c0 = time.process_time()
                try:
                    writes[label].append(write_store(url, data, storage, 64, leases=lease))
                finally:
                    writer_module.CHECKSUMS = True
                cpu_w.setdefault(label, []).append(time.process_time() - c0)
            for label, store in (
                ("no checksum", "plain"),
                ("checksum", "checksum"),
                ("checksum, no missing-chunk check", "checksum"),
            ):
                url = os.path.join(tmp, f"{store}-{rnd}.zarr")
                r = StoreReader(url)
                if "no missing-chunk" in label:  # the plain zarr store, fill values and all
                    r.store = r.location.zarr_store(read_only=True)
                t0, c0 = time.perf_counter(), time.process_time()
                for tid in data:
                    r.read(tid, PATCH)
                reads.setdefault(label, []).append(time.perf_counter() - t0)
                cpu_r.setdefault(label, []).append(time.process_time() - c0)
                windows.setdefault(label, []).append(
                    time_reads(lambda tid, a, b, r=r: r.read(tid, PATCH, a, b), plan)
                )
            for rnd_url in os.listdir(tmp):
                if rnd_url.endswith(f"-{rnd}.zarr"):
                    shutil.rmtree(os.path.join(tmp, rnd_url), ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    best = {k: min(v) for k, v in writes.items()}
    cmd = "python -m bench.bench_store " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "## Store integrity: what the lease and the chunk checksum cost",
        "",
        f"`{cmd.strip()}` — {args.tracks} tracks x {args.frames} frames of fp16 patch tokens "
        f"({args.grid}, {args.grid}, {args.dim}) plus time, {nbytes / 1e6:,.0f} MB per store; "
        f"{args.rounds} interleaved rounds (order rotated), best round of each; "
        f"{platform.machine()}, {os.cpu_count()} CPUs (shared), "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}.",
        "",
        "Direct costs, measured alone: taking and releasing one track's lease on a local disk "
        f"{lease_ms:.2f} ms (median of 200); crc32c over the stored chunks {crc_mbs:,.0f} MB/s.",
        "",
        "| write | wall s | MB/s | wall x plain | CPU s | CPU x plain | ms / track |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    cpu_best = {k: min(v) for k, v in cpu_w.items()}
    for label, secs in best.items():
        lines.append(
            f"| {label} | {secs:.2f} | {nbytes / secs / 1e6:,.0f} | {secs / best['plain']:.3f} | "
            f"{cpu_best[label]:.2f} | {cpu_best[label] / cpu_best['plain']:.3f} | "
            f"{secs / args.tracks * 1e3:.1f} |"
        )
    base_r, base_c = min(reads["no checksum"]), min(cpu_r["no checksum"])
    base_w = min(windows["no checksum"])
    lines += [
        "",
        f"Reads: every track whole, then {args.reads} random windows of {args.window} frames.",
        "",
        "| read | whole MB/s | wall x no checksum | CPU x no checksum | window ms | x no checksum |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label in reads:
        rs, cs, ws = min(reads[label]), min(cpu_r[label]), min(windows[label])
        lines.append(
            f"| {label} | {nbytes / rs / 1e6:,.0f} | {rs / base_r:.3f} | {cs / base_c:.3f} | "
            f"{ws * 1e3:.3f} | {ws / base_w:.3f} |"
        )
    lines += [
        "",
        "Wall times on this shared machine move by tens of percent between rounds; the CPU "
        "ratios and the direct costs are the steadier figures.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    out = args.out or os.path.join(os.path.dirname(__file__), "results", "store_integrity.md")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tracks", type=int, default=None, help="tracks (default 3; 16 --integrity)")
    p.add_argument(
        "--frames", type=int, default=None, help="frames per track (default 400; 160 --integrity)"
    )
    p.add_argument("--grid", type=int, default=16, help="patch grid side")
    p.add_argument("--dim", type=int, default=96, help="token dimension")
    p.add_argument("--window", type=int, default=32, help="frames per window read")
    p.add_argument(
        "--reads", type=int, default=None, help="random window reads (default 300; 100 --integrity)"
    )
    p.add_argument("--out", default=None, help="markdown file (default bench/results/store.md)")
    p.add_argument(
        "--integrity", action="store_true", help="measure the lease and checksum costs instead"
    )
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (--integrity)")
    args = p.parse_args(argv)
    args.tracks = args.tracks or (16 if args.integrity else 3)
    args.frames = args.frames or (160 if args.integrity else 400)
    args.reads = args.reads or (100 if args.integrity else 300)
    if args.integrity:
        return integrity(args, argv)
    args.out = args.out or os.path.join(os.path.dirname(__file__), "results", "store.md")
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
