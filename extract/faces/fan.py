"""`fan` backend: face-alignment's face detector (S3FD or BlazeFace) and its 2D FAN, 68 points.

Detection runs batched over the due frames of a batch: S3FD through
extract/faces/s3fd.py (one forward pass, decoded on the device, frames shrunk to
`max_side` first), BlazeFace through the library's `detect_from_batch`. The
landmark network runs batched over the chosen face of every frame of the batch,
using the library's own crop and heatmap decoding, so results match
`FaceAlignment.get_landmarks_from_batch` while using the GPU fully.

Weights come from the torch hub cache ($TORCH_HOME/hub/checkpoints). The library
downloads them on first use; without network, the error names each file to place
there and the URL it comes from.
"""

from __future__ import annotations

import inspect
import os
from typing import Any
from urllib.parse import urlparse

import numpy as np

from extract.faces.base import DetectThenLandmark, register_landmark_backend
from extract.faces.tracking import TrackerConfig

DETECTORS = ("sfd", "blazeface")
ALIASES = {"s3fd": "sfd"}  # the detector registry's name for face-alignment's "sfd"
INSTALL = "pip install face-alignment"


class FanWeightsMissing(RuntimeError):
    """face-alignment weights absent from the torch hub cache and not downloadable."""


def checkpoints_dir() -> str:
    """Where face-alignment (through torch.hub) looks for weight files."""
    import torch

    return os.path.join(torch.hub.get_dir(), "checkpoints")


def required_weights(detector: str) -> list[tuple[str, str]]:
    """(file name, URL) of every file the 2D FAN with this detector loads, per the installed library."""
    detector = ALIASES.get(detector, detector)
    try:
        from face_alignment import api
    except ImportError as exc:
        raise ImportError(f"the fan backend needs face-alignment: {INSTALL}") from exc
    if detector == "sfd":
        from face_alignment.detection.sfd import sfd_detector as det

        urls = [det.models_urls["s3fd"]]
    elif detector == "blazeface":
        from face_alignment.detection.blazeface import blazeface_detector as det

        urls = [det.models_urls["blazeface_weights"], det.models_urls["blazeface_anchors"]]
    else:
        raise ValueError(f"fan detector must be one of {DETECTORS}, got {detector!r}")
    urls.append(api.models_urls["2DFAN-4"])
    return [(os.path.basename(urlparse(url).path), url) for url in urls]


def missing_weights(detector: str) -> list[tuple[str, str]]:
    folder = checkpoints_dir()
    return [
        (n, u) for n, u in required_weights(detector) if not os.path.isfile(os.path.join(folder, n))
    ]


def _missing_message(missing: list[tuple[str, str]]) -> str:
    files = "; ".join(f"{name} (from {url})" for name, url in missing)
    return (
        f"face-alignment weights not found in {checkpoints_dir()} and could not be downloaded. "
        f"Place these files there (TORCH_HOME sets the folder): {files}"
    )


def decode_heatmaps(
    heatmaps: np.ndarray, centres: np.ndarray, scales: np.ndarray, scale_factor: float = 200.0
) -> np.ndarray:
    """FAN heatmaps (m, K, R, R) -> points (m, K, 2) in source pixels, vectorised.

    The peak of each heatmap, moved a quarter pixel towards its higher neighbour,
    then mapped back through the crop (centre, scale) as face-alignment does, but
    without its integer rounding and without per-point compiled loops.
    """
    m, k, res, _ = heatmaps.shape
    flat = heatmaps.reshape(m, k, res * res)
    idx = flat.argmax(axis=-1)  # (m, K)
    x, y = idx % res, idx // res  # (m, K) 0-based peak
    inner = (x > 0) & (x < res - 1) & (y > 0) & (y < res - 1)
    xi, yi = np.clip(x, 1, res - 2), np.clip(y, 1, res - 2)
    mi, ki = np.meshgrid(np.arange(m), np.arange(k), indexing="ij")
    dx = heatmaps[mi, ki, yi, xi + 1] - heatmaps[mi, ki, yi, xi - 1]
    dy = heatmaps[mi, ki, yi + 1, xi] - heatmaps[mi, ki, yi - 1, xi]
    px = x + 0.5 + np.where(inner, 0.25 * np.sign(dx), 0.0)  # heatmap pixels, centre-based
    py = y + 0.5 + np.where(inner, 0.25 * np.sign(dy), 0.0)
    size = (scale_factor * np.asarray(scales, np.float64))[:, None]  # (m, 1) crop side in source px
    cx, cy = np.asarray(centres, np.float64)[:, 0:1], np.asarray(centres, np.float64)[:, 1:2]
    out_x = px * size / res + cx - size / 2
    out_y = py * size / res + cy - size / 2
    return np.stack([out_x, out_y], axis=-1).astype(np.float32)  # (m, K, 2)


class FanLandmarks(DetectThenLandmark):
    """S3FD/BlazeFace boxes (or the whole aligned crop), FAN-4 68-point landmarks; batched."""

    name = "fan"

    def __init__(
        self,
        device: str = "cpu",
        detector: str = "sfd",
        flip_input: bool = False,
        batch_size: int = 32,
        allow_download: bool = True,
        aligned_input: bool = False,
        tracker: TrackerConfig | None = None,
        max_side: int | None = 640,
    ) -> None:
        super().__init__(tracker)
        self.aligned_input = aligned_input
        detector = ALIASES.get(detector, detector)
        if detector not in DETECTORS:
            raise ValueError(f"fan detector must be one of {DETECTORS} or s3fd, got {detector!r}")
        import torch

        try:
            from face_alignment import FaceAlignment, LandmarksType
        except ImportError as exc:
            raise ImportError(f"the fan backend needs face-alignment: {INSTALL}") from exc
        missing = missing_weights(detector)
        if missing and not allow_download:
            raise FanWeightsMissing(_missing_message(missing))
        kwargs: dict[str, Any] = {
            "device": str(device),
            "face_detector": detector,
            "flip_input": flip_input,
        }
        if "compile" in inspect.signature(FaceAlignment.__init__).parameters:
            kwargs["compile"] = False  # no compile warm-up per process; eager is fine batched
        try:
            self.fa = FaceAlignment(LandmarksType.TWO_D, **kwargs)
        except OSError as exc:  # URLError and friends: no network for the download
            raise FanWeightsMissing(_missing_message(missing_weights(detector) or missing)) from exc
        self.device = str(device)
        self.detector = detector
        self.flip_input = flip_input
        self.batch_size = int(batch_size)
        self._torch = torch
        self._s3fd = None
        if detector == "sfd":  # the batched S3FD path on the library's loaded network
            from extract.faces.s3fd import S3fdDetector

            self._s3fd = S3fdDetector(
                device=self.device,
                net=self.fa.face_detector.face_detector,
                max_side=max_side,
                batch_size=self.batch_size,
            )
        self.max_side = max_side if detector == "sfd" else None

    def backend_fields(self) -> dict[str, Any]:
        import face_alignment

        return {
            "detector": "whole-image" if self.aligned_input else self.detector,
            "flip_input": self.flip_input,
            "max_side": None if self.aligned_input else self.max_side,
            "weights": [name for name, _ in required_weights(self.detector)],
            "face_alignment": face_alignment.__version__,
        }

    def detect(self, frames: np.ndarray) -> list[np.ndarray]:
        if self.aligned_input:  # aligned crops: the face is the image; detectors miss such faces
            h, w = frames.shape[1:3]
            return [np.array([[0.0, 0.0, w, h]], np.float32) for _ in range(len(frames))]
        if self._s3fd is not None:
            return [d.boxes for d in self._s3fd(frames)]
        torch = self._torch
        boxes: list[np.ndarray] = []
        for lo in range(0, len(frames), self.batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(frames[lo : lo + self.batch_size]))
            chunk = chunk.permute(0, 3, 1, 2).float().to(self.device)  # (B, 3, H, W) RGB 0..255
            with torch.inference_mode():
                found = self.fa.face_detector.detect_from_batch(chunk)
            for faces in found:
                arr = (
                    np.asarray(faces, np.float32).reshape(-1, 5) if len(faces) else np.zeros((0, 5))
                )
                boxes.append(arr[:, :4])  # drop the score column
        return boxes

    def landmarks(self, frames: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from face_alignment import utils as fa_utils

        torch = self._torch
        ref_scale = float(self.fa.face_detector.reference_scale)
        boxes = boxes.astype(np.float64)  # the library's transforms want float64 / Python floats
        centres = np.stack(
            [(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1
        )  # (m, 2)
        centres[:, 1] -= (boxes[:, 3] - boxes[:, 1]) * fa_utils.CENTER_Y_OFFSET
        scales = ((boxes[:, 2] - boxes[:, 0]) + (boxes[:, 3] - boxes[:, 1])) / ref_scale  # (m,)
        crops = np.stack(
            [fa_utils.crop(f, c, float(s)) for f, c, s in zip(frames, centres, scales)]
        )  # (m, 256, 256, 3)
        heatmaps = []
        net = self.fa.face_alignment_net
        dtype = next(net.parameters()).dtype
        with torch.inference_mode():
            for lo in range(0, len(crops), self.batch_size):
                x = torch.from_numpy(crops[lo : lo + self.batch_size]).to(self.device)
                x = x.permute(0, 3, 1, 2).to(dtype).div_(255.0)  # (B, 3, 256, 256)
                hm = net(x)
                hm = hm[-1] if isinstance(hm, list) else hm  # (B, 68, 64, 64)
                if self.flip_input:
                    flipped = net(fa_utils.flip(x))
                    flipped = flipped[-1] if isinstance(flipped, list) else flipped
                    hm = hm + fa_utils.flip(flipped, is_label=True)
                heatmaps.append(hm.float().cpu().numpy())
        hms = np.concatenate(heatmaps)  # (m, 68, 64, 64)
        lms = decode_heatmaps(hms, centres, scales, fa_utils.SCALE_FACTOR)  # (m, 68, 2)
        ok = np.isfinite(lms).all(axis=(1, 2))
        return np.nan_to_num(lms), ok


@register_landmark_backend("fan")
def build_fan(
    device: str = "cpu",
    aligned_input: bool = False,
    detect_every: int = 1,
    detector: str = "sfd",
    flip_input: bool = False,
    batch_size: int = 32,
    allow_download: bool = True,
    max_side: int | None = 640,
    **tracker_kwargs: Any,
) -> FanLandmarks:
    """2D FAN landmarks; with `aligned_input` the whole crop is the face box (no detection)."""
    return FanLandmarks(
        device=device,
        detector=detector,
        flip_input=flip_input,
        batch_size=batch_size,
        allow_download=allow_download,
        aligned_input=aligned_input,
        max_side=max_side,
        tracker=TrackerConfig(detect_every=detect_every, **tracker_kwargs),
    )
