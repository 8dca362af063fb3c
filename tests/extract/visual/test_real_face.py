"""A real face (scikit-image's astronaut photo) through video, faces, alignment, regions, encoder."""

from __future__ import annotations

import numpy as np
import pytest

from data_manifest.face_shape import anchor_points
from extract.align import crop_affine, map_points, warp_crops
from extract.faces import FaceBatch, get_landmark_backend
from extract.regions import region_boxes
from extract.video import iter_video_frames, probe_video
from tests.extract.visual.conftest import astronaut_rgb, write_video

# Eye and mouth centres in the face crop below, measured with MediaPipe FaceMesh.
FACEMESH_EYES_Y, FACEMESH_MOUTH_Y, FACEMESH_CENTRE_X = 102.6 - 40, 145.6 - 40, 224.5 - 100


@pytest.fixture(scope="module")
def face_crop() -> np.ndarray:
    return np.ascontiguousarray(astronaut_rgb()[40:300, 100:400])  # (260, 300, 3), one face


def test_video_of_a_face_to_regions_and_features(tmp_path, face_crop, tiny_models):
    frames = np.stack([np.roll(face_crop, 3 * i, axis=1) for i in range(8)])[:, :256, :288]
    path = write_video(str(tmp_path / "face.mp4"), n_frames=8, size=(288, 256), frames=frames)
    backend = get_landmark_backend("template", aligned_input=False, detect_every=2)
    backend.reset("none")
    times, faces, crops = [], [], []
    for t, batch in iter_video_frames(path, batch_size=3):
        found = backend(batch)
        affines = crop_affine(found.landmarks, 56)
        crops.append(warp_crops(batch, affines, 56))
        times.append(t)
        faces.append(found)
    face = FaceBatch.concat(faces)
    assert len(face) == probe_video(path).n_frames == 8 == len(np.concatenate(times))
    assert face.valid.all()
    lm, box = face.landmarks, face.box
    assert (lm >= box[:, None, :2] - 1e-3).all() and (lm <= box[:, None, 2:] + 1e-3).all()
    first = anchor_points(lm[0])  # (3, 2) right eye, left eye, mouth
    size = box[0, 2] - box[0, 0]
    assert abs(first[:2, 1].mean() - FACEMESH_EYES_Y) < 0.1 * size
    assert abs(first[2, 1] - FACEMESH_MOUTH_Y) < 0.1 * size
    assert abs(first[:, 0].mean() - FACEMESH_CENTRE_X) < 0.1 * size
    affines = crop_affine(lm, 56)
    rois = region_boxes(map_points(lm, affines), 56)
    assert (rois >= 0).all() and (rois <= 1).all()
    from extract.encoders import load_visual_encoder

    enc = load_visual_encoder("dinov2", tiny_models["dinov2"])
    feats = enc.encode(np.concatenate(crops))
    assert feats["patch"].shape == (8, 4, 4, 32)


def test_side_chooses_between_two_real_faces(face_crop):
    two = np.concatenate([face_crop, face_crop[:, ::-1]], axis=1)  # (260, 600, 3)
    backend = get_landmark_backend("template")
    for side, in_left_half in (("left", True), ("right", False)):
        backend.reset(side)
        faces = backend(np.stack([two] * 2))
        assert faces.valid.all()
        centre_x = (faces.box[:, 0] + faces.box[:, 2]) / 2
        assert ((centre_x < 300) == in_left_half).all()
