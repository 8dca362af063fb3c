"""Several writers at once, and a writer killed mid-track."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time

import numpy as np

from extract.store import StoreReader
from extract.store.verify import verify_store
from tests.extract.store.store_fixtures import ENC, group_fields, make_track, write_tracks_worker

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def test_two_processes_write_different_tracks(tmp_path):
    url = str(tmp_path / "s.zarr")
    ctx = multiprocessing.get_context("spawn")  # fresh interpreters, like separate job processes
    jobs = [
        ctx.Process(
            target=write_tracks_worker,
            args=(url, [f"p{k}_t{i}" for i in range(3)], 10 * k, f"extra{k}"),
        )
        for k in range(2)
    ]
    for p in jobs:
        p.start()
    for p in jobs:
        p.join(120)
        assert p.exitcode == 0
    report = verify_store(url)
    assert report.ok, report.problems
    r = StoreReader(url)
    assert r.tracks() == [f"p{k}_t{i}" for k in range(2) for i in range(3)]
    assert sorted(r.groups) == sorted([*group_fields(), "extra0", "extra1"])
    for k in range(2):
        for i in range(3):
            want = make_track(19 + i, 10 * k + i)["face/landmarks"]
            assert np.array_equal(r.read(f"p{k}_t{i}", "face/landmarks"), want)


def test_sigkill_mid_track_leaves_a_valid_store(tmp_path):
    url = str(tmp_path / "s.zarr")
    ready = tmp_path / "ready"
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.extract.store.store_fixtures",
            "slow",
            url,
            "killed",
            str(ready),
        ],
        cwd=REPO,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, "writer exited early"
            assert time.monotonic() < deadline, "writer never got going"
            time.sleep(0.05)
        shard_dir = tmp_path / "s.zarr/tracks/killed" / f"visual/{ENC}/cls/c"
        assert len(os.listdir(shard_dir)) >= 2  # some shards were really written
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    report = verify_store(url)
    assert report.ok, report.problems
    assert report.incomplete == ["killed"]
    r = StoreReader(url)
    assert r.tracks() == [] and r.incomplete_tracks() == ["killed"]
