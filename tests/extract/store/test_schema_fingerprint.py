"""Track ids, fingerprints, and the light import of the package."""

from __future__ import annotations

import subprocess
import sys

import pytest

from extract.store import InvalidTrackId, StoreWriter, check_track_id, diff_fields, fingerprint_of
from extract.store.fingerprint import describe_diff
from extract.store.schema import group_of

BAD_IDS = [
    "",
    "a/b",
    "a\\b",
    "..",
    "a..b",
    ".hidden",
    "-x",
    "x.",
    "a b",
    "a\tb",
    "a\nb",
    "é",
    "a:b",
    "a*b",
    "a?b",
    "a#b",
    "a%b",
    "a\x00b",
    "CON",
    "nul.txt",
    "x" * 201,
]


@pytest.mark.parametrize("tid", BAD_IDS)
def test_invalid_track_ids_refused(tid):
    with pytest.raises(InvalidTrackId, match="cannot be a store path"):
        check_track_id(tid)


@pytest.mark.parametrize("tid", ["1-30-1280x720", "video10_1_left", "a.b", "x+y=z", "0" * 200])
def test_valid_track_ids(tid):
    assert check_track_id(tid) == tid


def test_invalid_track_id_names_manifest_row(tmp_path):
    with pytest.raises(InvalidTrackId, match=r"'\.\./etc' \(manifest row 17\).*'\.\.'"):
        check_track_id("../etc", row=17)
    w = StoreWriter(str(tmp_path / "s.zarr"))
    with pytest.raises(InvalidTrackId, match=r"manifest row 3.*path separator"):
        w.open_track("a/b", n_frames=3, row=3)
    with pytest.raises(InvalidTrackId, match="not a string"):
        check_track_id(5)


def test_fingerprint_stable_and_order_independent():
    a = {"model": "dinov2", "crop": 224, "nested": {"x": 1, "y": [1, 2]}}
    b = {"nested": {"y": (1, 2), "x": 1}, "crop": 224.0, "model": "dinov2"}
    assert fingerprint_of(a) == fingerprint_of(b)
    assert fingerprint_of(a) == "aaf79304e65f4f2a"  # fixed across runs and machines
    assert fingerprint_of({**a, "crop": 112}) != fingerprint_of(a)


def test_diff_fields_names_what_differs():
    a = {"model": "m", "revision": "r1", "audio": {"rate": 16000, "layers": [1, 2]}, "only_a": 1}
    b = {"model": "m", "revision": "r2", "audio": {"rate": 16000, "layers": [1, 3]}, "only_b": 2}
    assert diff_fields(a, b) == ["audio.layers", "only_a", "only_b", "revision"]
    assert diff_fields(a, dict(a)) == []
    text = describe_diff(a, b, ("A", "B"))
    assert "revision: A='r1', B='r2'" in text and "only_b: A='<missing>', B=2" in text


def test_group_of_array_paths():
    assert group_of("time") is None
    assert group_of("face/rois") == "face"
    assert group_of("visual/dinov2/patch") == "visual/dinov2"
    assert group_of("visual/dinov2/patch_scale") == "visual/dinov2"
    assert group_of("audio/wavlm") == "audio/wavlm"
    assert group_of("audio/valid") == "audio"


def test_import_is_light():
    code = (
        "import sys, extract.store, extract.store.commands, extract.store.inspect, "
        "extract.store.verify, extract.store.merge\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'av', 'cv2', 'transformers')]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_content_hash_of_model_folder(tmp_path):
    from extract.store.fingerprint import content_hash

    for root in ("a", "b"):
        (tmp_path / root / "sub").mkdir(parents=True)
        (tmp_path / root / "config.json").write_text('{"hidden": 8}')
        (tmp_path / root / "sub" / "w.bin").write_bytes(b"\x00\x01")
    (tmp_path / "b" / ".cache").mkdir()
    (tmp_path / "b" / ".cache" / "x").write_text("ignored")
    assert content_hash(str(tmp_path / "a")) == content_hash(str(tmp_path / "b"))
    (tmp_path / "b" / "sub" / "w.bin").write_bytes(b"\x00\x02")
    assert content_hash(str(tmp_path / "a")) != content_hash(str(tmp_path / "b"))
    with pytest.raises(FileNotFoundError):
        content_hash(str(tmp_path / "missing"))
