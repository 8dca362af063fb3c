"""box_iou / region_iou against a plain per-box reference, and the template's own boxes."""

from __future__ import annotations

import numpy as np
import pytest

from bench.region_iou import box_iou, region_iou
from data_manifest.face_shape import MEAN_SHAPE_68
from extract.regions import N_REGIONS, region_boxes_unit


def iou_reference(a, b) -> float:
    """One pair of boxes, written out by hand."""
    ax0, ay0, ax1, ay1 = (float(v) for v in a)
    bx0, by0, bx1, by1 = (float(v) for v in b)
    iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    ih = max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / union if union > 0 else float("nan")


def random_boxes(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    corners = rng.uniform(0.0, 1.0, size=shape + (2, 2))  # (..., 2 corners, xy)
    return np.concatenate([corners.min(axis=-2), corners.max(axis=-2)], axis=-1)  # (..., 4)


def test_region_iou_matches_per_box_reference():
    rng = np.random.default_rng(0)
    template = random_boxes(rng, (N_REGIONS,))  # (R, 4)
    detected = random_boxes(rng, (7, N_REGIONS))  # (n, R, 4)
    detected[0, :4] = template[:4]  # identical boxes
    detected[1, 0] = [0.9, 0.9, 0.95, 0.95]  # disjoint from anything below 0.9
    template[0] = [0.0, 0.0, 0.5, 0.5]
    detected[2, 0] = [0.5, 0.5, 1.0, 1.0]  # touching corners only
    got = region_iou(template, detected)  # (n, R)
    assert got.shape == (7, N_REGIONS)
    for i in range(7):
        for r in range(N_REGIONS):
            assert got[i, r] == pytest.approx(iou_reference(template[r], detected[i, r]), abs=1e-12)
    assert np.all(got[0, 1:4] == 1.0)
    assert got[2, 0] == 0.0


def test_known_values_and_empty_boxes():
    a = np.array([0.0, 0.0, 2.0, 2.0])
    assert box_iou(a, np.array([1.0, 0.0, 3.0, 2.0])) == pytest.approx(2.0 / 6.0)
    assert box_iou(a, np.array([0.5, 0.5, 1.5, 1.5])) == pytest.approx(0.25)
    empty = np.array([0.3, 0.3, 0.3, 0.3])
    assert box_iou(a, empty) == 0.0
    assert np.isnan(box_iou(empty, empty))


def test_template_regions_against_themselves_and_a_shift():
    template = region_boxes_unit(MEAN_SHAPE_68[None])[0]  # (R, 4)
    same = region_iou(template, template[None])
    np.testing.assert_array_equal(same, np.ones((1, N_REGIONS)))
    shifted = region_boxes_unit(MEAN_SHAPE_68[None] + np.array([0.01, 0.0], np.float32))
    iou = region_iou(template, shifted)[0]
    for r in range(N_REGIONS):
        assert iou[r] == pytest.approx(iou_reference(template[r], shifted[0, r]), abs=1e-6)
    assert np.all(iou < 1.0) and np.all(iou > 0.5)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match=r"\(n, R, 4\)"):
        region_iou(np.zeros((N_REGIONS, 4)), np.zeros((N_REGIONS, 4)))
    with pytest.raises(ValueError, match="do not match"):
        region_iou(np.zeros((3, 4)), np.zeros((2, N_REGIONS, 4)))


def test_refit_is_exact_for_identical_faces_and_report_scores_a_synthetic_run(tmp_path):
    from bench.bench_regions import refit_iou, write_report

    crop = 112
    base = MEAN_SHAPE_68 * crop  # (68, 2) crop pixels
    same = np.stack([base, base, base])
    np.testing.assert_allclose(refit_iou(same, crop), 1.0, atol=1e-5)

    shifted = base + np.array([0.0, 3.0], np.float32)  # 3 px down: every region moves
    data = {
        "names": np.array(["astronaut.png#0", "other.jpg#0", "lost.jpg#0"]),
        "crops": np.full((3, crop, crop, 3), 128, np.uint8),
        "mapped": np.stack([base, shifted, base]),
        "detected": np.stack([base, shifted, np.full((68, 2), np.nan, np.float32)]),
        "photo_iod": np.array([40.0, 50.0, 60.0], np.float32),
        "given": shifted[None],
        "given_names": np.array(["vid/00001.jpg"]),
        "mediapipe": np.array("test"),
    }
    out = tmp_path / "regions.md"
    figure = tmp_path / "fig.png"
    text = write_report(data, crop, "cmd", figure, out)
    assert figure.stat().st_size > 0
    assert "2 of 3 faces" in text and "no face on crop" in text
    iou_shifted = region_iou(
        region_boxes_unit(MEAN_SHAPE_68[None])[0], region_boxes_unit(shifted[None] / crop)
    )
    expected = np.mean(np.concatenate([np.ones(N_REGIONS), iou_shifted[0]]))
    assert f"| **all regions** | **{expected:.2f}** |" in text
    assert f"| other.jpg#0 | {iou_shifted.mean():.2f} |" in text
    assert "| astronaut.png#0 | 1.00 |" in text
