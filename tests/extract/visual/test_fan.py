"""The `fan` backend with random weights placed where face-alignment looks for them.

Random weights find nothing meaningful; the test checks the plumbing: the files
the library loads, batched detection and landmarks, shapes, flags, no crash.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("face_alignment")

from extract.faces import FaceBatch, get_landmark_backend  # noqa: E402
from extract.faces.fan import (  # noqa: E402
    FanWeightsMissing,
    checkpoints_dir,
    missing_weights,
    required_weights,
)


@pytest.fixture(scope="module")
def random_fan_weights():
    """Random FAN-4 and S3FD state dicts under $TORCH_HOME/hub/checkpoints (removed afterwards)."""
    import torch
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    folder = checkpoints_dir()
    assert folder.startswith(os.environ["TORCH_HOME"])  # never touch a real cache
    os.makedirs(folder, exist_ok=True)
    torch.manual_seed(0)
    names = dict(required_weights("sfd"))
    fan_name = next(n for n in names if n.startswith("2DFAN"))
    sfd_name = next(n for n in names if n.startswith("s3fd"))
    written = []
    for name, net in ((fan_name, FAN(4)), (sfd_name, s3fd())):
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            torch.save(net.state_dict(), path)
            written.append(path)
    yield folder
    for path in written:
        os.remove(path)


def test_required_weights_name_the_library_files():
    names = [n for n, _ in required_weights("sfd")]
    assert any(n.startswith("s3fd-") and n.endswith(".pth") for n in names)
    assert any(n.startswith("2DFAN4-") for n in names)
    assert len(required_weights("blazeface")) == 3
    with pytest.raises(ValueError, match="detector"):
        required_weights("dlib")


def test_missing_weights_offline_error_names_files(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    assert len(missing_weights("sfd")) == 2
    with pytest.raises(FanWeightsMissing, match=r"s3fd-.*\.pth.*2DFAN4|2DFAN4.*s3fd"):
        get_landmark_backend("fan", allow_download=False)


def test_failed_download_names_files(tmp_path, monkeypatch):
    """Allowed to download but offline: the library's download fails, the error names the files."""
    import urllib.error

    import torch.hub

    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "offline_torch_home"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(FanWeightsMissing, match="s3fd-") as info:
        get_landmark_backend("fan", allow_download=True)
    assert str(tmp_path / "offline_torch_home") in str(info.value)


def test_fan_runs_with_random_weights(random_fan_weights):
    backend = get_landmark_backend("fan", device="cpu", detect_every=2, batch_size=2)
    assert missing_weights("sfd") == []
    backend.reset("left")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (3, 72, 96, 3), dtype=np.uint8)
    frames[1] = 0  # blank: never a face
    faces = backend(frames)
    assert isinstance(faces, FaceBatch) and len(faces) == 3
    assert faces.landmarks.shape == (3, 68, 2) and faces.box.shape == (3, 4)
    assert not faces.valid[1]
    assert np.isfinite(faces.landmarks).all()
    assert not faces.landmarks[~faces.valid].any()
    fields = backend.fingerprint_fields()
    assert fields["landmarks"] == "fan" and fields["detector"] == "sfd"


def test_fan_on_aligned_crops_uses_the_whole_image(random_fan_weights):
    backend = get_landmark_backend("fan", aligned_input=True, batch_size=2)
    backend.reset()
    frames = np.random.default_rng(1).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    faces = backend(frames)
    assert faces.valid.all()
    np.testing.assert_allclose(faces.box, [[0, 0, 64, 64]] * 2)
    assert faces.landmarks.shape == (2, 68, 2) and np.isfinite(faces.landmarks).all()


def _peaked_heatmaps(points: np.ndarray, res: int = 64) -> np.ndarray:
    """(m, K, res, res) Gaussians peaked at integer heatmap pixels points (m, K, 2)."""
    yy, xx = np.mgrid[0:res, 0:res]
    d2 = (xx - points[..., 0, None, None]) ** 2 + (yy - points[..., 1, None, None]) ** 2
    return np.exp(-d2 / 4.0).astype(np.float32)


def test_decode_heatmaps_maps_peaks_through_the_crop():
    from extract.faces.fan import decode_heatmaps

    rng = np.random.default_rng(0)
    peaks = rng.integers(2, 62, (2, 68, 2))
    centres = np.array([[100.0, 80.0], [40.0, 50.0]])
    scales = np.array([1.0, 0.5])
    out = decode_heatmaps(_peaked_heatmaps(peaks), centres, scales)
    size = 200.0 * scales[:, None, None]
    expected = (
        (peaks + 0.5) * size / 64 + centres[:, None, :] - size / 2
    )  # symmetric peak: no shift
    np.testing.assert_allclose(out, expected, atol=1e-4)


@pytest.mark.slow
def test_decode_heatmaps_agrees_with_the_library():
    """The library's compiled decoding rounds to whole pixels; ours agrees within one pixel."""
    from face_alignment.utils import get_preds_fromhm

    from extract.faces.fan import decode_heatmaps

    rng = np.random.default_rng(1)
    hm = _peaked_heatmaps(rng.uniform(3, 60, (1, 68, 2))) + rng.uniform(0, 0.05, (1, 68, 64, 64))
    centre, scale = np.array([120.0, 90.0]), 0.8
    _, ref, _ = get_preds_fromhm(hm.astype(np.float32), centre, scale)
    ours = decode_heatmaps(hm, centre[None], np.array([scale]))
    assert np.abs(ours - ref).max() <= 1.0
