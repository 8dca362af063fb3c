"""Track ids that cannot be store paths are refused when the manifest is made, naming the row."""

from __future__ import annotations

import pandas as pd
import pytest

from data_manifest.cli import main
from data_manifest.manifest import ManifestError, make_manifest, write_manifest
from data_manifest.track_id import InvalidTrackId, check_track_id, why_unsafe

from .conftest import make_video


@pytest.mark.parametrize(
    "tid", ["", "a/b", "..", "x..y", ".hidden", "-flag", "with space", "tab\t", "CON", "a" * 201]
)
def test_unsafe_ids_are_refused(tid):
    assert why_unsafe(tid)
    with pytest.raises(InvalidTrackId, match="manifest row 7"):
        check_track_id(tid, row=7)


@pytest.mark.parametrize("tid", ["10-60-1280x720_left", "video1", "a.b+c=d", "x_1-2"])
def test_safe_ids_pass(tid):
    assert check_track_id(tid) == tid


def test_store_schema_uses_the_same_rule():
    import data_manifest.track_id as rule
    from extract.store import InvalidTrackId as StoreInvalid
    from extract.store import check_track_id as store_check

    assert store_check is rule.check_track_id and StoreInvalid is rule.InvalidTrackId


def test_csv_import_names_the_line(tmp_path, capsys):
    make_video(tmp_path / "a.mp4", 4)
    (tmp_path / "t.csv").write_text("track_id,video,split\nok,a.mp4,train\nbad/id,a.mp4,val\n")
    assert (
        main(["csv", "--table", str(tmp_path / "t.csv"), "--out", str(tmp_path / "m.parquet")]) == 2
    )
    err = capsys.readouterr().err
    assert "t.csv:3: track_id 'bad/id' cannot be a store path" in err
    assert not (tmp_path / "m.parquet").exists()


def test_writing_a_manifest_refuses_bad_ids_naming_rows(tmp_path):
    df = make_manifest(
        [{"track_id": "good", "split": "train"}, {"track_id": "bad id", "split": "val"}]
    )
    with pytest.raises(ManifestError, match=r"row 2 track_id 'bad id': it contains ' '"):
        write_manifest(df, tmp_path / "m.parquet")


def test_validate_reports_bad_ids_of_an_old_manifest(tmp_path, capsys):
    df = make_manifest([{"track_id": "../escape", "split": "test"}])
    pd.DataFrame(df).to_parquet(tmp_path / "old.parquet")  # written without the check
    assert main(["validate", str(tmp_path / "old.parquet")]) == 1
    out = capsys.readouterr()
    assert "track id cannot be a store path" in out.out + out.err


def test_affwild2_refuses_a_track_named_like_no_path(synth_small, tmp_path, capsys):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(synth_small[0], root)
    renamed = 0
    for path in sorted(root.rglob("*"), key=lambda p: -len(p.parts)):  # deepest first
        if path.name.startswith("video000"):
            path.rename(path.with_name(path.name.replace("video000", "video 000")))
            renamed += 1
    assert renamed
    for listing in root.glob("*.txt"):
        listing.write_text(listing.read_text().replace("video000", "video 000"))
    out = tmp_path / "m.parquet"
    assert main(["affwild2", "--root", str(root), "--out", str(out)]) == 2
    assert "track_id 'video 000': it contains ' '" in capsys.readouterr().err
    assert not out.exists()
