"""A real S3 server (moto, on 127.0.0.1 only): upload a store, read it back through s3://."""

from __future__ import annotations

import numpy as np
import pytest

from extract.store import StoreReader, TokenStorage
from extract.store.consolidate import consolidate_store
from extract.store.inspect import inspect_store
from extract.store.verify import verify_store
from tests.extract.store.store_fixtures import ENC, register_all, small_writer, write_track

pytest.importorskip("s3fs", reason="pip install s3fs")
pytest.importorskip("moto.server", reason="pip install 'moto[server]'")

BUCKET = "features"


@pytest.fixture(scope="module")
def s3():
    """Storage options for a moto S3 server started on a free port of 127.0.0.1, stopped after."""
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as mp:
        yield from _serve(mp, ThreadedMotoServer)


def _serve(monkeypatch, server_cls):
    for var, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(var, value)
    server = server_cls(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    assert host == "127.0.0.1"
    opts = {
        "endpoint_url": f"http://127.0.0.1:{port}",
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"region_name": "eu-west-1"},
    }
    import s3fs

    fs = s3fs.S3FileSystem(**opts)
    # in the client region (us-east-1 would be refused as a location constraint); moto keeps its
    # buckets in the process, so a server started by an earlier test module may already hold it
    fs.makedirs(BUCKET, exist_ok=True)
    try:
        yield fs, opts
    finally:
        server.stop()


def test_store_read_back_through_s3(tmp_path, s3):
    fs, opts = s3
    local = str(tmp_path / "s.zarr")
    w = small_writer(local, chunk_bytes=2048, shard_bytes=8192)  # few files: fewer requests
    register_all(w, TokenStorage("int8", pool=2))
    for i in range(2):
        write_track(w, f"t{i}", n=25, seed=i, storage=TokenStorage("int8", pool=2))
    fs.put(local + "/", f"{BUCKET}/s.zarr/", recursive=True)
    assert fs.exists(f"{BUCKET}/s.zarr/tracks/t1/zarr.json")

    url = f"s3://{BUCKET}/s.zarr"
    remote, here = StoreReader(url, storage_options=opts), StoreReader(local)
    assert remote.tracks() == here.tracks() == ["t0", "t1"]
    assert remote.groups == here.groups
    for tid in here.tracks():
        assert remote.arrays(tid) == here.arrays(tid)
        for name in here.arrays(tid):
            raw = remote.read(tid, name, dequantize=False)
            assert raw.dtype == here.read(tid, name, dequantize=False).dtype
            assert raw.tobytes() == here.read(tid, name, dequantize=False).tobytes()
        for a, b in [(0, 3), (7, 19), (24, 25)]:
            for name in ("face/landmarks", f"visual/{ENC}/patch", "time"):
                assert np.array_equal(remote.read(tid, name, a, b), here.read(tid, name, a, b))
    assert verify_store(url, opts).ok
    info = inspect_store(url, opts)
    assert info["tracks"] == 2 and info["frames"] == 50
    assert info["bytes_per_frame"] == inspect_store(local)["bytes_per_frame"]


def test_write_and_consolidate_directly_on_s3(s3):
    _, opts = s3
    url = f"s3://{BUCKET}/direct.zarr"
    w = small_writer(url, storage_options=opts, chunk_bytes=2048, shard_bytes=8192)
    register_all(w)
    data = write_track(w, "t0", n=12)
    assert consolidate_store(url, opts) > 0
    write_track(w, "t1", n=8, seed=3)  # after consolidation
    r = StoreReader(url, storage_options=opts)
    assert r.tracks() == ["t0", "t1"]
    assert np.array_equal(r.read("t0", "face/rois", 2, 6), data["face/rois"][2:6])
    assert verify_store(url, opts).ok


def test_lease_on_s3_acquire_conflict_release(s3):
    from extract.store import TrackLeased
    from extract.store.lease import Lease, _LeaseFiles, lease_states
    from extract.store.location import StoreLocation

    _, opts = s3
    url = f"s3://{BUCKET}/leased.zarr"
    loc = StoreLocation(url, opts)
    files = _LeaseFiles(loc)
    assert files.s3  # conditional PUT (If-None-Match: *), not the best-effort path
    first = Lease.acquire(loc, "t0", url=url)
    with pytest.raises(TrackLeased, match="being written by pid"):
        Lease.acquire(loc, "t0", url=url)
    assert not files.create("t0", first.gen, {"token": "intruder"})  # the server refuses
    assert files.read("t0", first.gen)["token"] == first.info["token"]
    first.heartbeat()
    first.check()
    first.release()
    assert lease_states(loc) == {}
    second = Lease.acquire(loc, "t0", url=url)
    assert second.gen == first.gen + 1 and files.generations("t0") == [second.gen]
    second.release()

    w = small_writer(url, storage_options=opts, chunk_bytes=2048, shard_bytes=8192)
    register_all(w)
    tw = w.open_track("t1", n_frames=6)
    with pytest.raises(TrackLeased):
        small_writer(url, storage_options=opts).open_track("t1", n_frames=6)
    tw.abort()
    write_track(w, "t1", n=6)
    assert StoreReader(url, storage_options=opts).tracks() == ["t1"]
