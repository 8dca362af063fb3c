"""How many frames of a track had a face, counted as batches pass, and one warning line when few did.

A detector that finds nothing must not pass silently: a track that ends with no
face, or with one in under half its frames, gets one log line naming the track,
the counts and the detector. Counting is a sum per batch, so it costs nothing
next to detection. The store's `face/valid` holds the same truth per frame.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass

import numpy as np

log = logging.getLogger("auwild.extract.faces")

LOW_FACE_RATE = 0.5  # below this share of frames with a face, a track is reported


@dataclass
class FaceRate:
    """Counts for one track (or one batch)."""

    track: str | None = None  # track id when the caller named it at reset()
    frames: int = 0  # frames seen
    faces: int = 0  # frames with a valid face (found or carried between detections)
    detected: int = 0  # frames where the detector ran and found the track's face
    detector_frames: int = 0  # frames where the detector ran (non-blank, due)

    @property
    def rate(self) -> float:
        """Share of frames with a face (1.0 for an empty track: nothing to report)."""
        return self.faces / self.frames if self.frames else 1.0

    @property
    def low(self) -> bool:
        return self.frames > 0 and self.rate < LOW_FACE_RATE

    def add(self, valid: np.ndarray, detected: np.ndarray, detector_frames: int) -> None:
        self.frames += len(valid)
        self.faces += int(np.count_nonzero(valid))
        self.detected += int(np.count_nonzero(detected))
        self.detector_frames += int(detector_frames)

    def message(self, backend: str) -> str:
        name = self.track or "(track not named at reset)"
        what = "no face in any" if self.faces == 0 else f"a face in only {self.faces}"
        return (
            f"track {name}: {what} of {self.frames} frames ({self.rate:.0%}, landmarks {backend}; "
            f"the detector ran on {self.detector_frames} and found the face on {self.detected})"
        )


class _Open:
    """The track being counted; shared with the finalizer, so it must not hold the counter."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.current = FaceRate()
        self.ended = True  # nothing to report before the first track

    def end(self) -> FaceRate:
        if not self.ended:
            self.ended = True
            if self.current.low:
                log.warning(self.current.message(self.backend))
        return self.current


class FaceRateCounter:
    """The running FaceRate of the current track; `end()` reports it once.

    A track is ended by `end()`, by the next `start()`, or, for the last track of a
    caller that never ends it, when the counter is collected or the process exits."""

    def __init__(self, backend: str) -> None:
        self._open = _Open(backend)
        weakref.finalize(self, _Open.end, self._open)

    @property
    def current(self) -> FaceRate:
        return self._open.current

    def start(self, track: str | None) -> None:
        """A new track begins; an unreported previous one is reported first."""
        self._open.end()
        self._open.current = FaceRate(track=track)
        self._open.ended = False

    def add(self, valid: np.ndarray, detected: np.ndarray, detector_frames: int) -> None:
        self._open.current.add(valid, detected, detector_frames)

    def end(self) -> FaceRate:
        """Report the current track if its face rate is low (once) and return its counts."""
        return self._open.end()
