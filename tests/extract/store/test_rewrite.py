"""A rewrite killed midway (replace_groups or overwrite): readers get an error or the old data,
never zeros, with and without consolidated metadata; the next run finishes the job."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from extract.store import GroupMissing, MissingChunk, StoreReader
from extract.store.consolidate import consolidate_store
from extract.store.verify import verify_store
from tests.extract.store.store_fixtures import (
    DTYPES,
    ENC,
    make_track,
    register_all,
    small_writer,
    write_track,
)
from tests.extract.store.test_lease import _spawn, _wait_for

N = 23


def _read_or_error(r: StoreReader, tid: str, name: str):
    """The array, or None when reading it is refused with an error."""
    try:
        return r.read(tid, name, dequantize=False)
    except (KeyError, GroupMissing, MissingChunk):  # KeyError: the track is not complete
        return None


def _killed_rewrite(tmp_path, mode: str, consolidated: bool):
    url = str(tmp_path / "s.zarr")
    w = small_writer(url)
    register_all(w)
    old = write_track(w, "t0", n=N, seed=1)
    write_track(w, "t1", n=N, seed=2)
    if consolidated:
        consolidate_store(url)
    ready = tmp_path / "ready"
    proc = _spawn("rewrite", url, "t0", ready, mode)
    try:
        _wait_for(ready, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    return url, old


@pytest.mark.parametrize("consolidated", [False, True], ids=["plain", "consolidated"])
@pytest.mark.parametrize("mode", ["replace", "overwrite"])
def test_killed_rewrite_reads_old_data_or_errors(tmp_path, mode, consolidated):
    url, old = _killed_rewrite(tmp_path, mode, consolidated)
    assert os.path.exists(tmp_path / f"s.zarr/tracks/t0/visual/{ENC}/cls")  # new data on disk
    for use_consolidated in (None, False):
        r = StoreReader(url, consolidated=use_consolidated)
        seen = 0
        for name in old:
            got = _read_or_error(r, "t0", name)
            if got is not None:
                seen += 1
                assert np.array_equal(got, old[name].astype(DTYPES[name])), name
        if mode == "replace":  # the other groups stay readable, the replaced one is refused
            assert seen == len(old) - 2
            assert f"visual/{ENC}" not in r.track_attrs("t0")["groups"]
        else:
            assert seen == 0 and r.tracks() == ["t1"]
        assert np.array_equal(r.read("t1", "face/box"), make_track(N, 2)["face/box"])
    report = verify_store(url)
    assert report.ok, report.problems
    assert report.leases["t0"]["state"] == "stale"


@pytest.mark.parametrize("mode", ["replace", "overwrite"])
def test_rerun_after_a_killed_rewrite_finishes_it(tmp_path, mode):
    url, old = _killed_rewrite(tmp_path, mode, consolidated=True)
    w = small_writer(url)
    new = make_track(N, 5)
    if mode == "replace":
        with w.open_track("t0", add_groups=True, replace_groups=[f"visual/{ENC}"]) as tw:
            assert tw.has_group("face") and not tw.has_group(f"visual/{ENC}")
            for name in (f"visual/{ENC}/cls", f"visual/{ENC}/patch"):
                tw.create_array(name, new[name].shape, DTYPES[name])
                tw.write(name, 0, new[name])
            tw.finish_group(f"visual/{ENC}")
    else:
        new = write_track(w, "t0", n=N, seed=5, overwrite=True)
    r = StoreReader(url)
    assert r.tracks() == ["t0", "t1"]
    for name in old:
        want = new[name] if (mode == "overwrite" or name.startswith("visual/")) else old[name]
        assert np.array_equal(r.read("t0", name, dequantize=False), want.astype(DTYPES[name]))
    assert verify_store(url).ok and verify_store(url).leases == {}
