"""Feature store benchmark: window reads vs numpy and h5py, write throughput, bytes per frame.

    python -m bench.bench_store [--tracks 3 --frames 400 --grid 16 --dim 96 --window 32 --reads 300]
    python -m bench.bench_store --integrity [--tracks 16 --frames 160 --rounds 5]
    taskset -c 0 python -m bench.bench_store --layouts [--frames 512 --grid 16 --dim 768]

Writes a markdown table to stdout and to bench/results/store.md; the stored-window reads (fp16,
and int8 with its scales) by every read path in one run (zarr-python, the zarrs pipeline, the
direct chunk-file read, a numpy copy) and where the direct read's time goes go to
bench/results/store_read.md (--read-out). With --integrity it measures
instead what the per-track lease and the crc32c chunk checksum cost on writes and reads, as
ratios to the same writes and reads without them, all in one run (interleaved rounds, best of
each), and writes bench/results/store_integrity.md. With --layouts it measures each patch
token layout at real size (DINOv2-B/14: 16 x 16 x 768): writer-only frames/s of tokens already
encoded on the device, against zarr's own write of the same bytes (same chunks and codecs, one
array call) as the ceiling; and random 64-frame window reads through both codec pipelines
against a numpy copy of the same stored window; writes bench/results/storage_io.md.
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


RESULTS = os.path.join(os.path.dirname(__file__), "results")


def _window_plan(rng, args) -> list[tuple[str, int, int]]:
    """`args.reads` random windows (track id, start, end) of `args.window` frames."""
    plan = []
    for _ in range(args.reads):
        tid = f"track{rng.integers(args.tracks):03d}"
        a = int(rng.integers(0, args.frames - args.window))
        plan.append((tid, a, a + args.window))
    return plan


def _command(argv) -> str:
    """The command line that produced a report, for its heading."""
    return "python -m bench.bench_store " + " ".join(argv if argv is not None else sys.argv[1:])


def _report(lines: list[str], out: str) -> int:
    """Print the report and write it to `out`; the exit status of a bench run."""
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


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
    plan = _window_plan(rng, args)
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
    cmd = _command(argv)
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
    return _report(lines, args.out or os.path.join(RESULTS, "store_integrity.md"))


LAYOUTS = {  # label -> token storage (bench --layouts)
    "fp16": TokenStorage("fp16"),
    "int8": TokenStorage("int8"),
    "int8 pool 8x8": TokenStorage("int8", pool=8),
    "int8 pool 4x4": TokenStorage("int8", pool=4),
}


def _encoded(tokens16: np.ndarray, storage: TokenStorage, batch: int = 64) -> list:
    """fp16 tokens (n, g, g, D) -> EncodedTokens batches, as an encoder hands them over."""
    from extract.store.quantize import EncodedTokens

    out = []
    for a in range(0, len(tokens16), batch):
        x = tokens16[a : a + batch]
        q, scale = storage.encode(x)
        out.append(EncodedTokens(q, scale, storage, x.shape[1:3]))
    return out


def _writer_only(url: str, batches: list, storage: TokenStorage, n: int) -> float:
    """Seconds to write one track of encoded token batches (lease, checksums, commit)."""
    w = StoreWriter(url, create=True)
    w.register_group("visual/bench", {"model": "bench", **storage.fingerprint_fields()})
    grid = batches[0].source_grid
    d = batches[0].values.shape[-1]
    t0 = time.perf_counter()
    with w.open_track("t0", n_frames=n) as tw:
        tw.create_array("time", (n,), "float64")
        tw.write("time", 0, np.arange(n) / 30.0)
        tw.create_array(PATCH, (n, *grid, d), "float16", storage=storage)
        a = 0
        for b in batches:
            tw.write(PATCH, a, b)
            a += len(b)
        tw.finish_group("visual/bench")
    return time.perf_counter() - t0


def _zarr_ceiling(url: str, values: np.ndarray, scale, chunk: int, pipeline: str) -> float:
    """Seconds for zarr alone to write the same stored bytes with the same chunks and codecs."""
    import zarr

    from extract.store.location import PIPELINES
    from extract.store.writer import chunk_codecs

    t0 = time.perf_counter()
    with zarr.config.set({"codec_pipeline.path": PIPELINES[pipeline]}):
        store = zarr.storage.LocalStore(url)
        for name, arr in (("v", values), ("s", scale)):
            if arr is None:
                continue
            z = zarr.create_array(
                store, name=name, shape=arr.shape, dtype=arr.dtype,
                chunks=(chunk, *arr.shape[1:]),
                compressors=chunk_codecs(arr.dtype, PATCH + "_scale" if name == "s" else name),
                config={"write_empty_chunks": True},
            )  # fmt: skip
            z[:] = arr
    return time.perf_counter() - t0


def layouts(args, argv) -> int:
    """Per layout at real size: writer-only frames/s against zarr's ceiling; window reads."""
    import zarr

    from extract.store.location import PIPELINE_ENV

    rng = np.random.default_rng(0)
    n, g, d, win = args.frames, args.grid, args.dim, 64
    tokens16 = np.concatenate(
        [_tokens(rng, min(64, n - a), g, d).astype(np.float16) for a in range(0, n, 64)]
    )  # (n, g, g, D)
    plan = [int(a) for a in rng.integers(0, n - win, args.reads)]
    tmp = tempfile.mkdtemp(prefix="bench-store-layouts-")
    rows = []
    try:
        for label, storage in LAYOUTS.items():
            batches = _encoded(tokens16, storage)
            values = np.concatenate([b.values for b in batches])
            scale = None if batches[0].scale is None else np.concatenate([b.scale for b in batches])
            stored = values.nbytes + (0 if scale is None else scale.nbytes)
            chunk, _ = chunk_layout(values.shape[1:], values.dtype.itemsize, n)
            best_w, best_z, cpu_w, cpu_z = [], [], [], []
            for rnd in range(args.rounds):  # interleaved: the machine is shared
                url = os.path.join(tmp, f"{label.replace(' ', '')}-{rnd}.zarr")
                c0 = time.process_time()
                best_w.append(_writer_only(url, batches, storage, n))
                cpu_w.append(time.process_time() - c0)
                zurl = os.path.join(tmp, f"ceiling-{rnd}.zarr")
                c0 = time.process_time()
                best_z.append(_zarr_ceiling(zurl, values, scale, chunk, "zarrs"))
                cpu_z.append(time.process_time() - c0)
                shutil.rmtree(zurl, ignore_errors=True)
                if rnd:
                    shutil.rmtree(url, ignore_errors=True)
            url = os.path.join(tmp, f"{label.replace(' ', '')}-0.zarr")
            reads = {}
            for pipeline in ("zarrs", "python"):
                os.environ[PIPELINE_ENV] = pipeline
                r = StoreReader(url)
                if scale is None:
                    stored_read = lambda a, r=r: r.read("t0", PATCH, a, a + win)  # noqa: E731
                else:

                    def stored_read(a, r=r):
                        return (
                            r.read("t0", PATCH, a, a + win, dequantize=False),
                            r.read_scale("t0", PATCH, a, a + win),
                        )

                got = stored_read(plan[0])
                ref = values[plan[0] : plan[0] + win]
                assert np.array_equal(got if scale is None else got[0], ref), label
                reads[pipeline] = min(
                    time_reads(lambda _t, a, _b, f=stored_read: f(a), [("t0", a, 0) for a in plan])
                    for _ in range(args.rounds)
                )
                if pipeline == "zarrs":
                    reads["float32"] = min(
                        time_reads(
                            lambda _t, a, _b, r=r: r.read("t0", PATCH, a, a + win),
                            [("t0", a, 0) for a in plan],
                        )  # fmt: skip
                        for _ in range(args.rounds)
                    )
            os.environ.pop(PIPELINE_ENV, None)

            def np_copy(_t, a, _b, values=values, scale=scale):
                v = values[a : a + win].copy()
                return v if scale is None else (v, scale[a : a + win].copy())

            t_np = min(
                time_reads(np_copy, [("t0", a, 0) for a in plan]) for _ in range(args.rounds)
            )
            rows.append(
                {
                    "layout": label,
                    "bytes_frame": stored / n,
                    "chunk": chunk,
                    "write_fps": n / min(best_w),
                    "ceiling_fps": n / min(best_z),
                    "write_cpu_fps": n / min(cpu_w),
                    "ceiling_cpu_fps": n / min(cpu_z),
                    "numpy_ms": t_np * 1e3,
                    "zarrs_ms": reads["zarrs"] * 1e3,
                    "python_ms": reads["python"] * 1e3,
                    "float32_ms": reads["float32"] * 1e3,
                }
            )
            shutil.rmtree(url, ignore_errors=True)
            print(rows[-1], flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    cmd = _command(argv)
    full = g * g * d * 2
    lines = [
        "## Patch token layouts at real size: writes and window reads",
        "",
        f"`{cmd.strip()}` — one track of {n} frames of token-like data ({g}, {g}, {d}); "
        f"{args.reads} random windows of {win} frames, best of {args.rounds} interleaved rounds; "
        f"zarr {zarr.__version__}; {platform.machine()}, {os.cpu_count()} CPUs (shared), "
        f"CPU affinity {len(os.sched_getaffinity(0))} core(s).",
        "",
        "Writes: writer-only (tokens already encoded on the device, 64-frame batches, lease, "
        "checksums, commit) against zarr's own write of the same stored bytes (zarrs pipeline, "
        "same chunks and codecs, one call). Reads: the stored window (int8 with its scales) "
        "against a numpy copy of the same stored window in memory; `float32 out` dequantises. "
        "Frames per CPU second (process time, all threads) is the steadier figure on a shared "
        "machine: it is what one core sustains when the process has it to itself.",
        "",
        "| layout | bytes/frame | of fp16 | chunk frames | writer frames/s (per CPU s) | zarr "
        "ceiling frames/s (per CPU s) | numpy ms | zarrs ms | x numpy | python pipeline ms | "
        "x numpy | zarrs float32 out ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['layout']} | {row['bytes_frame']:,.0f} | {row['bytes_frame'] / full:.4f} | "
            f"{row['chunk']} | {row['write_fps']:,.0f} ({row['write_cpu_fps']:,.0f}) | "
            f"{row['ceiling_fps']:,.0f} ({row['ceiling_cpu_fps']:,.0f}) | "
            f"{row['numpy_ms']:.2f} | {row['zarrs_ms']:.2f} | "
            f"{row['zarrs_ms'] / row['numpy_ms']:.2f} | {row['python_ms']:.2f} | "
            f"{row['python_ms'] / row['numpy_ms']:.2f} | {row['float32_ms']:.2f} |"
        )
    return _report(lines, args.out or os.path.join(RESULTS, "storage_io.md"))


READ_PATHS = {  # label -> (zarr codec pipeline, direct chunk-file read)
    "zarr-python (reference)": ("python", False),
    "zarrs pipeline": ("zarrs", False),
    "direct chunk files": (None, True),
}


EVERY_READ = "direct chunk files, checksum on every read"


def _checking_every_read(read):
    """`read` with AUWILD_CHECK_EVERY_READ=1: every chunk read whole and checked, every time
    (the direct read otherwise checks a chunk file once per version of it)."""
    from extract.store.chunk_files import EVERY_READ_ENV

    def run(tid, a, b):
        os.environ[EVERY_READ_ENV] = "1"
        try:
            return read(tid, a, b)
        finally:
            del os.environ[EVERY_READ_ENV]

    return run


def _path_reader(url: str, pipeline: str | None, direct: bool) -> StoreReader:
    """A reader of `url` on one read path (the pipeline knob is read when the reader opens)."""
    from extract.store.location import PIPELINE_ENV, zarrs_installed

    if pipeline == "zarrs" and not zarrs_installed():
        return None
    old = os.environ.pop(PIPELINE_ENV, None)
    if pipeline:
        os.environ[PIPELINE_ENV] = pipeline
    try:
        return StoreReader(url, direct=direct)
    finally:
        os.environ.pop(PIPELINE_ENV, None)
        if old is not None:
            os.environ[PIPELINE_ENV] = old


def _stored_read(r: StoreReader, int8: bool):
    """(tid, a, b) -> the stored window: fp16 tokens, or int8 tokens and their scales."""
    if not int8:
        return lambda tid, a, b: r.read(tid, PATCH, a, b)
    return lambda tid, a, b: (
        r.read(tid, PATCH, a, b, dequantize=False),
        r.read_scale(tid, PATCH, a, b),
    )


def _floor(r: StoreReader, plan, tids) -> dict[str, float]:
    """Mean ms per window of the direct read's parts, each alone over the same chunk files:
    reading them whole from the page cache (preadv into one reused buffer), crc32c over as many
    bytes in memory (google-crc32c, as the reader; the crc32c package when installed), and a
    numpy copy of as many bytes."""
    from extract.store.chunk_files import crc_extend

    files = {tid: r.chunk_files(tid, PATCH) for tid in tids}
    cf = next(iter(files.values()))
    whole = cf.chunk * cf.frame_bytes + 4
    buf = np.empty(whole, np.uint8)
    src = np.random.default_rng(0).integers(0, 256, whole, dtype=np.uint8)
    try:  # the crc32c package, when installed, beside the reader's google-crc32c
        from crc32c import crc32c as other_crc
    except ImportError:
        other_crc = None
    spent = {part: [0.0, 0.0] for part in ("read", "crc", "other_crc", "copy")}  # [wall, CPU]
    n_chunks = 0

    def timed(part, run, paths):
        t0, c0 = time.perf_counter(), time.process_time()
        for path in paths:
            run(path)
        spent[part][0] += time.perf_counter() - t0
        spent[part][1] += time.process_time() - c0

    def read_whole(path):
        fd = os.open(path, os.O_RDONLY)
        os.preadv(fd, [memoryview(buf)], 0)
        os.close(fd)

    for tid, a, b in plan:
        paths = [files[tid].path(i) for i in range(a // cf.chunk, -(-b // cf.chunk))]
        n_chunks += len(paths)
        timed("read", read_whole, paths)
        timed("crc", lambda _p: crc_extend(0, buf), paths)
        if other_crc is not None:
            timed("other_crc", lambda _p: other_crc(buf), paths)
        timed("copy", lambda _p: np.copyto(buf, src), paths)
    k = 1e3 / len(plan)
    return {
        **{f"{part}_ms": wall * k for part, (wall, _) in spent.items()},
        **{f"{part}_cpu_ms": cpu * k for part, (_, cpu) in spent.items()},
        "chunks": n_chunks / len(plan),
        "chunk": cf.chunk,
        "chunk_bytes": whole,
    }


def stored_window_reads(urls: dict[str, str], data16, plan, args, argv) -> None:
    """Stored windows (fp16; int8 with scales) by each read path against a numpy copy, in one
    run: interleaved rounds, best of each; then where the direct read's time goes."""
    rounds = max(3, args.rounds)
    rows = {}
    floors = {}
    for label in ("fp16", "int8"):
        int8 = label == "int8"
        readers = {k: _path_reader(urls[label], *v) for k, v in READ_PATHS.items()}
        readers = {k: r for k, r in readers.items() if r is not None}
        funcs = {k: _stored_read(r, int8) for k, r in readers.items()}
        funcs[EVERY_READ] = _checking_every_read(funcs["direct chunk files"])
        ref = readers["zarr-python (reference)"]
        mem = {}  # the stored arrays in memory, for the numpy copy
        for tid in data16:
            values = ref.read(tid, PATCH, dequantize=False)
            mem[tid] = (values, ref.read_scale(tid, PATCH) if int8 else None)
        if int8:
            funcs["numpy copy"] = lambda tid, a, b, mem=mem: (
                mem[tid][0][a:b].copy(),
                mem[tid][1][a:b].copy(),
            )
        else:
            funcs["numpy copy"] = lambda tid, a, b, mem=mem: mem[tid][0][a:b].copy()
        for tid, a, b in plan[:20]:  # every path returns the same stored window
            want = funcs["numpy copy"](tid, a, b)
            for k, f in funcs.items():
                got = f(tid, a, b)
                same = (
                    all(np.array_equal(x, y) for x, y in zip(got, want))
                    if int8
                    else np.array_equal(got, want)
                )
                assert same, (label, k, a, b)
        times = {k: [] for k in funcs}
        cpu = {k: [] for k in funcs}
        order = list(funcs)
        for rnd in range(rounds):
            for k in order[rnd % len(order) :] + order[: rnd % len(order)]:
                c0 = time.process_time()
                times[k].append(time_reads(funcs[k], plan))
                cpu[k].append((time.process_time() - c0) / (len(plan) + 1))
        rows[label] = {k: (min(v), min(cpu[k])) for k, v in times.items()}
        if int8:
            direct = readers["direct chunk files"]
            floors[label] = _floor(direct, plan, list(data16))
            floors[label]["scale_ms"] = (
                min(
                    time_reads(
                        _checking_every_read(
                            lambda tid, a, b, r=direct: r.read_scale(tid, PATCH, a, b)
                        ),
                        plan,
                    )
                    for _ in range(rounds)
                )
                * 1e3
            )
            floors[label]["tokens_ms"] = (
                min(
                    time_reads(
                        _checking_every_read(
                            lambda tid, a, b, r=direct: r.read(tid, PATCH, a, b, dequantize=False)
                        ),
                        plan,
                    )
                    for _ in range(rounds)
                )
                * 1e3
            )
        else:
            floors[label] = _floor(readers["direct chunk files"], plan, list(data16))
        print(label, rows[label], floors[label], flush=True)

    import zarr

    cmd = _command(argv)
    win_bytes = {
        "fp16": args.window * args.grid * args.grid * args.dim * 2,
        "int8": args.window * args.grid * args.grid * (args.dim + 4),
    }
    lines = [
        "## Stored-window reads: zarr-python, zarrs, direct chunk files, numpy",
        "",
        f"`{cmd.strip()}` — {args.tracks} tracks x {args.frames} frames of patch tokens "
        f"({args.grid}, {args.grid}, {args.dim}), {floors['fp16']['chunk']}-frame chunks "
        f"(int8: {floors['int8']['chunk']}); {len(plan)} random windows "
        f"of {args.window} frames, best of {rounds} interleaved rounds; the stored window "
        "(fp16 tokens; int8 tokens and their float32 scales) against a numpy copy of the same "
        f"window in memory. zarr {zarr.__version__}; "
        f"{platform.machine()}, {os.cpu_count()} CPUs (shared), CPU affinity "
        f"{len(os.sched_getaffinity(0))} core(s), load average {os.getloadavg()[0]:.1f} at the end.",
        "",
        "| layout | window MB | read path | ms / window | x numpy | CPU ms / window | CPU x numpy |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for label, row in rows.items():
        t_np, c_np = row["numpy copy"]
        for k, (t, c) in row.items():
            lines.append(
                f"| {label} | {win_bytes[label] / 1e6:.1f} | {k} | {t * 1e3:.2f} | "
                f"{t / t_np:.2f} | {c * 1e3:.2f} | {c / c_np:.2f} |"
            )
    lines += [
        "",
        "*direct chunk files* checks each chunk file once per version of it (inode, size, mtime, "
        "ctime) and then reads only the window's frames; *checksum on every read* reads every "
        "chunk the window touches whole and checks it each time, as zarr does.",
        "",
        "Where the first read's time goes (ms per window, each part alone over the same chunk "
        "files: every chunk the window touches is read and checked whole):",
        "",
        "| layout | chunks / window | chunk file bytes | page-cache read (CPU) | crc32c by "
        "google-crc32c (CPU) | by the crc32c package (CPU) | numpy copy of those bytes (CPU) | "
        "read, checksum on every read (CPU) | int8 tokens alone | int8 scales alone |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, fl in floors.items():
        direct, direct_cpu = (t * 1e3 for t in rows[label][EVERY_READ])
        scale = f"{fl['scale_ms']:.2f}" if "scale_ms" in fl else "-"
        tokens = f"{fl['tokens_ms']:.2f}" if "tokens_ms" in fl else "-"
        other = (
            f"{fl['other_crc_ms']:.2f} ({fl['other_crc_cpu_ms']:.2f})"
            if fl["other_crc_cpu_ms"]
            else "not installed"
        )
        lines.append(
            f"| {label} | {fl['chunks']:.2f} | {fl['chunk_bytes']:,} | "
            f"{fl['read_ms']:.2f} ({fl['read_cpu_ms']:.2f}) | "
            f"{fl['crc_ms']:.2f} ({fl['crc_cpu_ms']:.2f}) | {other} | "
            f"{fl['copy_ms']:.2f} ({fl['copy_cpu_ms']:.2f}) | {direct:.2f} ({direct_cpu:.2f}) | "
            f"{tokens} | {scale} |"
        )
    _report(lines, args.read_out)


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
        "--read-out",
        default=os.path.join(RESULTS, "store_read.md"),
        help="markdown file of the stored-window reads by read path",
    )
    p.add_argument(
        "--integrity", action="store_true", help="measure the lease and checksum costs instead"
    )
    p.add_argument(
        "--rounds", type=int, default=None, help="interleaved rounds (default 5; 3 --layouts)"
    )
    p.add_argument(
        "--layouts", action="store_true", help="each patch token layout at real size instead"
    )
    args = p.parse_args(argv)
    args.rounds = args.rounds or (3 if args.layouts else 5)
    if args.layouts:
        args.frames = args.frames or 512
        args.dim = 768 if args.dim == 96 else args.dim
        args.reads = args.reads or 30
        return layouts(args, argv)
    args.tracks = args.tracks or (16 if args.integrity else 3)
    args.frames = args.frames or (160 if args.integrity else 400)
    args.reads = args.reads or (100 if args.integrity else 300)
    if args.integrity:
        return integrity(args, argv)
    args.out = args.out or os.path.join(RESULTS, "store.md")
    OPTIONS["int8+pool"] = TokenStorage("int8", pool=args.grid // 2)

    rng = np.random.default_rng(0)
    data = {
        f"track{i:03d}": _tokens(rng, args.frames, args.grid, args.dim) for i in range(args.tracks)
    }
    fp16 = {k: v.astype(np.float16) for k, v in data.items()}
    total_frames = args.tracks * args.frames
    plan = _window_plan(rng, args)

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
        stored_window_reads(
            {k: os.path.join(tmp, f"{k}.zarr") for k in ("fp16", "int8")}, fp16, plan, args, argv
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

    cmd = _command(argv)
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
    return _report(lines, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
