"""Landmark backends (template), the tracker's choices, and the registry."""

from __future__ import annotations

import numpy as np
import pytest

from data_manifest.face_shape import MEAN_SHAPE_68
from extract.faces import LANDMARK_BACKENDS, FaceBatch, LandmarkBackend, get_landmark_backend
from extract.faces.tracking import FaceTracker, TrackerConfig, choose_face
from extract.regions import mean_face_image
from extract.video import iter_video_frames
from tests.extract.visual.conftest import write_video


def _face_frames(n: int, size: int = 64) -> np.ndarray:
    image, _ = mean_face_image(size)
    return np.repeat(image[None], n, axis=0)


def test_template_on_aligned_crops_fills_the_image():
    backend = get_landmark_backend("template", aligned_input=True)
    assert isinstance(backend, LandmarkBackend)
    backend.reset("none")
    frames = _face_frames(4)
    frames[2] = 0  # a missing frame filled black: no face there
    faces = backend(frames)
    assert isinstance(faces, FaceBatch) and len(faces) == 4
    np.testing.assert_array_equal(faces.valid, [True, True, False, True])
    np.testing.assert_allclose(faces.box[0], [0, 0, 64, 64])
    np.testing.assert_allclose(faces.landmarks[0], MEAN_SHAPE_68 * 64, atol=1e-4)
    assert not faces.landmarks[2].any() and not faces.box[2].any()
    # landmarks inside their face box
    lm, box = faces.landmarks[faces.valid], faces.box[faces.valid]
    assert (lm >= box[:, None, :2] - 1e-3).all() and (lm <= box[:, None, 2:] + 1e-3).all()
    assert faces.landmarks.dtype == np.float32 and faces.box.dtype == np.float32
    assert backend.fingerprint_fields()["landmarks"] == "template"


@pytest.mark.parametrize("side", ["left", "right", "none"])
def test_aligned_crops_of_a_side_track_are_all_faces(side):
    """A _left/_right track's aligned crops fill the image: its centred box is its face."""
    backend = get_landmark_backend("template", aligned_input=True)
    backend.reset(side=side, track=f"t_{side}")
    faces = backend(_face_frames(6))
    assert faces.valid.all()
    assert backend.end_track().rate == 1.0


def test_template_on_a_video_without_faces_gives_all_invalid(tmp_path):
    path = write_video(str(tmp_path / "noface.mp4"), n_frames=10, size=(96, 72))
    backend = get_landmark_backend("template", aligned_input=False, detect_every=3)
    backend.reset("left")
    batches = [backend(frames) for _, frames in iter_video_frames(path, 4)]
    faces = FaceBatch.concat(batches)
    assert len(faces) == 10
    assert not faces.valid.any()
    assert faces.landmarks.shape == (10, 68, 2)


def test_template_on_full_frames_places_shape_in_detected_box():
    backend = get_landmark_backend("template", aligned_input=False)

    def fake_detect(frames):  # a stand-in detector: one face box per frame
        return [np.array([[10.0, 20.0, 50.0, 70.0]]) for _ in frames]

    backend.detect = fake_detect
    backend.reset()
    faces = backend(_face_frames(3, 96))
    assert faces.valid.all()
    box = faces.box[0]
    np.testing.assert_allclose(box, [10, 20, 50, 70])
    assert (faces.landmarks >= box[:2] - 1e-3).all() and (faces.landmarks <= box[2:] + 1e-3).all()


def test_aligned_input_can_change_between_tracks():
    backend = get_landmark_backend("template", aligned_input=False)
    frames = _face_frames(2, 64)
    backend.aligned_input = True  # a track read from a frames folder
    backend.reset()
    assert backend(frames).valid.all()
    backend.aligned_input = False  # a track read from full video frames: the detector decides
    backend.reset()
    faces = backend(
        np.zeros((2, 64, 64, 3), np.uint8) + np.arange(64, dtype=np.uint8)[:, None, None]
    )
    assert not faces.valid.any()


def test_side_picks_leftmost_or_rightmost_face():
    boxes = np.array([[60, 10, 90, 40], [5, 10, 35, 40], [30, 10, 55, 40]], float)
    np.testing.assert_array_equal(choose_face(boxes, "left", None), boxes[1])
    np.testing.assert_array_equal(choose_face(boxes, "right", None), boxes[0])
    # no side: the face overlapping the previous box, else the largest
    np.testing.assert_array_equal(
        choose_face(boxes, "none", np.array([28, 10, 52, 40.0])), boxes[2]
    )
    assert choose_face(np.zeros((0, 4)), "left", None) is None


def test_tracker_detects_every_k_frames_and_carries_the_box():
    tracker = FaceTracker(TrackerConfig(detect_every=3, smoothing=0.5))
    tracker.reset("right")
    np.testing.assert_array_equal(tracker.due(4), [True, False, False, True])
    np.testing.assert_array_equal(tracker.due(3), [False, False, True])  # frames 4..6: 6 is due
    first = tracker.update(np.array([[0, 0, 10, 10.0], [20, 0, 30, 10]]), (40, 40))
    np.testing.assert_allclose(first, [20, 0, 30, 10])
    second = tracker.update(np.array([[22, 0, 32, 10.0]]), (40, 40))
    np.testing.assert_allclose(second, [21, 0, 31, 10])  # smoothed towards the new box
    assert tracker.update(np.zeros((0, 4)), (40, 40)) is None and tracker.current is None
    with pytest.raises(ValueError, match="side"):
        tracker.reset("middle")


def test_backend_follows_side_consistently_with_two_faces():
    backend = get_landmark_backend("template", detect_every=2)
    frames = _face_frames(6, 96)

    def two_faces(batch):  # the faces swap detection order between frames
        left, right = [4.0, 10, 40, 60], [50.0, 12, 90, 62]
        return [np.array([left, right] if i % 2 else [right, left]) for i in range(len(batch))]

    backend.detect = two_faces
    for side, x0 in (("left", 4.0), ("right", 50.0)):
        backend.reset(side)
        faces = backend(frames)
        assert faces.valid.all()
        np.testing.assert_allclose(faces.box[:, 0], x0)


def test_registry_and_errors():
    with pytest.raises(KeyError, match="unknown landmark backend"):
        get_landmark_backend("nope")
    assert "template" in LANDMARK_BACKENDS
    with pytest.raises(ValueError, match=r"\(n, H, W, 3\)"):
        get_landmark_backend("template", aligned_input=True)(np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="shapes disagree"):
        FaceBatch(np.zeros(2, bool), np.zeros((3, 4)), np.zeros((2, 68, 2)))
    empty = get_landmark_backend("template", aligned_input=True)(np.zeros((0, 8, 8, 3), np.uint8))
    assert len(empty) == 0


def test_side_track_never_jumps_to_the_other_person():
    left, right = np.array([5.0, 10, 35, 40]), np.array([60.0, 10, 90, 40])
    # with a last box: a lone face wholly on the other side is the other person
    assert choose_face(right[None], "left", None, last=left) is None
    assert choose_face(left[None], "right", None, last=right) is None
    np.testing.assert_array_equal(choose_face(left[None], "left", None, last=left), left)
    # before the track has a box: a lone face in the other half of the frame is not taken
    assert choose_face(right[None], "left", None, frame_w=100) is None
    np.testing.assert_array_equal(choose_face(left[None], "left", None, frame_w=100), left)
    np.testing.assert_array_equal(
        choose_face(np.stack([right, left]), "left", None, frame_w=100), left
    )
    tracker = FaceTracker(TrackerConfig())
    tracker.reset("left")
    np.testing.assert_allclose(tracker.update(np.stack([left, right]), (50, 100)), left)
    assert tracker.update(right[None], (50, 100)) is None  # only the other person found
    assert tracker.current is None and tracker.last is not None
    np.testing.assert_allclose(tracker.update(left[None] + 1, (50, 100)), left + 1)


def test_fast_blank_check_agrees_with_the_reference():
    from extract.faces.base import blank_frames, blank_frames_reference

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (6, 30, 40, 3), dtype=np.uint8)
    frames[1] = 0  # black fill
    frames[2] = 77  # grey fill
    frames[3] = 5
    frames[3, 29, 39, 2] = 6  # constant except one value the sparse sample skips
    frames[4] = 9
    frames[4, 0, 0, 0] = 10  # differs on a sampled value
    expected = blank_frames_reference(frames)
    np.testing.assert_array_equal(expected, [False, True, True, False, False, False])
    for stride in (1, 7, 97, 10_000):
        np.testing.assert_array_equal(blank_frames(frames, stride), expected)
