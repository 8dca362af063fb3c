"""`s3fd` detector: face-alignment's S3FD network run on a whole batch of frames at once.

The fast path for full frames on a GPU: frames go to the device as uint8, are
shrunk there to `max_side` (anti-aliased), and one forward pass covers the
batch. The network's six score/offset maps are decoded on the device for every
frame together; only the candidates above the score threshold leave it, and
non-maximum suppression runs per frame on those few.

`reference_detect` is the plain path beside it: face-alignment's own
`batch_detect` (every position above 0.05, decoded one by one in Python) and
its per-frame suppression and threshold. Both keep the same boxes: greedy
suppression in falling score order never lets a box below the threshold remove
one above it, so thresholding first changes nothing; a test holds them equal.

Weights: face-alignment's `s3fd-619a316812.pth` in the torch hub cache
($TORCH_HOME/hub/checkpoints), downloaded by torch on first use where there is a
network; without one the error names the file and its URL. The box is the
detector's own (what FAN's crop expects); the mean-shape box the `template`
backend uses is the same box, uncalibrated (no S3FD weights were at hand to
fit one; `extract.faces.hog` shows how a calibration is fitted).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlparse

import numpy as np

from extract.faces.detectors import (
    BoxCalibration,
    Detections,
    register_face_detector,
    scale_to_max_side,
)

BGR_MEAN = (104.0, 117.0, 123.0)  # S3FD's input mean, BGR order, 0..255
VARIANCES = (0.1, 0.2)  # S3FD's box offset variances (centre, size)
NMS_IOU = 0.3  # face-alignment's suppression overlap
S3FD_TO_SHAPE_BOX = BoxCalibration()  # uncalibrated: see the module docstring


def s3fd_weights() -> tuple[str, str]:
    """(file name, URL) of the S3FD weights per the installed face-alignment."""
    from face_alignment.detection.sfd import sfd_detector

    url = sfd_detector.models_urls["s3fd"]
    return os.path.basename(urlparse(url).path), url


def load_s3fd(device: str, allow_download: bool = True):
    """face-alignment's S3FD network with its weights, in eval mode on `device`."""
    import torch

    from extract.faces.fan import FanWeightsMissing, _missing_message, checkpoints_dir

    try:
        from face_alignment.detection.sfd.net_s3fd import s3fd
    except ImportError as exc:
        raise ImportError(
            "the s3fd detector needs face-alignment: pip install face-alignment"
        ) from exc
    name, url = s3fd_weights()
    path = os.path.join(checkpoints_dir(), name)
    if not os.path.isfile(path):
        if not allow_download:
            raise FanWeightsMissing(_missing_message([(name, url)]))
        try:
            torch.hub.load_state_dict_from_url(url, progress=False)
        except OSError as exc:  # URLError and friends: no network for the download
            raise FanWeightsMissing(_missing_message([(name, url)])) from exc
    net = s3fd()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.to(device).eval()


def suppress(dets: np.ndarray, iou: float = NMS_IOU) -> np.ndarray:
    """Greedy non-maximum suppression as face-alignment does it: dets (k, 5) -> kept (j, 5)."""
    from face_alignment.detection.sfd.bbox import nms

    if len(dets) == 0:
        return dets.reshape(0, 5)
    return dets[np.asarray(nms(dets, iou), np.int64)]


class S3fdDetector:
    """S3FD over a batch of frames; boxes (k, 4) in source pixels, scores (k,)."""

    name = "s3fd"
    calibration = S3FD_TO_SHAPE_BOX

    def __init__(
        self,
        device: str = "cpu",
        net: Any = None,
        max_side: int | None = 640,
        threshold: float = 0.5,
        batch_size: int = 16,
        allow_download: bool = True,
    ) -> None:
        import torch

        self._torch = torch
        self.device = str(device)
        self.net = net if net is not None else load_s3fd(self.device, allow_download)
        self.max_side = max_side  # longer frame side the network sees (None: full frame)
        self.threshold = float(threshold)  # face score a box needs (face-alignment's 0.5)
        self.batch_size = int(batch_size)  # frames per forward pass

    def fingerprint_fields(self) -> dict[str, Any]:
        return {
            "detector": self.name,
            "weights": s3fd_weights()[0],
            "max_side": self.max_side,
            "threshold": self.threshold,
            "shape_box": self.calibration.as_list(),
        }

    def _input(self, frames: np.ndarray) -> tuple[Any, float]:
        """uint8 (B, H, W, 3) RGB -> float (B, 3, h, w) BGR minus mean on the device, and the scale."""
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        x = x.permute(0, 3, 1, 2).float()  # (B, 3, H, W) RGB 0..255
        s = scale_to_max_side(frames.shape[1:3], self.max_side)
        if s < 1.0:
            size = (max(1, round(frames.shape[1] * s)), max(1, round(frames.shape[2] * s)))
            x = torch.nn.functional.interpolate(
                x, size=size, mode="bilinear", antialias=True, align_corners=False
            )
        mean = torch.tensor(BGR_MEAN, device=x.device).view(1, 3, 1, 1)
        return x.flip(1) - mean, s  # (B, 3, h, w) BGR

    def _decode(self, maps: list[Any]) -> list[np.ndarray]:
        """The network's 12 maps for B frames -> per frame (k, 5) x0, y0, x1, y1, score above threshold."""
        torch = self._torch
        per_level = []
        for level in range(len(maps) // 2):
            cls, reg = maps[2 * level], maps[2 * level + 1]  # (B, 2, h, w), (B, 4, h, w)
            score = torch.softmax(cls, dim=1)[:, 1]  # (B, h, w)
            b, y, x = torch.nonzero(score > self.threshold, as_tuple=True)  # (c,) each
            stride = 2 ** (level + 2)
            prior_c = torch.stack([x, y], dim=1).float() * stride + stride / 2  # (c, 2)
            loc = reg[b, :, y, x]  # (c, 4)
            centre = prior_c + loc[:, :2] * VARIANCES[0] * (4 * stride)
            size = (4 * stride) * torch.exp(loc[:, 2:] * VARIANCES[1])  # (c, 2)
            x0y0 = centre - size / 2
            boxes = torch.cat([x0y0, x0y0 + size, score[b, y, x][:, None]], dim=1)  # (c, 5)
            per_level.append((b, boxes))
        n = maps[0].shape[0]
        frame_of = torch.cat([b for b, _ in per_level]).cpu().numpy()  # (C,)
        boxes = torch.cat([d for _, d in per_level]).double().cpu().numpy()  # (C, 5)
        return [boxes[frame_of == i] for i in range(n)]

    def detect_raw(self, frames: np.ndarray) -> list[np.ndarray]:
        """frames (m, H, W, 3) -> per frame (k, 5) boxes in source pixels and scores, suppressed."""
        torch = self._torch
        out: list[np.ndarray] = []
        for lo in range(0, len(frames), self.batch_size):
            x, s = self._input(frames[lo : lo + self.batch_size])
            with torch.inference_mode():
                maps = self.net(x)
            for dets in self._decode(maps):
                dets = suppress(dets)
                dets[:, :4] /= s
                out.append(dets)
        return out

    def reference_detect(self, frames: np.ndarray) -> list[np.ndarray]:
        """face-alignment's own batch path (slow); same output as `detect_raw`."""
        from face_alignment.detection.sfd.detect import batch_detect

        torch = self._torch
        out: list[np.ndarray] = []
        for lo in range(0, len(frames), self.batch_size):
            chunk = frames[lo : lo + self.batch_size]
            x, s = self._input(chunk)
            rgb = x + torch.tensor(BGR_MEAN, device=x.device).view(1, 3, 1, 1)
            found = batch_detect(self.net, rgb.flip(1), device=self.device)  # (B, N, 5)
            for i in range(len(chunk)):
                dets = np.asarray(found[i], np.float64).reshape(-1, 5)
                dets = suppress(dets)
                dets = dets[dets[:, 4] > self.threshold]
                dets[:, :4] /= s
                out.append(dets)
        return out

    def __call__(self, frames: np.ndarray) -> list[Detections]:
        return [
            Detections.from_boxes(d[:, :4], self.calibration, d[:, 4])
            for d in self.detect_raw(frames)
        ]


@register_face_detector("s3fd")
def build_s3fd(device: str = "cpu", **kwargs: Any) -> S3fdDetector:
    return S3fdDetector(device=device, **kwargs)
