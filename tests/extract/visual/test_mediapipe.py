"""The `mediapipe` backend: its 468 -> 68 table always; the FaceMesh run only where MediaPipe is."""

from __future__ import annotations

import numpy as np
import pytest

from extract.faces.mediapipe_mesh import MESH_TO_68, mesh_to_68


def test_index_table_is_a_valid_selection():
    assert MESH_TO_68.shape == (68,)
    assert len(set(MESH_TO_68.tolist())) == 68
    assert MESH_TO_68.min() >= 0 and MESH_TO_68.max() < 468
    mesh = np.stack([np.arange(478), -np.arange(478)], axis=1).astype(
        np.float32
    )  # (478, 2) tasks API
    lm = mesh_to_68(np.stack([mesh, mesh]))
    assert lm.shape == (2, 68, 2)
    np.testing.assert_array_equal(lm[0, :, 0], MESH_TO_68)
    # midline points of the mesh (chin, nose bridge, lip centres) sit on the 68-point midline
    for i68 in (8, 27, 28, 29, 30, 33, 51, 57, 62, 66):
        assert MESH_TO_68[i68] in (152, 168, 197, 5, 4, 2, 0, 17, 13, 14)


def test_mediapipe_backend_runs_without_faces():
    mp = pytest.importorskip("mediapipe")
    if not hasattr(mp, "solutions"):
        pytest.skip("this mediapipe has no bundled FaceMesh (needs <=0.10.21)")
    from extract.faces import get_landmark_backend

    backend = get_landmark_backend("mediapipe")
    backend.reset("left")
    frames = np.zeros((3, 64, 64, 3), np.uint8)
    frames[1] = np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None]
    faces = backend(frames)
    assert faces.landmarks.shape == (3, 68, 2)
    assert not faces.valid.any()


def test_mediapipe_finds_a_real_face_and_follows_the_side():
    mp = pytest.importorskip("mediapipe")
    if not hasattr(mp, "solutions"):
        pytest.skip("this mediapipe has no bundled FaceMesh (needs <=0.10.21)")
    import os

    import cv2

    skimage_dir = os.path.dirname(pytest.importorskip("skimage").__file__)
    path = os.path.join(skimage_dir, "data", "astronaut.png")
    if not os.path.isfile(path):
        pytest.skip("scikit-image's astronaut photo is not installed")
    from data_manifest.face_shape import anchor_points
    from extract.faces import get_landmark_backend

    face = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)[40:300, 100:400]  # (260, 300, 3)
    backend = get_landmark_backend("mediapipe")
    backend.reset("none")
    faces = backend(np.stack([face] * 3))
    assert faces.valid.all()
    lm, box = faces.landmarks, faces.box
    assert (lm >= box[:, None, :2] - 1e-3).all() and (lm <= box[:, None, 2:] + 1e-3).all()
    right_eye, left_eye, mouth = anchor_points(lm[0])
    assert right_eye[0] < left_eye[0] < 300  # the subject's right eye is on the image's left
    assert mouth[1] > max(right_eye[1], left_eye[1]) + 20
    two = np.ascontiguousarray(np.concatenate([face, face[:, ::-1]], axis=1))  # (260, 600, 3)
    for side, in_left_half in (("left", True), ("right", False)):
        backend.reset(side)
        faces = backend(np.stack([two] * 2))
        assert faces.valid.all()
        assert (((faces.box[:, 0] + faces.box[:, 2]) / 2 < 300) == in_left_half).all()
