"""A run folder written under umask 022 is readable by another user (teammates share runs)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from tests.train.store_factory import make_dataset
from train.cli import main

SYSTEM_PYTHON = "/usr/bin/python3"  # the venv's interpreter may live under a private home

READ_ALL = r"""
import json, pathlib, sys
seen = 0
for root in sys.argv[1:]:
    for p in sorted(pathlib.Path(root).rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p.suffix == ".json":
                json.loads(data)
            seen += 1
print(seen)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another uid needs root")
@pytest.mark.skipif(not os.path.exists(SYSTEM_PYTHON), reason="no system python to run as nobody")
def test_run_folder_is_readable_by_another_uid():
    base = Path(tempfile.mkdtemp(prefix="auwild-shared-"))
    old = os.umask(0o022)
    try:
        base.chmod(0o755)  # mkdtemp's own folder is 0700; everything below is the project's
        store, manifest = make_dataset(base, n_train=2, n_val=1, n_test=1, frames=40)
        run, pred = base / "run", base / "pred"
        common = ["--set", "optim.batch_size=4", "data.window=12", "model.hidden=8"]
        fit = ["fit", "--store", str(store), "--manifest", str(manifest), "--recipe", "baseline"]
        assert main([*fit, "--out", str(run), "--no-progress", *common, "optim.epochs=1"]) == 0
        assert main(["eval", str(run)]) == 0
        assert main(["predict", str(run), "--out", str(pred)]) == 0
        val = pd.read_parquet(manifest).query("split == 'val'")["track_id"].iloc[0]
        assert main(["report", str(run), "--track", str(val)]) == 0
        files = [p for d in (run, pred) for p in d.rglob("*") if p.is_file()]
        names = {p.name for p in files}
        assert {"last.pt", "best.pt", "metrics.json", "report.html", "predictions.txt"} <= names
        assert {"config.json", "history.jsonl", "run.json"} <= names
        private = [
            f"{p}: {oct(p.stat().st_mode & 0o777)}" for p in files if not p.stat().st_mode & 0o004
        ]
        assert not private, private
        other = subprocess.run(
            [SYSTEM_PYTHON, "-c", READ_ALL, str(run), str(pred)],
            user=65534,
            group=65534,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert other.returncode == 0, other.stderr
        assert int(other.stdout) == len(files)
    finally:
        os.umask(old)
        shutil.rmtree(base, ignore_errors=True)
