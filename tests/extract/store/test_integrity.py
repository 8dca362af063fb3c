"""Missing or damaged data is an error naming track, array and file; commit proves completeness."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from extract.store import (
    CorruptChunk,
    GroupMissing,
    IncompleteTrack,
    MissingChunk,
    StoreReader,
)
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
from tests.extract.store.test_verify_merge import _cli


def _store(tmp_path, tids=("good", "bad"), n=21):
    url = str(tmp_path / "s.zarr")
    w = small_writer(url)
    register_all(w)
    for i, tid in enumerate(tids):
        write_track(w, tid, n=n, seed=i)
    return url


def _shards(tmp_path, tid, name):
    base = tmp_path / "s.zarr/tracks" / tid / name / "c"
    return sorted(base.rglob("*"), key=lambda p: str(p))


@pytest.mark.parametrize("consolidated", [False, True])
def test_deleted_shard_file_is_an_error_never_zeros(tmp_path, capsys, consolidated):
    url = _store(tmp_path)
    if consolidated:
        consolidate_store(url)
    shard = tmp_path / "s.zarr/tracks/bad/face/landmarks/c/1/0/0"
    shard.unlink()
    with pytest.raises(MissingChunk) as err:
        StoreReader(url).read("bad", "face/landmarks")
    msg = str(err.value)
    assert "track 'bad' array 'face/landmarks'" in msg and str(shard) in msg
    assert "\n" not in msg
    report = verify_store(url)
    assert not report.ok and len(report.issues) == 1
    p = report.issues[0]
    assert (p.track, p.array, p.file) == ("bad", "face/landmarks", str(shard))
    assert _cli(["verify", url]) == 1
    assert str(shard) in capsys.readouterr().err
    assert _cli(["verify", url, "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and out["problems"][0]["file"] == str(shard)


@pytest.mark.parametrize("consolidated", [False, True])
def test_deleted_array_folder_is_an_error(tmp_path, consolidated):
    url = _store(tmp_path)
    if consolidated:
        consolidate_store(url)
    folder = tmp_path / "s.zarr/tracks/bad/face/valid"
    shutil.rmtree(folder)
    r = StoreReader(url)
    assert "face/valid" in r.arrays("bad")  # still listed: the face group promises it
    with pytest.raises(MissingChunk, match="track 'bad' array 'face/valid'") as err:
        r.read("bad", "face/valid")
    assert str(folder) in str(err.value)
    problems = "\n".join(verify_store(url).problems)
    assert "track 'bad' array 'face/valid': missing although group 'face' is complete" in problems
    assert str(folder) in problems


def test_flipped_bytes_fail_the_checksum(tmp_path, capsys):
    url = _store(tmp_path)
    shard = tmp_path / f"s.zarr/tracks/bad/visual/{ENC}/cls/c/0/0"
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0x01  # one flipped bit in a compressed chunk
    shard.write_bytes(bytes(data))
    with pytest.raises(CorruptChunk) as err:
        StoreReader(url).read("bad", f"visual/{ENC}/cls")
    msg = str(err.value)
    assert f"track 'bad' array 'visual/{ENC}/cls'" in msg and str(shard) in msg
    assert "\n" not in msg and len(msg) < 600
    with pytest.raises(CorruptChunk):  # a window read inside the damaged shard too
        StoreReader(url, cache=True).read("bad", f"visual/{ENC}/cls", 0, 2)
    report = verify_store(url)
    assert [(p.track, p.array, p.file) for p in report.issues] == [
        ("bad", f"visual/{ENC}/cls", str(shard))
    ]
    assert "unreadable" in report.problems[0]
    assert np.array_equal(  # the other track is fine
        StoreReader(url).read("good", f"visual/{ENC}/cls"), make_track(21, 0)[f"visual/{ENC}/cls"]
    )


def test_every_array_carries_a_crc32c_checksum(tmp_path):
    url = _store(tmp_path, tids=("t0",))
    r = StoreReader(url)
    for name in r.arrays("t0"):
        meta = json.loads((tmp_path / "s.zarr/tracks/t0" / name / "zarr.json").read_text())
        sharding = meta["codecs"][0]
        assert sharding["name"] == "sharding_indexed"
        inner = [c["name"] for c in sharding["configuration"]["codecs"]]
        assert inner[-1] == "crc32c", (name, inner)


def _half_written(tmp_path):
    url = str(tmp_path / "s.zarr")
    w = small_writer(url)
    register_all(w)
    n = 21
    data = make_track(n)
    tw = w.open_track("t0", n_frames=n)
    for name, values in data.items():
        if name.startswith("face/") or name == "time":
            tw.create_array(name, values.shape, DTYPES[name])
            tw.write(name, 0, values)
    return url, tw


def test_commit_refuses_when_a_finished_groups_array_is_gone(tmp_path):
    url, tw = _half_written(tmp_path)
    tw.finish_group("face")
    shutil.rmtree(tmp_path / "s.zarr/tracks/t0/face/align")
    with pytest.raises(
        IncompleteTrack, match="track 't0' group 'face' array 'face/align': missing"
    ):
        tw.commit()
    tw.abort()
    assert StoreReader(url).tracks() == []


def test_commit_refuses_when_a_shard_file_is_gone(tmp_path):
    url, tw = _half_written(tmp_path)
    tw.finish_group("face")
    (tmp_path / "s.zarr/tracks/t0/face/landmarks/c/2/0/0").unlink()
    with pytest.raises(IncompleteTrack, match="face/landmarks/c/2/0/0 is missing"):
        tw.commit()
    tw.abort()


def test_finish_group_refuses_a_face_group_without_every_schema_array(tmp_path):
    url = str(tmp_path / "s.zarr")
    w = small_writer(url)
    register_all(w)
    n = 9
    data = make_track(n)
    with pytest.raises(IncompleteTrack, match="'face/align': missing"):
        with w.open_track("t0", n_frames=n) as tw:
            for name in ("time", "face/valid", "face/box", "face/landmarks", "face/rois"):
                tw.create_array(name, data[name].shape, DTYPES[name])
                tw.write(name, 0, data[name])
            tw.finish_group("face")
    assert StoreReader(url).tracks() == [] and StoreReader(url).incomplete_tracks() == []


def test_int8_scale_array_is_implied_and_checked(tmp_path):
    from extract.store import TokenStorage

    url = str(tmp_path / "s.zarr")
    w = small_writer(url)
    storage = TokenStorage("int8", pool=2)
    register_all(w, storage)
    write_track(w, "t0", n=13, storage=storage)
    shutil.rmtree(tmp_path / f"s.zarr/tracks/t0/visual/{ENC}/patch_scale")
    problems = "\n".join(verify_store(url).problems)
    assert f"array 'visual/{ENC}/patch_scale': missing although group 'visual/{ENC}'" in problems
    with pytest.raises(MissingChunk, match="patch_scale"):
        StoreReader(url).read("t0", f"visual/{ENC}/patch")


def test_arrays_of_an_unfinished_group_are_not_read(tmp_path):
    url = _store(tmp_path, tids=("t0",))
    w = small_writer(url)
    tw = w.open_track("t0", add_groups=True, replace_groups=[f"visual/{ENC}"])
    tw.create_array(f"visual/{ENC}/cls", (21, 8), "float16")
    tw.write(f"visual/{ENC}/cls", 0, np.ones((10, 8), np.float16))
    r = StoreReader(url)
    with pytest.raises(GroupMissing, match="not complete in this track"):
        r.read("t0", f"visual/{ENC}/cls")
    assert np.array_equal(r.read("t0", "face/box"), make_track(21, 0)["face/box"])
    tw.abort()
    assert os.path.exists(tmp_path / "s.zarr/tracks/t0/face/box")


def test_inspect_of_a_damaged_store_is_one_line(tmp_path, capsys):
    url = _store(tmp_path, tids=("t0",))
    (tmp_path / "s.zarr/tracks/t0/face/valid/c/0").rename(tmp_path / "moved")
    assert _cli(["inspect", url]) == 2
    err = capsys.readouterr().err.strip()
    assert "track 't0' array 'face/valid'" in err and "missing" in err
    assert len(err.splitlines()) == 1
