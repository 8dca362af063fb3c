"""Small real stores for the store tests (importable by worker processes)."""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from extract.store import StoreReader, StoreWriter, TokenStorage
from extract.store.schema import group_of

ENC = "dino"  # visual encoder name in test stores
AUD = "wav"  # audio encoder name in test stores
GRID, DIM, ADIM, R = 4, 8, 6, 3  # patch grid side, token dim, audio dim, ROIs


def group_fields(storage: TokenStorage = TokenStorage()) -> dict[str, dict]:
    return {
        "face": {"landmarks": "template", "crop_size": 112, "roi_version": 1},
        f"visual/{ENC}": {"model": "tiny-dino", "revision": "r1", **storage.fingerprint_fields()},
        f"audio/{AUD}": {"model": "tiny-wav", "sample_rate": 16000},
        "audio": {"rule": "covered"},
    }


def make_track(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Every array kind of the store contract, random but valid, for n frames."""
    rng = np.random.default_rng(seed)
    return {
        "time": np.arange(n) / 30.0 + 0.01,
        "face/valid": rng.random(n) > 0.2,
        "face/box": rng.uniform(0, 100, (n, 4)).astype(np.float32),
        "face/landmarks": rng.uniform(0, 100, (n, 68, 2)).astype(np.float32),
        "face/align": rng.normal(size=(n, 2, 3)).astype(np.float32),
        "face/rois": rng.uniform(0, 1, (n, R, 4)).astype(np.float32),
        f"visual/{ENC}/cls": rng.normal(size=(n, DIM)).astype(np.float16),
        f"visual/{ENC}/patch": rng.normal(size=(n, GRID, GRID, DIM)).astype(np.float32),
        f"audio/{AUD}": rng.normal(size=(n, ADIM)).astype(np.float16),
        "audio/valid": rng.random(n) > 0.1,
    }


DTYPES = {
    "time": "float64",
    "face/valid": "bool",
    "face/box": "float32",
    "face/landmarks": "float32",
    "face/align": "float32",
    "face/rois": "float32",
    f"visual/{ENC}/cls": "float16",
    f"visual/{ENC}/patch": "float16",
    f"audio/{AUD}": "float16",
    "audio/valid": "bool",
}


def small_writer(url: str, **kw) -> StoreWriter:
    """A writer with tiny chunks and shards so short tracks span several shard files."""
    kw.setdefault("chunk_bytes", 256)
    kw.setdefault("shard_bytes", 2048)
    return StoreWriter(url, create=True, **kw)


def register_all(writer: StoreWriter, storage: TokenStorage = TokenStorage(), skip=()) -> None:
    for name, fields in group_fields(storage).items():
        if name not in skip:
            writer.register_group(name, fields)


def write_track(
    writer: StoreWriter,
    tid: str,
    n: int = 23,
    seed: int = 0,
    storage: TokenStorage = TokenStorage(),
    step: int = 7,
    groups=("face", f"visual/{ENC}", f"audio/{AUD}", "audio"),
    overwrite: bool = False,
) -> dict[str, np.ndarray]:
    """Write one full track in pieces of `step` frames; returns what was written."""
    data = make_track(n, seed)
    with writer.open_track(
        tid, n_frames=n, attrs={"fps": 30.0, "source": f"{tid}.mp4"}, overwrite=overwrite
    ) as tw:
        for name, values in data.items():
            if group_of(name) is not None and group_of(name) not in groups:
                continue
            storage_arg = storage if name.endswith("/patch") else None
            tw.create_array(name, values.shape, DTYPES[name], storage=storage_arg)
            for a in range(0, n, step):
                tw.write(name, a, values[a : a + step])
        for g in groups:
            tw.finish_group(g)
    return data


def write_tracks_worker(
    url: str, tids: list[str], seed: int, extra_group: str | None = None
) -> None:
    """Process body for the concurrency test: register the groups, write the given tracks."""
    w = small_writer(url)
    register_all(w)
    if extra_group:  # each process also registers a group of its own, at about the same time
        w.register_group(extra_group, {"owner": extra_group})
    for i, tid in enumerate(tids):
        write_track(w, tid, n=19 + i, seed=seed + i)


def slow_writer_main(url: str, tid: str, ready: str) -> None:
    """Write part of a track, signal `ready`, then keep writing slowly until killed."""
    w = small_writer(url)
    register_all(w)
    n = 10_000
    tw = w.open_track(tid, n_frames=n, attrs={"fps": 30.0})
    tw.create_array("time", (n,), "float64")
    tw.create_array(f"visual/{ENC}/cls", (n, DIM), "float16")
    pos = 0
    while pos < n:
        tw.write("time", pos, np.arange(pos, pos + 50) / 30.0)
        tw.write(f"visual/{ENC}/cls", pos, np.ones((50, DIM), np.float16))
        pos += 50
        if pos == 500:
            with open(ready, "w") as f:
                f.write("ready")
        if pos >= 500:
            time.sleep(0.05)


def hold_track_main(url: str, tid: str, ready: str, go: str) -> None:
    """Open a track (taking its lease), signal `ready`, wait for file `go`, then write and commit."""
    w = small_writer(url)
    register_all(w)
    n = 15
    data = make_track(n, 42)
    with w.open_track(tid, n_frames=n, attrs={"fps": 30.0}) as tw:
        with open(ready, "w") as f:
            f.write(str(os.getpid()))
        deadline = time.monotonic() + 60
        while not os.path.exists(go) and time.monotonic() < deadline:
            time.sleep(0.02)
        for name, values in data.items():
            tw.create_array(name, values.shape, DTYPES[name])
            tw.write(name, 0, values)
        for g in group_fields():
            tw.finish_group(g)


def rewrite_main(url: str, tid: str, ready: str, mode: str) -> None:
    """Start rewriting a complete track (mode "replace": its visual group; "overwrite": all of it),
    write half of the new arrays, signal `ready`, then wait to be killed."""
    w = small_writer(url)
    n = StoreReader(url, consolidated=False).n_frames(tid)
    new = make_track(n, 99)
    if mode == "replace":
        tw = w.open_track(tid, add_groups=True, replace_groups=[f"visual/{ENC}"])
        names = [f"visual/{ENC}/cls", f"visual/{ENC}/patch"]
    else:
        tw = w.open_track(tid, n_frames=n, overwrite=True)
        names = list(new)
    half = n // 2
    for name in names:
        tw.create_array(name, new[name].shape, DTYPES[name])
        tw.write(name, 0, new[name][:half])
        tw._flush(tw._arrays[name], final=True)  # the first half really is on disk
    with open(ready, "w") as f:
        f.write("ready")
    time.sleep(120)


if __name__ == "__main__":  # python -m tests.extract.store.store_fixtures WHAT ARGS...
    what, args = sys.argv[1], sys.argv[2:]
    {"slow": slow_writer_main, "hold": hold_track_main, "rewrite": rewrite_main}[what](*args)
