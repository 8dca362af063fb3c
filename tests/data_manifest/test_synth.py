from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from data_manifest.affwild2 import build_affwild2_manifest
from data_manifest.annotations import parse_annotation_file
from data_manifest.aus import AU_INDEX, AUS
from data_manifest.cli import main
from data_manifest.synth import AU_REGIONS, SynthConfig, generate_synthetic, plan_videos
from data_manifest.synth.au_process import face_activity, sample_utterances
from data_manifest.synth.face_render import random_identity, render_face
from data_manifest.validate import validate_manifest


def test_round_trip_counts_match_the_generator(synth_small, tmp_path):
    root, truth = synth_small
    df = build_affwild2_manifest(root)
    assert (df["status"] == "ok").all(), df[["track_id", "status", "error"]]
    report = validate_manifest(df, "synth")
    assert report.ok, [str(p) for p in report.problems]
    got = report.summary()
    for split, want in truth["splits"].items():
        for key in ("tracks", "frames", "valid_frames", "annotated_frames"):
            assert got[split][key] == want[key], (split, key)
    by_id = df.set_index("track_id")
    for tid, info in truth["tracks"].items():
        row = by_id.loc[tid]
        assert (row["split"], row["side"], row["video_id"]) == (
            info["split"],
            info["side"],
            info["video_id"],
        )
        assert row["n_valid"] == info["n_valid"] and row["n_frames"] == info["n_frames"] == 40
        assert row["fps"] == 25.0


def test_layout(synth_small):
    import av
    import cv2

    root, truth = synth_small
    tracks = truth["tracks"]
    assert sorted(tracks) == ["video000", "video001_left", "video001_right", "video002"]
    assert tracks["video001_left"]["video"] == tracks["video001_right"]["video"]
    assert {t["split"] for t in tracks.values()} == {"train", "val", "test"}
    test = [t for t, i in tracks.items() if i["split"] == "test"]
    assert (root / "test_tracks.txt").read_text().split() == test
    for tid in test:
        assert tracks[tid]["labels"] is None
        assert not list(root.glob(f"**/{tid}.txt"))
    with av.open(str(root / tracks["video000"]["video"])) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert (v.width, v.height, float(v.average_rate)) == (256, 192, 25.0)
        assert a.sample_rate == 16000
    full = [t for t in tracks if not tracks[t]["missing_frames"]][0]
    crops = sorted((root / "cropped_aligned" / full).glob("*.jpg"))
    assert crops[0].name == "00001.jpg" and len(crops) == 40
    assert cv2.imread(str(crops[0])).shape == (112, 112, 3)
    # One track has frames missing from cropped_aligned, exactly those the truth lists.
    (missing_tid,) = truth["missing_frames_tracks"]
    assert tracks[missing_tid]["split"] == "train"
    missing = set(tracks[missing_tid]["missing_frames"])
    present = {int(p.stem) for p in (root / "cropped_aligned" / missing_tid).glob("*.jpg")}
    assert missing and present == set(range(1, 41)) - missing
    # Annotations carry some -1 rows; the rest agree with the clean truth labels.
    for tid, info in tracks.items():
        if info["labels"]:
            ann = parse_annotation_file(root / info["labels"])
            clean = np.load(root / "synth_truth" / f"{tid}.npz")["labels"]
            unknown = (ann == -1).all(1)
            assert 0 < unknown.sum() < 10
            np.testing.assert_array_equal(ann[~unknown], clean[~unknown])
    # The pair shares one video: the _left face is on the image's left.
    left = np.load(root / "synth_truth" / "video001_left.npz")["box_video"]
    right = np.load(root / "synth_truth" / "video001_right.npz")["box_video"]
    assert ((left[:, 0] + left[:, 2]) / 2 < 128).all() and (
        (right[:, 0] + right[:, 2]) / 2 > 128
    ).all()
    # Nuisance is there: corrupted frames, hidden mouths, occluders.
    npz = [np.load(p) for p in (root / "synth_truth").glob("*.npz")]
    assert sum(z["corrupted"].sum() for z in npz) > 0
    assert sum(z["mouth_hidden"].sum() for z in npz) > 0
    # Landmarks in the crops stay near the mean shape (small alignment jitter).
    from data_manifest.face_shape import MEAN_SHAPE_68

    lm = np.load(root / "synth_truth" / "video000.npz")["landmarks_crop"]  # (T, 68, 2) unit
    assert np.abs(lm - MEAN_SHAPE_68).mean() < 0.04
    saved = json.loads((root / "synth_truth.json").read_text())
    assert saved["seed"] == 3 and saved["params"]["frames"] == 40


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix in (".jpg", ".txt", ".npz"):
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_deterministic_by_seed(tmp_path):
    cfg = SynthConfig(tracks=3, frames=10, seed=5)
    generate_synthetic(tmp_path / "a", cfg)
    generate_synthetic(tmp_path / "b", cfg)
    generate_synthetic(tmp_path / "c", SynthConfig(tracks=3, frames=10, seed=6))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    with pytest.raises(FileExistsError):
        generate_synthetic(tmp_path / "a", cfg)
    generate_synthetic(tmp_path / "a", cfg, overwrite=True)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")


@pytest.mark.parametrize("au", AUS)
def test_each_au_changes_its_own_region(au):
    """The AU's pixels change inside its region box, much less anywhere else."""
    size = 112
    rng = np.random.default_rng(11)
    for _ in range(3):
        person = random_identity(rng)
        off = np.zeros(12, np.float32)
        on = off.copy()
        on[AU_INDEX[au]] = 1.0
        base = render_face(person, off, size)[0].astype(np.float32)
        moved = render_face(person, on, size)[0].astype(np.float32)
        diff = np.abs(moved - base).mean(-1)  # (S, S)
        inside = np.zeros((size, size), bool)
        for u0, v0, u1, v1 in AU_REGIONS[au]:
            inside[
                int(v0 * size) : int(np.ceil(v1 * size)), int(u0 * size) : int(np.ceil(u1 * size))
            ] = True
        assert diff[inside].mean() > 1.0, f"{au}: too faint in its region"
        assert diff[inside].sum() > 0.9 * diff.sum(), f"{au}: effect leaks outside its region"
        assert diff[inside].mean() > 8 * diff[~inside].mean()
        assert (diff > 10).mean() < 0.05, f"{au}: effect is not local"


def test_temporal_statistics():
    """Events last 0.5-3 s, co-occur like real faces, and have Aff-Wild2-like rates."""
    cfg = SynthConfig()
    rng = np.random.default_rng(0)
    labels, speaking = [], []
    for _ in range(60):
        utts = sample_utterances(rng, cfg, 300, 1)
        act = face_activity(rng, cfg, 300, utts, 0)
        labels.append(act.labels)
        speaking.append(act.speaking)
    lab = np.concatenate(labels).astype(bool)  # (N, 12)
    rate = lab.mean(0)
    i = AU_INDEX
    assert 0.35 < rate[i["AU25"]] < 0.65
    for au in ("AU23", "AU24", "AU15"):
        assert 0.02 < rate[i[au]] < 0.12, au
    assert rate.argmax() == i["AU25"]

    def cond(a, b):
        return lab[lab[:, i[b]], i[a]].mean()

    assert cond("AU6", "AU12") > 2 * rate[i["AU6"]]
    assert cond("AU2", "AU1") > 2 * rate[i["AU2"]]
    assert cond("AU26", "AU25") > 1.5 * rate[i["AU26"]]
    assert cond("AU25", "AU26") > 0.95
    assert not (lab[:, i["AU12"]] & lab[:, i["AU15"]]).any()
    # Speech opens the lips (after the audio lead).
    sp = np.concatenate([np.roll(s, cfg.audio_lead_frames) for s in speaking])
    assert lab[sp, i["AU25"]].mean() > 0.9
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, labels[0][:, i["AU25"]], 0])))[::2]
    assert runs.max() <= 3 * cfg.fps + cfg.audio_lead_frames + 80


def test_audio_follows_speech(synth_small):
    """Frame-level audio energy is higher where the truth says someone speaks."""
    import av

    root, truth = synth_small
    info = truth["tracks"]["video000"]
    with av.open(str(root / info["video"])) as c:
        chunks = [f.to_ndarray().reshape(-1) for f in c.decode(audio=0)]
    audio = np.concatenate(chunks)[: 40 * 640]
    rms = np.sqrt((audio.reshape(40, 640) ** 2).mean(1))  # (T,) one value per video frame
    speaking = np.load(root / "synth_truth" / "video000.npz")["speaking"]
    assert speaking.any() and (~speaking).any()
    assert np.median(rms[speaking]) > 3 * np.median(rms[~speaking])


def test_plan_splits_keep_pairs_together():
    for n in (1, 2, 3, 8, 20):
        plans = plan_videos(SynthConfig(tracks=n))
        assert sum(len(p.tracks) for p in plans) == n
        assert any(p.split == "train" for p in plans)
        if n >= 3:
            assert {p.split for p in plans} == {"train", "val", "test"}
        if n >= 4:
            (pair,) = [p for p in plans if len(p.tracks) == 2]
            assert pair.sides == ["left", "right"] and pair.split == "train"


def test_cli_synth(tmp_path, capsys):
    args = ["synth", "--out", str(tmp_path / "d"), "--tracks", "1", "--frames", "6", "--quiet"]
    assert main(args) == 0
    assert "train: 1 tracks, 6 frames" in capsys.readouterr().out
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite", "--codec", "mpeg4"]) == 0
    assert main(["synth", "--out", str(tmp_path / "e"), "--tracks", "0", "--quiet"]) == 2
