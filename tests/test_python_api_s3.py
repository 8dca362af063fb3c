"""The Python API over s3:// (a moto server on 127.0.0.1): the same reads, windows and
predictions as from the local copy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import auwild

pytest.importorskip("s3fs", reason="pip install s3fs")
pytest.importorskip("moto.server", reason="pip install 'moto[server]'")

from tests.extract.store.test_s3 import BUCKET, _serve  # noqa: E402
from tests.test_python_api import make_api_data  # noqa: E402


@pytest.fixture(scope="module")
def s3():
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as mp:
        yield from _serve(mp, ThreadedMotoServer)


def test_api_reads_and_predicts_through_s3(tmp_path, s3):
    fs, opts = s3
    store_url, manifest, run_dir = make_api_data(tmp_path)
    fs.put(store_url + "/", f"{BUCKET}/api.zarr/", recursive=True)
    remote = auwild.open_store(f"s3://{BUCKET}/api.zarr", storage_options=opts)
    local = auwild.open_store(store_url)
    assert remote.url.startswith("s3://") and remote.tracks() == local.tracks()
    track = local.tracks()[3]
    for name in local.arrays(track):
        a = remote.read(track, name, 4, 30, format="torch")
        assert torch.equal(a, local.read(track, name, 4, 30, format="torch")), name

    here = auwild.SplitDataset(local, manifest, "train", recipe="baseline")
    there = auwild.SplitDataset(remote, manifest, "train", recipe="baseline")
    assert np.array_equal(here.windows, there.windows)
    for i in (0, len(here) - 1):
        for k, v in here[i].items():
            assert torch.equal(there[i][k], v), k

    run = auwild.load_run(run_dir, device="cpu")
    p_remote, d_remote = run.predict_track(remote, track)
    p_local, d_local = run.predict_track(local, track)
    assert np.array_equal(p_remote, p_local) and np.array_equal(d_remote, d_local)
