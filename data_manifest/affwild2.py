"""The Aff-Wild2 / ABAW layout -> manifest, found by structure rather than by fixed paths.

Looked for anywhere under the root:
- `*ABAW_Annotations/AU_Detection_Challenge/{Train_Set,Validation_Set}/<track>.txt`
- videos `*.mp4` / `*.avi` (any batch folder); `<video>_left` / `<video>_right` share one
- `cropped_aligned*/<track>/%05d.jpg` (optional, with gaps where no face was found)
- the test-set track list: a `.txt` file with "test" in its name, one track a line
The walk does not descend into image folders, so millions of crops cost nothing.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from data_manifest.manifest import make_manifest
from data_manifest.track_row import TrackRow
from data_manifest.user_error import UserError
from data_manifest.video_probe import VideoProbeError, probe_counts

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi")
AU_TASK_DIR = "AU_Detection_Challenge"
SPLIT_FOLDERS = {"Train_Set": "train", "Validation_Set": "val"}
SIDE_SUFFIXES = {"_left": "left", "_right": "right"}


@dataclass
class Affwild2Layout:
    """What was found under the root."""

    root: Path  # the dataset root
    annotations: dict[str, list[tuple[str, Path]]] = field(
        default_factory=dict
    )  # track -> [(split, file)]
    videos: dict[str, list[Path]] = field(default_factory=dict)  # video stem -> files
    frames_dirs: dict[str, Path] = field(default_factory=dict)  # track -> cropped_aligned/<track>
    test_lists: list[Path] = field(default_factory=list)  # candidate test-set track lists


def _is_annotation_root(path: Path) -> bool:
    return path.name == AU_TASK_DIR and path.parent.name.endswith("ABAW_Annotations")


def scan_layout(root: str | os.PathLike) -> Affwild2Layout:
    """Walk the root once and sort what is there into annotations, videos, crops, test lists."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise UserError(f"{root}: dataset root not found")
    layout = Affwild2Layout(root=root)
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if _is_annotation_root(here):
            for folder, split in SPLIT_FOLDERS.items():
                split_dir = here / folder
                if split_dir.is_dir():
                    for f in sorted(split_dir.glob("*.txt")):
                        layout.annotations.setdefault(f.stem, []).append((split, f))
            dirnames[:] = []
            continue
        if here.name.startswith("cropped_aligned"):
            for d in sorted(dirnames):
                layout.frames_dirs.setdefault(d, here / d)
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            stem, suffix = os.path.splitext(name)
            if suffix.lower() in VIDEO_SUFFIXES:
                layout.videos.setdefault(stem, []).append(here / name)
            elif suffix.lower() == ".txt" and "test" in name.lower():
                layout.test_lists.append(here / name)
    return layout


def read_track_list(path: str | os.PathLike) -> list[str]:
    """Track names, one a line; blank lines, '#' comments and file extensions are ignored."""
    names = []
    for line in Path(path).read_text(encoding="utf-8-sig").splitlines():
        name = line.split("#", 1)[0].strip().split(",")[0].strip()
        if name:
            names.append(
                os.path.splitext(name)[0]
                if name.lower().endswith(VIDEO_SUFFIXES + (".txt",))
                else name
            )
    return names


def _pick_test_list(layout: Affwild2Layout, test_list: str | os.PathLike | None) -> Path | None:
    if test_list is not None:
        path = Path(test_list)
        if not path.is_file():
            raise UserError(f"{path}: test list not found")
        return path
    candidates = layout.test_lists
    if len(candidates) > 1:
        au_like = [
            p
            for p in candidates
            if "au" in p.stem.lower().replace("-", "_").split("_")
            or "action_unit" in p.name.lower()
        ]
        candidates = au_like or candidates
    if len(candidates) > 1:
        listed = ", ".join(str(p) for p in candidates)
        raise UserError(f"several possible test lists ({listed}); choose one with --test-list")
    return candidates[0] if candidates else None


def split_side(track_id: str) -> tuple[str, str]:
    """'vid_left' -> ('vid', 'left'); 'vid' -> ('vid', 'none')."""
    for suffix, side in SIDE_SUFFIXES.items():
        if track_id.endswith(suffix):
            return track_id[: -len(suffix)], side
    return track_id, "none"


def build_affwild2_manifest(
    root: str | os.PathLike, test_list: str | os.PathLike | None = None, probe: bool = True
) -> pd.DataFrame:
    """One manifest row per annotated or test track under an Aff-Wild2-like root."""
    layout = scan_layout(root)
    if not layout.annotations:
        raise UserError(
            f"{layout.root}: no *ABAW_Annotations/{AU_TASK_DIR}/{{Train_Set,Validation_Set}} found"
        )
    test_path = _pick_test_list(layout, test_list)
    test_tracks = read_track_list(test_path) if test_path else []
    if test_path:
        log.info("test tracks from %s (%d)", test_path, len(test_tracks))
    probes: dict[Path, tuple[float, int, str]] = {}

    def video_counts(path: Path) -> tuple[float, int, str]:
        if path not in probes:
            try:
                counts = probe_counts(path)
                probes[path] = (counts.fps, counts.n_frames, "")
            except VideoProbeError as exc:
                probes[path] = (float("nan"), -1, str(exc))
        return probes[path]

    rows = []
    entries = [(tid, found) for tid, found in sorted(layout.annotations.items())]
    entries += [(tid, []) for tid in test_tracks if tid not in layout.annotations]
    for tid, found in entries:
        split, labels = ("test", "") if not found else (found[0][0], str(found[0][1]))
        base, side = split_side(tid)
        video_id = tid if tid in layout.videos else base
        if tid in layout.videos:
            side = "none"
        row = TrackRow(tid, video_id, split, side, labels=labels)
        if len(found) > 1:
            row.problem(
                "conflict",
                f"annotated in several splits: {', '.join(str(f) for _, f in found)}",
            )
        if found and tid in test_tracks:
            row.problem("conflict", f"annotated ({labels}) and also in the test list {test_path}")
        row.count_annotated()
        video_files = layout.videos.get(video_id, [])
        if not video_files:
            row.problem("missing_video", f"no video {video_id}.mp4/.avi under {layout.root}")
        else:
            row.video = str(video_files[0])
            if len(video_files) > 1:
                log.warning("%s: several videos named %s, using %s", tid, video_id, row.video)
            if probe:
                row.fps, row.n_frames, err = video_counts(video_files[0])
                if err:
                    row.problem("bad_video", err)
        frames_dir = layout.frames_dirs.get(tid)
        row.frames_dir = str(frames_dir) if frames_dir else ""
        rows.append(row.as_dict())
    unlisted = set(layout.frames_dirs) - {row["track_id"] for row in rows}
    if unlisted:
        log.info("%d cropped_aligned folders belong to no AU track (other tasks)", len(unlisted))
    return make_manifest(rows)
