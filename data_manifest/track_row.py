"""One manifest row in the making: what a dataset reader found about a track, and what is wrong.

Both readers (the Aff-Wild2 layout and a plain table) find a track's files differently but
judge it the same way: the first problem decides the status, every problem is listed in
`error`, and the frame counts come from the label file and the crops folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from data_manifest.annotations import AnnotationError, parse_annotation_file
from data_manifest.frames_dir import count_frames


@dataclass
class TrackRow:
    track_id: str
    video_id: str
    split: str
    side: str
    labels: str = ""  # annotation file, or ""
    video: str = ""  # video file, or ""
    frames_dir: str = ""  # crops folder, or ""
    n_annotated: int = 0
    fps: float = float("nan")
    n_frames: int = -1
    status: str = "ok"
    errors: list[str] = field(default_factory=list)

    def problem(self, status: str, message: str) -> None:
        """Record what went wrong; the first problem sets the status."""
        if self.status == "ok":
            self.status = status
        self.errors.append(message)

    def count_annotated(self) -> None:
        """Frames with any label != -1 in the label file; an unreadable file is a problem."""
        if not self.labels:
            return
        try:
            self.n_annotated = int((parse_annotation_file(self.labels) != -1).any(1).sum())
        except AnnotationError as exc:
            self.problem("bad_labels", str(exc))

    def as_dict(self) -> dict[str, Any]:
        """The manifest row (see manifest.MANIFEST_SCHEMA); counts the crops in frames_dir."""
        return {
            "track_id": self.track_id,
            "video_id": self.video_id,
            "split": self.split,
            "video": self.video,
            "frames_dir": self.frames_dir,
            "side": self.side,
            "labels": self.labels,
            "n_annotated": self.n_annotated,
            "n_valid": count_frames(self.frames_dir) if self.frames_dir else -1,
            "fps": self.fps,
            "n_frames": self.n_frames,
            "status": self.status,
            "error": "; ".join(self.errors),
        }
