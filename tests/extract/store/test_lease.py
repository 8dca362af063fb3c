"""One writer per track: leases across processes, stale takeover, heartbeat, atomic takeover."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from extract.store import LeaseLost, StoreReader, TrackLeased
from extract.store.lease import LEASES, Lease, lease_states
from extract.store.location import StoreLocation
from extract.store.verify import verify_store
from tests.extract.store.store_fixtures import (
    ENC,
    make_track,
    register_all,
    small_writer,
    write_track,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _spawn(*args) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-m", "tests.extract.store.store_fixtures", *map(str, args)],
        cwd=REPO,
        env=env,
    )


def _wait_for(path, proc, seconds=60) -> None:
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        assert proc.poll() is None, "helper process exited early"
        assert time.monotonic() < deadline, "helper process never got going"
        time.sleep(0.02)


def test_second_process_gets_track_leased_and_touches_nothing(tmp_path):
    url = str(tmp_path / "s.zarr")
    ready, go = tmp_path / "ready", tmp_path / "go"
    proc = _spawn("hold", url, "t0", ready, go)
    try:
        _wait_for(ready, proc)
        before = sorted(os.listdir(tmp_path / "s.zarr/tracks/t0"))
        w = small_writer(url)
        register_all(w)
        with pytest.raises(TrackLeased) as err:
            w.open_track("t0", n_frames=15)
        assert err.value.track_id == "t0"
        assert err.value.holder["pid"] == proc.pid
        assert f"pid {proc.pid}" in str(err.value) and "since" in str(err.value)
        with pytest.raises(TrackLeased):  # overwrite does not bypass the lease either
            w.open_track("t0", n_frames=15, overwrite=True)
        assert sorted(os.listdir(tmp_path / "s.zarr/tracks/t0")) == before
        assert lease_states(StoreLocation(url))["t0"]["state"] == "live"
        go.write_text("go")
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    r = StoreReader(url)
    assert r.tracks() == ["t0"]
    assert np.array_equal(r.read("t0", "face/box"), make_track(15, 42)["face/box"])
    assert lease_states(StoreLocation(url)) == {}  # released at commit
    write_track(small_writer(url), "t0", n=15, overwrite=True)  # free again


def test_stale_lease_of_a_dead_process_is_taken_over(tmp_path):
    url = str(tmp_path / "s.zarr")
    ready = tmp_path / "ready"
    proc = _spawn("hold", url, "t0", ready, tmp_path / "never")
    _wait_for(ready, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    states = lease_states(StoreLocation(url))
    assert states["t0"]["state"] == "stale" and "gone" in states["t0"]["reason"]
    report = verify_store(url)
    assert report.ok and report.incomplete == ["t0"]
    assert any("stale lease" in n for n in report.notes)
    w = small_writer(url)
    register_all(w)
    data = write_track(w, "t0", n=11)  # takes over: the unfinished copy is replaced
    assert np.array_equal(StoreReader(url).read("t0", "face/rois"), data["face/rois"])
    gens = os.listdir(tmp_path / "s.zarr" / LEASES / "t0")
    assert len(gens) == 1
    info = json.loads((tmp_path / "s.zarr" / LEASES / "t0" / gens[0]).read_text())
    assert "gone" in info["took_over"] and info["released"]


def test_heartbeat_keeps_a_long_write_alive(tmp_path):
    url = str(tmp_path / "s.zarr")
    w = small_writer(url, lease_stale_after=0.4)
    register_all(w)
    n = 9
    data = make_track(n)
    tw = w.open_track("t0", n_frames=n)
    other = small_writer(url, lease_stale_after=0.4)
    for _ in range(4):  # 1.2 s, three times the bound: the heartbeat keeps it live
        time.sleep(0.3)
        with pytest.raises(TrackLeased):
            other.open_track("t0", n_frames=n)
    tw.create_array("time", (n,), "float64")
    tw.write("time", 0, data["time"])
    tw.commit()
    assert StoreReader(url).tracks() == ["t0"]


def test_silent_holder_loses_its_lease_and_commit_refuses(tmp_path):
    url = str(tmp_path / "s.zarr")
    w = small_writer(url, lease_stale_after=0.3)
    register_all(w)
    n = 9
    tw = w.open_track("t0", n_frames=n)
    tw.lease._stop.set()  # a hung writer: no more heartbeats
    tw.create_array("time", (n,), "float64")
    tw.write("time", 0, np.arange(n) / 30.0)
    time.sleep(0.5)
    taker = small_writer(url, lease_stale_after=0.3)
    data = write_track(taker, "t0", n=7)  # takes over the stale lease and writes the track
    with pytest.raises(LeaseLost, match="taken over"):
        tw.commit()
    tw.abort()  # deletes nothing: the folder belongs to the new holder
    r = StoreReader(url)
    assert r.n_frames("t0") == 7
    assert np.array_equal(r.read("t0", "face/box"), data["face/box"])


def test_exception_in_with_block_aborts_and_releases(tmp_path):
    url = str(tmp_path / "s.zarr")
    w = small_writer(url)
    register_all(w)
    with pytest.raises(RuntimeError, match="encoder failed"):
        with w.open_track("t0", n_frames=5) as tw:
            tw.create_array("time", (5,), "float64")
            raise RuntimeError("encoder failed")
    assert not (tmp_path / "s.zarr/tracks/t0").exists()
    assert lease_states(StoreLocation(url)) == {}
    write_track(w, "t0", n=5)


def _race_worker(url, tids, start_at, out_q) -> None:
    loc = StoreLocation(url)
    while time.time() < start_at:
        time.sleep(0.001)
    won = []
    for tid in tids:
        try:
            Lease.acquire(loc, tid, stale_after=60)
            won.append(tid)
        except TrackLeased:
            pass
    out_q.put((os.getpid(), won))


def test_takeover_is_atomic_under_races(tmp_path):
    """Three processes race to take over the same stale leases: each track gets one winner."""
    url = str(tmp_path / "s.zarr")
    small_writer(url)
    loc = StoreLocation(url)
    tids = [f"t{i:03d}" for i in range(60)]
    for tid in tids:  # a stale lease of a process on another host, silent for an hour
        folder = tmp_path / "s.zarr" / LEASES / tid
        folder.mkdir(parents=True)
        stale = {"host": "elsewhere", "pid": 1, "heartbeat": time.time() - 3600, "token": "old"}
        (folder / f"{1:012d}.json").write_text(json.dumps(stale))
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    start_at = time.time() + 3.0
    procs = [
        ctx.Process(target=_race_worker, args=(url, tids[::step], start_at, q))
        for step in (1, 1, -1)  # two in the same order, one in reverse
    ]
    for p in procs:
        p.start()
    results = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
    winners = {tid: [pid for pid, won in results if tid in won] for tid in tids}
    assert all(len(w) == 1 for w in winners.values()), winners
    states = lease_states(loc, stale_after=60)
    for tid in tids:
        assert states[tid]["pid"] == winners[tid][0]  # the file agrees with who won


def test_lease_files_stay_out_of_listings_consolidation_and_merge(tmp_path):
    from extract.store.consolidate import consolidate_store
    from extract.store.merge import merge_stores

    url = str(tmp_path / "s.zarr")
    w = small_writer(url)
    register_all(w)
    write_track(w, "t0", n=9)
    tw = w.open_track("t1", n_frames=9)  # a live lease while consolidating and merging
    assert consolidate_store(url) > 0
    r = StoreReader(url)
    assert r.tracks() == ["t0"] and r.incomplete_tracks() == ["t1"]
    root = json.loads((tmp_path / "s.zarr/zarr.json").read_text())
    assert not any(LEASES in k for k in root["consolidated_metadata"]["metadata"])
    out = str(tmp_path / "m.zarr")
    assert merge_stores([url], out).copied == ["t0"]
    assert not (tmp_path / "m.zarr" / LEASES / "t0").exists()
    tw.abort()
    assert StoreReader(url).tracks() == ["t0"]
    assert verify_store(url).ok


def test_add_groups_needs_the_lease_too(tmp_path):
    url = str(tmp_path / "s.zarr")
    w = small_writer(url)
    register_all(w)
    write_track(w, "t0", n=9)
    tw = w.open_track("t0", add_groups=True, replace_groups=[f"visual/{ENC}"])
    with pytest.raises(TrackLeased):
        small_writer(url).open_track("t0", add_groups=True)
    tw.abort()
