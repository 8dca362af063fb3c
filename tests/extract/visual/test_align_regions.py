"""Alignment to the canonical crop, and the AU regions built on crop landmarks."""

from __future__ import annotations

import numpy as np
import pytest

from data_manifest.aus import AUS
from data_manifest.face_shape import MEAN_SHAPE_68, anchor_points
from extract.align import canonical_anchors, crop_affine, invert_affine, map_points, warp_crops
from extract.regions import (
    REGION_AUS,
    REGION_SPECS,
    REGION_VERSION,
    REGIONS,
    draw_regions,
    mean_face_image,
    region_boxes,
)


def _similar(
    points: np.ndarray, angle: float, scale: float, shift: tuple[float, float]
) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]]) * scale
    return (points @ rot.T + np.array(shift)).astype(np.float32)


def test_affine_maps_anchors_to_canonical_spots():
    crop = 112
    faces = np.stack(
        [
            _similar(MEAN_SHAPE_68 * 200, 0.0, 1.0, (30, 40)),
            _similar(MEAN_SHAPE_68 * 80, 0.4, 1.3, (300, 10)),
            _similar(MEAN_SHAPE_68 * 150, -0.9, 0.7, (-20, 90)),
        ]
    )  # (3, 68, 2) source pixels
    affines = crop_affine(faces, crop)
    assert affines.shape == (3, 2, 3) and affines.dtype == np.float32
    mapped = map_points(anchor_points(faces), affines)  # (3, 3, 2)
    np.testing.assert_allclose(
        mapped, np.broadcast_to(canonical_anchors(crop), mapped.shape), atol=1e-3
    )
    # a similarity of the mean shape maps every landmark onto the mean shape in the crop
    np.testing.assert_allclose(
        map_points(faces, affines), np.broadcast_to(MEAN_SHAPE_68 * crop, (3, 68, 2)), atol=1e-2
    )
    back = map_points(map_points(faces, affines), invert_affine(affines))
    np.testing.assert_allclose(back, faces, atol=1e-2)


def test_degenerate_landmarks_give_zero_affine_and_black_crop():
    affines = crop_affine(np.zeros((2, 68, 2), np.float32), 32)
    assert not affines.any()
    crops = warp_crops(np.full((2, 40, 40, 3), 200, np.uint8), affines, 32)
    assert crops.shape == (2, 32, 32, 3) and not crops.any()
    with pytest.raises(ValueError, match="68, 2"):
        crop_affine(np.zeros((2, 5, 2)), 32)


def test_warp_recovers_the_face_from_a_larger_frame():
    face, lm = mean_face_image(64)  # (64, 64, 3), landmarks in its pixels
    frame = np.zeros((120, 160, 3), np.uint8)
    frame[30:94, 50:114] = face
    affines = crop_affine((lm + np.array([50, 30], np.float32))[None], 64)
    crops = warp_crops(frame[None], affines, 64)
    assert crops.shape == (1, 64, 64, 3) and crops.dtype == np.uint8
    diff = np.abs(crops[0].astype(int) - face.astype(int)).mean()
    assert diff < 3.0


def test_regions_in_unit_square_and_non_degenerate():
    rng = np.random.default_rng(0)
    crop = 112
    lm = np.stack([MEAN_SHAPE_68 * crop + rng.normal(0, 2, (68, 2)) for _ in range(5)])
    lm[4] = MEAN_SHAPE_68 * crop * 1.4 - 20  # a face spilling over the crop edge
    boxes = region_boxes(lm, crop)
    assert boxes.shape == (5, len(REGIONS), 4) and boxes.dtype == np.float32
    assert (boxes >= 0).all() and (boxes <= 1).all()
    width, height = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    assert (width > 0.05).all() and (height > 0.05).all()
    # each region holds its own seed landmarks (for the unclipped faces)
    unit = lm / crop
    for r, spec in enumerate(REGION_SPECS):
        pts = unit[:4, list(spec.points)]
        assert (pts >= boxes[:4, r, None, :2] - 1e-6).all() and (
            pts <= boxes[:4, r, None, 2:] + 1e-6
        ).all()
    # the subject's right brow is on the image's left
    right, left = REGIONS.index("inner_brow_r"), REGIONS.index("inner_brow_l")
    assert boxes[0, right, 0] < boxes[0, left, 0]


def test_region_table_covers_every_au():
    assert set(REGIONS) == set(REGION_AUS)
    assert set().union(*REGION_AUS.values()) == set(AUS)
    for required in (
        "inner_brow_r",
        "inner_brow_l",
        "outer_brow_r",
        "outer_brow_l",
        "glabella",
        "upper_lid_r",
        "upper_lid_l",
        "cheek_r",
        "cheek_l",
        "nose_bridge",
        "upper_lip",
        "lip_corner_r",
        "lip_corner_l",
        "lower_lip_chin",
        "mouth",
        "jaw",
    ):
        assert required in REGIONS
    assert isinstance(REGION_VERSION, int)


def test_draw_regions_writes_png(tmp_path):
    import cv2

    image, lm = mean_face_image(128)
    out = draw_regions(image, lm, tmp_path / "sub" / "regions.png")
    drawn = cv2.imread(out)
    assert drawn is not None and drawn.shape[0] >= 128
