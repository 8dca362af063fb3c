"""The classical encoder: FHOG (fast path vs plain loop), landmark geometry, region HOG, and an
extraction through `auwild-extract run --visual classical` into a real store."""

from __future__ import annotations

import re

import numpy as np
import pytest

from data_manifest.face_shape import MEAN_SHAPE_68
from extract.encoders.classical import ClassicalEncoder, sample_regions
from extract.encoders.fhog import fhog, fhog_reference
from extract.encoders.landmark_geometry import MEASURE_NAMES, N_GEOMETRY, landmark_geometry
from extract.regions import N_REGIONS, region_boxes_unit
from tests.extract.visual.conftest import synth_manifest


def _face_landmarks(n: int = 4, seed: int = 0) -> np.ndarray:
    """(n, 68, 2) mean-shape landmarks in [0, 1] crop units, slightly jittered."""
    rng = np.random.default_rng(seed)
    return (MEAN_SHAPE_68[None] + rng.normal(0, 0.004, (n, 68, 2))).astype(np.float64)


# ---- FHOG ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(2, 40, 48), (1, 35, 29), (1, 24, 24)])
def test_fhog_matches_the_plain_loop(shape):
    rng = np.random.default_rng(sum(shape))
    images = rng.random(shape)
    images[0, 5:20, 3:30] += 0.8  # an edge-bearing block on top of the noise
    fast, plain = fhog(images), fhog_reference(images)
    assert fast.shape == plain.shape == (shape[0], shape[1] // 8 - 2, shape[2] // 8 - 2, 31)
    np.testing.assert_allclose(fast, plain, atol=1e-6)
    assert fast.max() > 0.1


def test_fhog_of_a_face_crop_has_openface_size_and_sees_edge_direction():
    assert fhog(np.zeros((1, 112, 112))).shape == (1, 12, 12, 31)
    assert not fhog(np.full((1, 112, 112), 0.5)).any()  # no gradient, no features
    img = np.zeros((1, 48, 48))
    img[:, :, 24:] = 1.0  # a vertical edge: horizontal gradient, orientation 0
    cells = fhog(img)[0]  # (4, 4, 31)
    at_edge = cells[:, 2]  # cell column 3 holds the edge (x 24 lies in cell 3: pixels 24-31)
    assert (at_edge[:, 0] > 0).all() and (at_edge[:, 1:9] == 0).all()  # sensitive bin 0 only
    assert (at_edge[:, 18] > 0).all() and (at_edge[:, 19:27] == 0).all()  # insensitive bin 0
    assert not cells[:, 0].any()  # the flat cells far from the edge


def test_fhog_insensitive_bins_ignore_edge_polarity():
    """A horizontal edge (the brows, lids and lips are mostly horizontal) dark-over-light and
    light-over-dark: the same contrast-insensitive features, opposite sensitive bins."""
    img = np.zeros((1, 48, 48))
    img[:, 24:, :] = 1.0  # gradient points down (90 degrees)
    down, up = fhog(img)[0], fhog(1.0 - img)[0]  # (4, 4, 31)
    np.testing.assert_array_equal(down[..., 18:], up[..., 18:])
    assert down[2, :, 4].min() > 0 and up[2, :, 13].min() > 0  # 80 and 260 degrees
    np.testing.assert_array_equal(fhog_reference(1.0 - img), fhog(1.0 - img))


# ---- geometry -----------------------------------------------------------------------------------
def test_geometry_ignores_translation_scale_and_keeps_dimension():
    lm = _face_landmarks()
    geo = landmark_geometry(lm)
    assert geo.shape == (4, N_GEOMETRY) == (4, 136 + len(MEASURE_NAMES))
    moved = landmark_geometry(lm * 3.7 + np.array([120.0, -40.0]))
    np.testing.assert_allclose(moved, geo, atol=1e-5)


def test_geometry_measures_ignore_in_plane_rotation():
    lm = _face_landmarks()
    a = np.deg2rad(20)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    turned = landmark_geometry(lm @ rot.T)
    np.testing.assert_allclose(turned[:, 136:], landmark_geometry(lm)[:, 136:], atol=1e-5)


def test_geometry_follows_mouth_and_brows():
    lm = _face_landmarks(1)
    open_mouth = lm.copy()
    open_mouth[:, [56, 57, 58, 65, 66, 67, 5, 6, 7, 8, 9, 10, 11], 1] += 0.05  # jaw drops
    raised = lm.copy()
    raised[:, 17:27, 1] -= 0.03  # brows up
    idx = {name: 136 + i for i, name in enumerate(MEASURE_NAMES)}
    base, mouth, brow = (landmark_geometry(x)[0] for x in (lm, open_mouth, raised))
    assert mouth[idx["mouth_open_inner"]] > base[idx["mouth_open_inner"]] + 0.05
    assert brow[idx["brow_inner_r"]] > base[idx["brow_inner_r"]] + 0.05
    assert brow[idx["brow_eye_l"]] > base[idx["brow_eye_l"]] + 0.05
    assert mouth[idx["brow_inner_r"]] == pytest.approx(base[idx["brow_inner_r"]])


def test_geometry_of_a_degenerate_shape_is_zero_not_nan():
    geo = landmark_geometry(np.zeros((2, 68, 2)))
    assert np.isfinite(geo).all() and not geo.any()


# ---- regions ------------------------------------------------------------------------------------
def test_region_hog_sees_an_edge_only_in_the_region_that_holds_it():
    size = 112
    lm = _face_landmarks(1)
    rois = region_boxes_unit(lm)  # (1, R, 4)
    target = 0  # inner_brow_r
    x0, y0, x1, y1 = rois[0, target] * size
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = 0.12 * min(x1 - x0, y1 - y0)
    sq = (int(cx - half), int(cy - half), int(cx + half) + 1, int(cy + half) + 1)
    crop = np.full((1, size, size, 3), 128, np.uint8)
    crop[0, sq[1] : sq[3], sq[0] : sq[2]] = 250  # a bright square: edges on four sides
    out = ClassicalEncoder().encode(crop, rois=rois, landmarks=lm)
    regions = out["regions"][0]  # (R, 124)
    assert regions.shape == (N_REGIONS, 124)
    assert regions[target].max() > 0.1
    px = rois[0] * size  # (R, 4)
    touches = (
        (px[:, 0] - 2 < sq[2])
        & (px[:, 2] + 2 > sq[0])
        & (px[:, 1] - 2 < sq[3])
        & (px[:, 3] + 2 > sq[1])
    )
    others = [r for r in range(N_REGIONS) if not touches[r]]
    assert len(others) >= 10
    assert not regions[others].any()


def test_region_sampling_reads_the_box():
    img = np.tile(np.arange(64, dtype=np.float32), (1, 64, 1))  # value = x
    boxes = np.array([[[0.25, 0.0, 0.75, 1.0], [0.0, 0.0, 1.0, 0.5]]])  # (1, 2, 4)
    patch = sample_regions(img, boxes, 32)  # (1, 2, 32, 32)
    np.testing.assert_allclose(patch[0, 0, 0], 16 + np.arange(32), atol=1e-4)  # pixels 16-47
    np.testing.assert_allclose(patch[0, 1, 5], 2 * np.arange(32) + 0.5, atol=1e-4)  # 2:1 means
    assert patch.dtype == np.float32


# ---- the encoder --------------------------------------------------------------------------------
def test_encoder_numpy_and_reference_agree_and_shapes_match_outputs():
    rng = np.random.default_rng(3)
    lm = _face_landmarks(2)
    rois = region_boxes_unit(lm)
    crops = rng.integers(0, 256, (2, 56, 56, 3), dtype=np.uint8)
    fast = ClassicalEncoder().encode(crops, rois=rois, landmarks=lm)
    plain = ClassicalEncoder(impl="reference").encode(crops, rois=rois, landmarks=lm)
    enc = ClassicalEncoder()
    assert enc.outputs == {"cls": (4464,), "regions": (N_REGIONS, 124), "geometry": (157,)}
    for key, shape in enc.outputs.items():
        assert fast[key].shape == (2, *shape) and fast[key].dtype == np.float32
        np.testing.assert_allclose(fast[key], plain[key], atol=1e-6, err_msg=key)


def test_encoder_says_what_it_misses():
    enc = ClassicalEncoder()
    crops = np.zeros((1, 56, 56, 3), np.uint8)
    with pytest.raises(ValueError, match="rois and landmarks"):
        enc.encode(crops)
    with pytest.raises(ValueError, match=r"rois \(n, 16, 4\)"):
        enc.encode(crops, rois=np.zeros((1, 3, 4)), landmarks=np.zeros((1, 68, 2)))


def test_registry_loads_it_without_a_model_and_refuses_one():
    from extract.encoders import known_visual_encoders, load_visual_encoder

    assert "classical" in known_visual_encoders()
    enc = load_visual_encoder("classical", None, device="cpu", layer=None)
    assert enc.needs == ("rois", "landmarks")
    with pytest.raises(ValueError, match="no model source"):
        load_visual_encoder("classical", "facebook/dinov2-base")


def test_job_hands_the_encoder_the_landmarks_and_regions_of_the_frames_with_a_face():
    from extract.job.stages import encode_visual

    lm = _face_landmarks(5, seed=7)
    lm[3] *= 1.2  # frame 3 has a face of its own
    batch = {
        "crops": np.full((5, 56, 56, 3), 100, np.uint8),
        "valid": np.array([True, False, True, True, False]),
        "rois": region_boxes_unit(lm),
        "crop_landmarks": lm.astype(np.float32),
    }
    out = encode_visual(ClassicalEncoder(), batch["crops"], batch["valid"], batch)
    assert out["geometry"].shape == (5, 157) and out["geometry"].dtype == np.float16
    np.testing.assert_allclose(
        out["geometry"][[0, 2, 3]], landmark_geometry(lm[[0, 2, 3]]), atol=3e-3
    )
    assert not out["geometry"][[1, 4]].any() and not out["cls"].any()  # flat crops: no HOG


def test_out_of_memory_retry_splits_the_encoders_inputs_with_the_crops():
    from extract.job.stages import encode_with_oom_retry

    class OutOfMemoryError(RuntimeError):  # the name torch.cuda raises
        pass

    seen = []

    def encode(crops, *, landmarks):
        seen.append(len(crops))
        if len(crops) > 3:
            raise OutOfMemoryError("CUDA out of memory")
        assert len(landmarks) == len(crops)
        return {"cls": crops[:, 0, 0, :1] + landmarks[:, 0, :1]}

    crops = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1)
    landmarks = np.arange(10, dtype=np.float32).reshape(10, 1, 1) * 100
    out = encode_with_oom_retry(encode, crops, {"landmarks": landmarks})
    np.testing.assert_array_equal(out["cls"][:, 0], np.arange(10) * 101)
    assert seen[0] == 10 and 3 in seen


# ---- through the job into a store ---------------------------------------------------------------
@pytest.fixture(scope="module")
def synthetic_manifest(tmp_path_factory):
    return synth_manifest(tmp_path_factory.mktemp("classical"), tracks=2, frames=12, seed=4)


def _run_args(manifest, store, visual="classical"):
    return [
        "run",
        "--manifest",
        str(manifest),
        "--store",
        str(store),
        "--no-progress",
        "--batch-size",
        "5",
        "--crop-size",
        "64",
        "--visual",
        visual,
    ]


def test_extract_run_writes_classical_arrays_into_a_store(
    synthetic_manifest, tmp_path, capsys, caplog, monkeypatch
):
    import extract.job.group_fields as group_fields
    from extract.align import map_points
    from extract.cli import main as extract_main
    from extract.encoders.classical import definition_fields
    from extract.store import StoreReader

    monkeypatch.setattr(group_fields, "_warned_constant_geometry", set())
    store = tmp_path / "classical.zarr"
    assert extract_main(_run_args(synthetic_manifest, store)) == 0
    assert "geometry is the same on every frame" in caplog.text
    reader = StoreReader(str(store))
    assert reader.tracks()
    fingerprints = reader.require_groups(["visual/classical/cls", "face/valid"])
    assert fingerprints["visual/classical"]
    fields = reader.groups["visual/classical"]["fields"]
    assert {k: fields[k] for k in definition_fields()} == definition_fields()
    for tid in reader.tracks():
        n = reader.n_frames(tid)
        valid = reader.read(tid, "face/valid")
        cls = reader.read(tid, "visual/classical/cls")
        regions = reader.read(tid, "visual/classical/regions")
        geometry = reader.read(tid, "visual/classical/geometry")
        assert cls.shape == (n, 4464) and regions.shape == (n, 16, 124)
        assert geometry.shape == (n, 157) and cls.dtype == np.float16
        assert valid.any()
        assert (np.abs(cls[valid]).sum(-1) > 0).all() and not cls[~valid].any()
        assert (np.abs(regions[valid]).sum((-1, -2)) > 0).all()
        # the geometry is that of the stored aligned landmarks: the job handed the right ones
        crop_lm = map_points(reader.read(tid, "face/landmarks"), reader.read(tid, "face/align"))
        expected = landmark_geometry(crop_lm[valid] / 64.0)
        np.testing.assert_allclose(geometry[valid], expected, atol=2e-2, rtol=1e-2)
    # a second run finds nothing to do, with the same fingerprint
    capsys.readouterr()
    assert extract_main(_run_args(synthetic_manifest, store)) == 0
    out = capsys.readouterr().out
    assert re.search(rf"tracks skipped\s+{len(reader.tracks())}\n", out), out
    assert re.search(r"tracks done\s+0\n", out), out
    assert StoreReader(str(store)).require_groups(["visual/classical"]) == {
        "visual/classical": fingerprints["visual/classical"]
    }


def test_extract_run_refuses_a_model_source_for_classical(synthetic_manifest, tmp_path, capsys):
    from extract.cli import main as extract_main

    store = tmp_path / "refused.zarr"
    assert extract_main(_run_args(synthetic_manifest, store, visual="classical=some/model")) == 2
    assert "takes no model source" in capsys.readouterr().err
