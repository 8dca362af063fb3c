"""Several processes on one store: the store equals one uninterrupted run, whatever the timing.

Two `auwild-extract run`s at once, on the same tracks (the per-track lease decides who writes
which; the other skips it and says so) and on overlapping shards; and a `--overwrite` run
killed at several points while it rewrites tracks: reading then gives an error or the old data,
never zeros, and a rerun completes the store.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time

import numpy as np
import pytest

from extract.cli import main as extract_main
from tests.extract.job.job_world import args_for, arrays_of, assert_same_arrays, cli, cli_env


def _start(world, store, *extra):
    return subprocess.Popen(
        cli(*args_for(world, store, "--no-consolidate", *extra)),
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow  # about 30 s a case on two busy cores: two processes import torch
@pytest.mark.parametrize(
    "shards",
    [((), ()), ((), ()), ((), ("--shard", "0/2")), (("--shard", "1/2"), ())],
    ids=["same", "same-again", "full-and-shard0", "shard1-and-full"],
)
def test_two_runs_at_once_equal_one_run(world, reference_store, tmp_path, shards):
    store = tmp_path / "together.zarr"
    procs = [_start(world, store, *extra) for extra in shards]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert all("FAILED" not in out for out in outputs), outputs
    done = [int(re.search(r"tracks done\s+(\d+)", out).group(1)) for out in outputs]
    if shards[0] == shards[1]:  # the same tracks: each written by exactly one of the two
        assert sum(done) == 3, outputs
    assert_same_arrays(arrays_of(store, consolidated=False), arrays_of(reference_store))


def _read_all(store, reference: dict) -> list[str]:
    """Read every reference array from `store`; a read either fails or gives the old data."""
    from extract.store import StoreReader

    problems = []
    try:
        reader = StoreReader(str(store))
    except Exception:  # noqa: BLE001 - an error is an acceptable answer while a rewrite is cut
        return problems
    for key, old in reference.items():
        tid, name = key.split("/", 1)
        try:
            got = reader.read(tid, name)
        except Exception:  # noqa: BLE001 - missing group, incomplete track, missing chunk
            continue
        if got.shape != old.shape or not np.array_equal(got, old):
            zeros = not np.any(got)
            problems.append(f"{key}: {'zeros' if zeros else 'other values'} instead of old data")
    return problems


@pytest.mark.slow
def test_killed_overwrite_reads_old_data_or_an_error_never_zeros(
    world, reference_store, tmp_path, capsys
):
    import shutil

    reference = arrays_of(reference_store)
    redone = 0
    for i, delay in enumerate((0.0, 0.15, 0.4, 0.8)):
        store = tmp_path / f"killed{i}.zarr"
        shutil.copytree(reference_store, store)
        leases = store / ".leases"  # a new lease generation: the run holds its first track
        held_before = set(leases.rglob("*.json"))
        proc = _start(world, store, "--overwrite")
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if set(leases.rglob("*.json")) - held_before:
                break
            time.sleep(0.01)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert _read_all(store, reference) == [], f"killed after {delay} s"
        capsys.readouterr()
        assert extract_main(args_for(world, store)) == 0  # the rerun completes what was cut
        redone += int(re.search(r"tracks done\s+(\d+)", capsys.readouterr().out).group(1))
        assert_same_arrays(arrays_of(store, consolidated=False), reference)
    assert redone > 0  # the kills did cut rewrites
