"""Face detectors: the registry, box calibration, HOG on real and synthetic faces, batched S3FD
against face-alignment's own path, one batched detector call per batch, and the face rate."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from data_manifest.face_shape import MEAN_SHAPE_68, anchor_points
from extract.faces import get_landmark_backend
from extract.faces.base import parse_landmark_spec
from extract.faces.detectors import (
    BoxCalibration,
    Detections,
    FaceDetector,
    get_face_detector,
    known_face_detectors,
)
from extract.faces.face_rate import FaceRate
from tests.extract.visual.conftest import astronaut_rgb

# Eye and mouth centres in scikit-image's astronaut photo, measured with MediaPipe FaceMesh
# (as in test_real_face.py, in full-image pixels).
EYES_Y, MOUTH_Y, CENTRE_X = 102.6, 145.6, 224.5


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.ascontiguousarray(astronaut_rgb())  # (512, 512, 3)


@pytest.fixture(scope="module")
def synth_video(tmp_path_factory):
    """The synthetic world: 4 tracks (one two-face video), 12 frames, with true landmarks."""
    from data_manifest.synth import SynthConfig, generate_synthetic

    out = tmp_path_factory.mktemp("synth")
    truth = generate_synthetic(out, SynthConfig(tracks=4, frames=12, seed=0))
    return out, truth


def test_registry_lists_and_builds_detectors():
    assert {"whole-image", "hog", "haar", "s3fd"} <= set(known_face_detectors())
    whole = get_face_detector("whole-image")
    assert isinstance(whole, FaceDetector)
    (found,) = whole(np.zeros((1, 20, 30, 3), np.uint8))
    np.testing.assert_array_equal(found.boxes, [[0, 0, 30, 20]])
    with pytest.raises(KeyError, match="unknown face detector"):
        get_face_detector("nope")
    assert parse_landmark_spec("template") == ("template", None)
    assert parse_landmark_spec("template:s3fd") == ("template", "s3fd")
    with pytest.raises(KeyError, match="unknown face detector"):
        parse_landmark_spec("template:nope")
    with pytest.raises(KeyError, match="unknown landmark backend"):
        parse_landmark_spec("nope:hog")


def test_calibration_scales_and_shifts_about_the_centre():
    cal = BoxCalibration(width=2.0, height=1.5, shift_x=0.1, shift_y=-0.2)
    box = np.array([[10.0, 20.0, 30.0, 60.0]])  # w 20, h 40, centre (20, 40)
    np.testing.assert_allclose(cal.apply(box), [[2.0, 2.0, 42.0, 62.0]])
    d = Detections.from_boxes(box, cal)
    np.testing.assert_allclose(d.boxes, box)
    assert d.scores.tolist() == [1.0] and len(Detections.none()) == 0


@pytest.mark.parametrize("name", ["hog", "haar"])
def test_cpu_detector_places_the_mean_shape_on_a_real_face(name, astronaut):
    """The calibrated box puts the mean shape's eyes, mouth and centre on the astronaut's."""
    if name == "hog":
        pytest.importorskip("dlib")
    (found,) = get_face_detector(name)(astronaut[None])
    assert len(found) == 1  # the face, not the suit
    box = found.shape_boxes[0]
    size = box[2] - box[0]
    lm = MEAN_SHAPE_68 * (box[2:] - box[:2]) + box[:2]
    eyes_mouth = anchor_points(lm)  # (3, 2) right eye, left eye, mouth
    assert abs(eyes_mouth[:2, 1].mean() - EYES_Y) < 0.1 * size
    assert abs(eyes_mouth[2, 1] - MOUTH_Y) < 0.1 * size
    assert abs(eyes_mouth[:, 0].mean() - CENTRE_X) < 0.1 * size


def test_hog_shrinks_large_frames_and_maps_boxes_back(astronaut):
    pytest.importorskip("dlib")
    import cv2

    full = get_face_detector("hog", max_side=None)
    big = cv2.resize(astronaut, (1024, 1024))
    (small,) = full(astronaut[None])
    (shrunk,) = get_face_detector("hog", max_side=512)(big[None])
    assert len(small) and len(shrunk)
    np.testing.assert_allclose(shrunk.boxes[0], small.boxes[0] * 2, atol=4)


def test_hog_finds_the_synthetic_worlds_faces(synth_video):
    """The default detector for full frames finds the rendered faces, both in a two-face video."""
    pytest.importorskip("dlib")
    from extract.video import iter_video_frames

    root, truth = synth_video
    backend = get_landmark_backend("template", detect_every=1)
    for tid, info in truth["tracks"].items():
        backend.reset(info["side"], track=tid)
        faces = [backend(f) for _, f in iter_video_frames(str(root / info["video"]), 6)]
        rate = backend.end_track()
        assert rate.frames == 12 and rate.rate >= 0.75, (tid, rate)
        true_lm = np.load(root / "synth_truth" / f"{tid}.npz")["landmarks_video"]  # (12, 68, 2)
        valid = np.concatenate([f.valid for f in faces])
        lm = np.concatenate([f.landmarks for f in faces])[valid]
        size = true_lm[valid].max(axis=1) - true_lm[valid].min(axis=1)  # (v, 2)
        # the mean shape in the calibrated box lies on the track's face, on the right side
        err = np.abs(anchor_points(lm) - anchor_points(true_lm[valid])).max(axis=1)  # (v, 2)
        assert (err / size).max() < 0.2, (tid, (err / size).max())


def test_haar_misses_a_synthetic_face_loudly(synth_video, caplog):
    """The old default finds no face in a synthetic video; the track is named in one warning."""
    from extract.video import iter_video_frames

    root, truth = synth_video
    tid = "video002" if "video002" in truth["tracks"] else sorted(truth["tracks"])[-1]
    info = truth["tracks"][tid]
    backend = get_landmark_backend("template:haar", detect_every=3)
    backend.reset(info["side"], track=tid)
    for _, frames in iter_video_frames(str(root / info["video"]), 6):
        backend(frames)
    with caplog.at_level(logging.WARNING, logger="auwild.extract.faces"):
        rate = backend.end_track()
        backend.end_track()  # reported once
    if rate.low:
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 1 and f"track {tid}:" in lines[0] and "template" in lines[0]
    assert backend.fingerprint_fields()["detector"] == "haar"


def test_face_rate_counts_batches_and_warns_once_per_low_track(caplog):
    backend = get_landmark_backend("template", detect_every=2)
    hits = {"calls": 0, "frames": []}

    def detect(frames):  # a face on frames whose first pixel is bright
        hits["calls"] += 1
        hits["frames"].append(len(frames))
        return [
            np.array([[2.0, 2, 20, 20]]) if f[0, 0, 0] > 100 else np.zeros((0, 4)) for f in frames
        ]

    backend.detect = detect
    frames = np.full((8, 24, 24, 3), 50, np.uint8)
    frames[:, 1, 1] = 7  # not blank
    frames[:4, 0, 0] = 200  # faces in the first four frames only
    with caplog.at_level(logging.WARNING, logger="auwild.extract.faces"):
        backend.reset("none", track="t1")
        first = backend(frames[:5])
        second = backend(frames[5:])
        backend.reset("none", track="t2")  # t1 ends here: 4 of 8 is not under half
        backend(frames[:4])
        rate = backend.end_track()
        backend.reset("none", track="t3")
        backend(frames[4:])
        backend.reset("none", track="t4")  # t3 had none: reported by the next reset
    # one detector call per batch, on the due frames only (every 2nd frame of the track)
    assert hits["frames"] == [3, 1, 2, 2]
    np.testing.assert_array_equal(first.detected, [True, False, True, False, False])
    np.testing.assert_array_equal(first.valid, [True, True, True, True, False])
    assert not second.valid.any()
    assert rate == FaceRate(track="t2", frames=4, faces=4, detected=2, detector_frames=2)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("track t3: no face in any of 4 frames")


def test_face_rate_under_half_is_reported(caplog):
    backend = get_landmark_backend("template")
    backend.detect = lambda frames: (
        [np.zeros((0, 4))] * (len(frames) - 1) + [np.array([[0.0, 0, 9, 9]])]
    )
    frames = np.random.default_rng(0).integers(0, 255, (3, 12, 12, 3), dtype=np.uint8)
    with caplog.at_level(logging.WARNING, logger="auwild.extract.faces"):
        backend.reset(track="few")
        faces = backend(frames)
        backend.end_track()
    assert faces.face_rate == pytest.approx(1 / 3)
    (line,) = [r.getMessage() for r in caplog.records]
    assert "track few: a face in only 1 of 3 frames (33%" in line


def test_aligned_input_never_builds_the_full_frame_detector():
    backend = get_landmark_backend("template:s3fd", aligned_input=True)
    backend.reset()
    assert backend(
        np.full((2, 16, 16, 3), 9, np.uint8) + np.eye(16, dtype=np.uint8)[..., None]
    ).valid.all()
    assert backend._detector is None  # no S3FD weights needed for aligned crops
    assert backend.fingerprint_fields()["detector"] == "whole-image"


def test_a_track_never_ended_is_reported_when_the_backend_goes(caplog):
    import gc

    backend = get_landmark_backend("template")
    backend.detect = lambda frames: [np.zeros((0, 4))] * len(frames)
    with caplog.at_level(logging.WARNING, logger="auwild.extract.faces"):
        backend.reset("none", track="last")  # as a job that only calls reset() per track
        backend(np.random.default_rng(0).integers(0, 255, (2, 12, 12, 3), dtype=np.uint8))
        del backend
        gc.collect()
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("track last: no face in any of 2 frames")
