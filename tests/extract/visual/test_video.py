"""Decoding: frame counts, presentation times (constant and variable rate), frames folders, bad files."""

from __future__ import annotations

import logging
import os

import cv2
import numpy as np
import pytest

from extract.job.timeline import video_frame_times
from extract.video import (
    VideoDecodeError,
    _check_declared,
    iter_frames_folder,
    iter_video_frames,
    probe_video,
)
from tests.extract.visual.conftest import write_video


def _decode_all(path, batch_size=5):
    batches = list(iter_video_frames(path, batch_size))
    times = np.concatenate([t for t, _ in batches])
    frames = np.concatenate([f for _, f in batches])
    return batches, times, frames


def test_mp4_frames_times_and_batches(mp4_video):
    info = probe_video(mp4_video)
    assert (info.n_frames, info.width, info.height) == (12, 64, 48)
    assert info.fps == pytest.approx(25.0)
    assert not info.has_audio
    batches, times, frames = _decode_all(mp4_video, batch_size=5)
    assert [len(t) for t, _ in batches] == [5, 5, 2]  # streamed, never the whole video at once
    assert frames.shape == (12, 48, 64, 3) and frames.dtype == np.uint8
    assert times.dtype == np.float64
    np.testing.assert_allclose(times, np.arange(12) / 25.0, atol=1e-6)


def test_variable_frame_rate_times_come_from_pts(tmp_path):
    durations = [40, 20] * 5
    path = write_video(str(tmp_path / "vfr.mp4"), n_frames=10, frame_ms=durations)
    _, times, frames = _decode_all(path)
    expected = np.concatenate([[0], np.cumsum(durations)[:-1]]) / 1000.0
    assert len(frames) == 10
    np.testing.assert_allclose(times, expected, atol=1e-6)
    assert probe_video(path).n_frames == 10


def test_avi_container(tmp_path):
    path = write_video(str(tmp_path / "clip.avi"), n_frames=9, codec="mpeg4")
    info = probe_video(path)
    assert info.n_frames == 9
    _, times, frames = _decode_all(path, batch_size=4)
    assert frames.shape == (9, 48, 64, 3)
    np.testing.assert_allclose(times, np.arange(9) / 25.0, atol=1e-6)


@pytest.mark.parametrize("keep", [0.5, 0.0])
def test_truncated_or_corrupt_video_names_the_file(mp4_video, tmp_path, keep):
    data = open(mp4_video, "rb").read()
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(data[: int(len(data) * keep)] if keep else b"not a video" * 50)
    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        list(iter_video_frames(str(bad), 4))
    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        probe_video(str(bad))


def test_video_cut_midway_is_reported_as_truncated(tmp_path):
    """Header first (faststart), data cut: opens fine, but ends well before the declared count."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (30, 48, 64, 3), dtype=np.uint8)  # incompressible: data dominates
    path = write_video(
        str(tmp_path / "cut.mp4"), n_frames=30, frames=noise, options={"movflags": "faststart"}
    )
    data = open(path, "rb").read()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    assert probe_video(path).n_frames == 30
    with pytest.raises(VideoDecodeError, match=r"cut\.mp4.*truncated"):
        list(iter_video_frames(path, 8))


def test_missing_video_is_a_decode_error(tmp_path):
    with pytest.raises(VideoDecodeError, match="nope.mp4"):
        probe_video(str(tmp_path / "nope.mp4"))


def test_frames_folder_with_gaps(tmp_path):
    folder = tmp_path / "cropped_aligned" / "track"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for number in (1, 2, 4, 5):  # 3 is missing, 6 is beyond the last file
        image = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
        cv2.imwrite(os.path.join(folder, f"{number:05d}.jpg"), image)
    (folder / "00007.jpg").write_bytes(b"corrupt")  # unreadable: absent, with a warning
    batches = list(iter_frames_folder(folder, n_frames=7, fps=30.0, batch_size=4))
    times = np.concatenate([b[0] for b in batches])
    frames = np.concatenate([b[1] for b in batches])
    present = np.concatenate([b[2] for b in batches])
    assert [len(b[0]) for b in batches] == [4, 3]
    assert frames.shape == (7, 16, 16, 3)
    np.testing.assert_array_equal(present, [True, True, False, True, True, False, False])
    np.testing.assert_allclose(times, np.arange(7) / 30.0)
    assert not frames[~present].any()  # missing frames are black
    # n_frames=None reads up to the highest number in the folder
    assert sum(len(b[0]) for b in iter_frames_folder(folder, None, 30.0)) == 7


def test_frames_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        list(iter_frames_folder(tmp_path / "missing_dir", 3, 25.0))
    with pytest.raises(ValueError, match="fps"):
        list(iter_frames_folder(tmp_path, 3, float("nan")))


CLIPS = os.path.join(os.path.dirname(__file__), "..", "..", "data", "clips")


def test_declared_count_is_a_hint_for_a_variable_rate_clip(caplog):
    """98 frames declared, 3 hidden by the edit list: 95 decoded, one warning, no failure."""
    path = os.path.join(CLIPS, "vfr_editlist.mp4")
    assert probe_video(path).n_frames == 98
    with caplog.at_level(logging.WARNING, logger="extract.video"):
        _, times, frames = _decode_all(path, batch_size=16)
    assert len(frames) == len(times) == 95
    assert times[0] == pytest.approx(0.0) and np.all(np.diff(times) > 0)
    steps = np.round(np.diff(times) * 1000).astype(int)
    assert set(steps) == {33, 50, 66}  # variable rate, from PTS
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "vfr_editlist.mp4" in lines[0] and "declares 98" in lines[0] and "95 decoded" in lines[0]
    np.testing.assert_allclose(video_frame_times(path), times)  # the store's timeline agrees


@pytest.mark.parametrize(
    ("declared", "decoded", "hidden", "outcome"),
    [
        (98, 95, 3, "warn"),  # edit list: explained, still said
        (98, 95, 0, "warn"),  # 3 % short, unexplained: said, not failed
        (98, 97, 0, "quiet"),  # off by one is everyday
        (1000, 981, 0, "quiet"),  # within 2 %
        (1000, 1030, 0, "warn"),  # more frames than declared is said too
        (100, 76, 0, "warn"),  # a quarter short is the most a real file may be
        (100, 74, 0, "fail"),
        (200, 100, 100, "warn"),  # half the packets empty (dropped frames): not truncation
    ],
)
def test_declared_count_rule(declared, decoded, hidden, outcome, caplog):
    with caplog.at_level(logging.WARNING, logger="extract.video"):
        if outcome == "fail":
            with pytest.raises(VideoDecodeError, match=rf"clip\.mp4.*decoded {decoded} of"):
                _check_declared("clip.mp4", declared, decoded, hidden, True)
            return
        _check_declared("clip.mp4", declared, decoded, hidden, True)
    assert len(caplog.records) == (outcome == "warn")
    _check_declared("clip.mp4", 100, 10, 0, False)  # the check can be turned off


def test_rotation_metadata_turns_frames_upright():
    """A phone's portrait matrix (a quarter turn clockwise): frames come out as shown."""
    path = os.path.join(CLIPS, "rotated_portrait.mp4")
    info = probe_video(path)
    assert info.rotation == -90 and (info.width, info.height) == (64, 96)
    _, _, frames = _decode_all(path)
    assert frames.shape == (10, 96, 64, 3)
    # the red marker drawn top-left in the stored picture is top-right once turned clockwise
    red = (frames[0, ..., 0] > 180) & (frames[0, ..., 1] < 90)
    ys, xs = np.nonzero(red)
    assert ys.max() < 20 and xs.min() > 64 - 20
    _, stored = next(iter_video_frames(path, 10, autorotate=False))
    assert stored.shape == (10, 64, 96, 3)
    np.testing.assert_array_equal(np.rot90(stored, -1, axes=(1, 2)), frames)
