"""Batched S3FD with random weights: the vectorised decode agrees with face-alignment's own path,
the due frames of a batch go through one forward pass, and the boxes and landmarks are kept
straight. Random weights find nothing real: recall is not tested here."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("face_alignment")

from extract.faces import get_landmark_backend  # noqa: E402
from extract.faces.detectors import get_face_detector  # noqa: E402
from extract.faces.fan import FanWeightsMissing, checkpoints_dir  # noqa: E402
from extract.faces.s3fd import S3fdDetector, s3fd_weights  # noqa: E402


@pytest.fixture(scope="module")
def random_net():
    import torch
    from face_alignment.detection.sfd.net_s3fd import s3fd

    torch.manual_seed(0)
    return s3fd().eval()


@pytest.fixture
def frames() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (5, 72, 96, 3), dtype=np.uint8)  # (m, H, W, 3)


@pytest.mark.parametrize("max_side", [None, 64])
def test_vectorised_decode_agrees_with_the_library(random_net, frames, max_side):
    det = S3fdDetector(net=random_net, max_side=max_side, batch_size=3, threshold=0.5)
    fast = det.detect_raw(frames)
    ref = det.reference_detect(frames)
    assert len(fast) == len(ref) == len(frames)
    assert sum(len(d) for d in ref) > 0  # random weights score some boxes above 0.5
    for a, b in zip(fast, ref):
        assert a.shape == b.shape
        # both in falling score order (suppression keeps it), scores distinct under random weights
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-2)


def test_frames_are_shrunk_on_the_device_and_boxes_mapped_back(random_net, frames):
    det = S3fdDetector(net=random_net, max_side=64)
    x, s = det._input(frames)
    assert tuple(x.shape) == (5, 3, 48, 64) and s == pytest.approx(64 / 96)
    for found in det(frames):  # boxes in source pixels: divided by the shrink factor
        assert found.shape_boxes.shape == found.boxes.shape and found.scores.shape == (len(found),)
        assert (found.boxes[:, 2] > found.boxes[:, 0]).all()


def test_template_s3fd_batches_the_due_frames(random_net, frames):
    """detect_every 2: one forward pass per batch over its due frames; boxes carried between."""
    backend = get_landmark_backend("template:s3fd", detect_every=2)
    backend._detector = S3fdDetector(net=random_net, max_side=None, batch_size=16)
    passes = []
    hook = random_net.register_forward_hook(lambda m, inp, out: passes.append(inp[0].shape[0]))
    try:
        backend.reset("none", track="t")
        frames = frames.copy()
        frames[2] = 0  # blank: no face, never detected
        first = backend(frames)  # frames 0..4, due 0, 2, 4 (2 blank)
        second = backend(frames[:3])  # frames 5..7, due 6
    finally:
        hook.remove()
    assert passes == [2, 1]
    assert not first.valid[2] and not first.detected[2]
    assert not first.detected[[1, 3]].any()  # carried, not detected
    for faces in (first, second):
        v = faces.valid
        assert (faces.detected <= v).all()
        lm, box = faces.landmarks[v], faces.box[v]
        assert (lm >= box[:, None, :2] - 1e-3).all() and (lm <= box[:, None, 2:] + 1e-3).all()
        assert not faces.landmarks[~v].any() and not faces.box[~v].any()
    rate = backend.end_track()
    assert rate.frames == 8 and rate.faces == first.valid.sum() + second.valid.sum()
    assert rate.detector_frames == 3
    fields = backend.fingerprint_fields()
    assert fields["detector"] == "s3fd" and fields["weights"] == s3fd_weights()[0]


def test_weights_load_from_the_hub_cache_or_the_error_names_them(random_net, tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    name, url = s3fd_weights()
    with pytest.raises(FanWeightsMissing, match=name) as info:
        get_face_detector("s3fd", allow_download=False)
    assert url in str(info.value)
    os.makedirs(checkpoints_dir())
    torch.save(random_net.state_dict(), os.path.join(checkpoints_dir(), name))
    det = get_face_detector("s3fd", allow_download=False, max_side=None)
    frames = np.random.default_rng(2).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    ref = S3fdDetector(net=random_net, max_side=None)
    for a, b in zip(det.detect_raw(frames), ref.detect_raw(frames)):
        np.testing.assert_allclose(a, b)


@pytest.mark.gpu
def test_batched_s3fd_on_cuda_agrees_with_the_cpu(random_net, frames):
    import copy

    import torch

    torch.backends.cudnn.allow_tf32 = False  # float32 convolutions, as on the CPU
    cpu = S3fdDetector(net=random_net, max_side=64).detect_raw(frames)
    gpu_net = copy.deepcopy(random_net).to("cuda")
    gpu = S3fdDetector(device="cuda", net=gpu_net, max_side=64).detect_raw(frames)
    for a, b in zip(gpu, cpu):  # random scores sit near 0.5: compare the clearly kept boxes
        a, b = a[a[:, 4] > 0.55], b[b[:, 4] > 0.55]
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=0.05)
