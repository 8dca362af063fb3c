"""The extraction job: resume, SIGKILL, shards, failures, adding an encoder."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import numpy as np
import pandas as pd
import pytest

from extract.cli import main as extract_main
from extract.job.shard import Shard, parse_shard
from tests.extract.job.job_world import (
    args_for as _args,
)
from tests.extract.job.job_world import (
    arrays_of as _arrays,
)
from tests.extract.job.job_world import (
    assert_same_arrays as _assert_same_arrays,
)
from tests.extract.job.job_world import (
    chunk_files as _chunk_files,
)
from tests.extract.job.job_world import (
    cli as _cli,
)
from tests.extract.job.job_world import (
    cli_env as _env,
)


def test_shard_partition_is_deterministic_and_complete():
    ids = [f"video{i}_left" for i in range(50)] + [f"v{i}" for i in range(50)]
    shards = [Shard(i, 3) for i in range(3)]
    owners = [[s for s in shards if s.owns(t)] for t in ids]
    assert all(len(o) == 1 for o in owners)
    assert parse_shard("2/3") == Shard(2, 3)
    assert parse_shard(None) == Shard(0, 1)


def test_run_writes_every_track_and_second_run_skips(world, reference_store, capsys):
    from extract.store import StoreReader

    manifest = pd.read_parquet(world["manifest"])
    usable = manifest[manifest["status"] == "ok"]
    reader = StoreReader(str(reference_store))
    assert sorted(reader.tracks()) == sorted(usable["track_id"])
    for tid in reader.tracks():
        n = reader.n_frames(tid)
        assert reader.read(tid, "face/valid").shape == (n,)
        assert reader.read(tid, "visual/dinov2/cls").shape[0] == n
        assert reader.read(tid, "audio/logmel").shape == (n, 80)
    before = _chunk_files(reference_store)
    capsys.readouterr()
    assert extract_main(_args(world, reference_store)) == 0
    out = capsys.readouterr().out
    assert re.search(rf"tracks skipped\s+{len(usable)}\n", out), out
    assert re.search(r"tracks done\s+0\n", out), out
    assert _chunk_files(reference_store) == before


def test_adding_an_encoder_computes_only_its_arrays(world, reference_store, tmp_path):
    import shutil

    store = tmp_path / "grow.zarr"
    shutil.copytree(reference_store, store)
    before = _chunk_files(store)
    assert extract_main(_args(world, store, audio=f"logmel,wavlm={world['models']['wavlm']}")) == 0
    after = _chunk_files(store)
    for key, value in before.items():
        assert after[key] == value, f"{key} changed when adding an encoder"
    new = [k for k in after if k not in before]
    assert new and all("wavlm" in k for k in new), new
    from extract.store import StoreReader

    reader = StoreReader(str(store))
    for tid in reader.tracks():
        assert reader.read(tid, "audio/wavlm").shape[0] == reader.n_frames(tid)


@pytest.mark.slow
def test_sigkill_then_rerun_equals_uninterrupted(world, reference_store, tmp_path):
    store = tmp_path / "killed.zarr"
    proc = subprocess.Popen(
        _cli(*_args(world, store)), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    # kill it while it writes: once the first chunk of the first track appears
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (store / "tracks").exists() and any((store / "tracks").rglob("c/*")):
            break
        time.sleep(0.02)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert extract_main(_args(world, store)) == 0
    _assert_same_arrays(_arrays(store), _arrays(reference_store))


@pytest.mark.slow
def test_two_shards_together_equal_one_run(world, reference_store, tmp_path):
    store = tmp_path / "sharded.zarr"
    procs = [
        subprocess.Popen(_cli(*_args(world, store, "--shard", f"{i}/2")), env=_env())
        for i in range(2)
    ]
    assert [p.wait() for p in procs] == [0, 0]
    assert extract_main(["consolidate", str(store)]) == 0
    _assert_same_arrays(_arrays(store), _arrays(reference_store))


def test_a_corrupt_file_costs_one_track(world, tmp_path, capsys):
    manifest = pd.read_parquet(world["manifest"])
    good = manifest[manifest["status"] == "ok"].iloc[:1].copy()
    bad = good.copy()
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))
    bad["track_id"] = "corrupt_track"
    bad["video"] = str(corrupt)
    bad["frames_dir"] = ""
    both = pd.concat([bad, good], ignore_index=True)
    mpath = tmp_path / "m.parquet"
    both.to_parquet(mpath)
    store = tmp_path / "faults.zarr"
    args = _args(world, store)
    args[args.index("--manifest") + 1] = str(mpath)
    capsys.readouterr()
    assert extract_main(args) == 1
    out = capsys.readouterr().out
    assert "corrupt_track" in out
    from extract.store import StoreReader

    assert StoreReader(str(store)).tracks() == [good["track_id"].iloc[0]]
    records = [
        json.loads(x) for x in (tmp_path / "faults.zarr.failures.jsonl").read_text().splitlines()
    ]
    assert [r["track"] for r in records] == ["corrupt_track"]
    assert records[0]["stage"] and records[0]["error"]


def test_gpu_out_of_memory_retries_with_smaller_batches():
    """An encoder that runs out of memory above 3 frames still encodes every frame, in halves."""
    from extract.job.runner import _encode_with_oom_retry

    class OutOfMemoryError(RuntimeError):  # the name torch.cuda raises
        pass

    seen = []

    def encode(crops):
        seen.append(len(crops))
        if len(crops) > 3:
            raise OutOfMemoryError("CUDA out of memory")
        return {"cls": crops.reshape(len(crops), -1)[:, :2].astype(np.float32)}

    crops = np.arange(10 * 4).reshape(10, 2, 2, 1)
    out = _encode_with_oom_retry(encode, crops)
    np.testing.assert_array_equal(out["cls"], crops.reshape(10, -1)[:, :2])
    assert seen[0] == 10 and max(seen[1:]) <= 5


def test_other_errors_are_not_retried():
    from extract.job.runner import _encode_with_oom_retry

    def encode(crops):
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        _encode_with_oom_retry(encode, np.zeros((4, 2, 2, 3)))
