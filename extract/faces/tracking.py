"""One face per track over time: which detection is the track's face, and its box between detections.

Aff-Wild2 splits two-person videos into `_left` and `_right` tracks, so with
several faces the track's side decides: the leftmost face (smallest box centre x)
for "left", the rightmost for "right"; a face lying wholly beyond the track's
last box on the other person's side is the other person, never the track's (so
a frame where only the other face is found loses the face rather than jumping);
before the track has a box, a lone face in the other half of the frame is taken
for the other person too. A track without a side follows the face
that overlaps its previous box most, else the largest one. The detector may run
every k frames only; between detections the last box is carried. Consecutive
detections of the same face are smoothed by an exponential moving average, so
the crop does not jitter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIDES = ("left", "right", "none")


@dataclass(frozen=True)
class TrackerConfig:
    detect_every: int = 1  # run the detector on every k-th frame, carry the box in between
    smoothing: float = 0.6  # weight of a new detection in the box average (1.0 = no smoothing)
    same_face_iou: float = 0.3  # a detection overlapping the last box this much is the same face

    def __post_init__(self) -> None:
        if self.detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {self.detect_every}")
        if not 0.0 < self.smoothing <= 1.0:
            raise ValueError(f"smoothing must be in (0, 1], got {self.smoothing}")


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a (4,) against b (k, 4) -> (k,)."""
    x0 = np.maximum(a[0], b[:, 0])
    y0 = np.maximum(a[1], b[:, 1])
    x1 = np.minimum(a[2], b[:, 2])
    y1 = np.minimum(a[3], b[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def choose_face(
    boxes: np.ndarray,
    side: str,
    previous: np.ndarray | None,
    last: np.ndarray | None = None,
    frame_w: float | None = None,
) -> np.ndarray | None:
    """Pick the track's face among (k, 4) boxes -> (4,) or None (k == 0, or only the other person).

    `previous` is the current box (None when lost); `last` the last box the track had;
    `frame_w` the frame width (for a lone face before the track has a box)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    last = previous if last is None else last
    if last is not None and side == "left":
        boxes = boxes[boxes[:, 0] < last[2]]  # not wholly right of the track's face
    elif last is not None and side == "right":
        boxes = boxes[boxes[:, 2] > last[0]]  # not wholly left of it
    elif last is None and frame_w and side in ("left", "right") and len(boxes) == 1:
        centre = (boxes[0, 0] + boxes[0, 2]) / 2
        # a lone face wholly on the other half is the other person's; a centred one (an aligned
        # crop's whole-image box) is this track's, whichever its side
        other_half = centre > frame_w / 2 if side == "left" else centre < frame_w / 2
        if other_half:
            return None
    if len(boxes) == 0:
        return None
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
    if side == "left":
        return boxes[int(np.argmin(centre_x))]
    if side == "right":
        return boxes[int(np.argmax(centre_x))]
    if previous is not None:
        iou = box_iou(previous, boxes)
        if iou.max() > 0:
            return boxes[int(np.argmax(iou))]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return boxes[int(np.argmax(area))]


class FaceTracker:
    """The state of one track: frame counter, side, current (smoothed) box."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self.reset()

    def reset(self, side: str = "none") -> None:
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {side!r}")
        self.side = side
        self.current: np.ndarray | None = None  # (4,) float32 or None when the face is lost
        self.last: np.ndarray | None = None  # the last box the track had, kept when lost
        self._count = 0  # frames seen in this track

    def due(self, n: int) -> np.ndarray:
        """(n,) bool: which of the next n frames run the detector; advances the counter."""
        idx = self._count + np.arange(n)
        self._count += n
        return idx % self.config.detect_every == 0

    def lose(self) -> None:
        self.current = None
        return None

    def update(self, boxes: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray | None:
        """Take one frame's detections (k, 4); returns the track's box (4,) or None (lost)."""
        h, w = frame_hw
        chosen = choose_face(boxes, self.side, self.current, self.last, frame_w=w)
        if chosen is None:
            return self.lose()
        chosen = np.clip(chosen, [0, 0, 0, 0], [w, h, w, h])
        if chosen[2] - chosen[0] < 1 or chosen[3] - chosen[1] < 1:
            return self.lose()
        prev = self.current
        if prev is not None and box_iou(prev, chosen[None])[0] >= self.config.same_face_iou:
            a = self.config.smoothing
            chosen = a * chosen + (1 - a) * prev
        self.current = chosen.astype(np.float32)
        self.last = self.current
        return self.current
