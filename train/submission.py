"""Prediction files: `predictions.parquet` for analysis and `predictions.txt` for ABAW.

predictions.txt is the challenge format: the header `image_location,AU1,...,AU26`, then one
row `<track>/<frame:05d>.jpg,0,1,...` per frame, frames numbered from 1 like the
cropped_aligned images, every frame of every track (faces or not), tracks in the order of the
test list, or exactly the rows of an official example file when one is given. A row of the
example beyond a track's last frame takes the last frame's prediction.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from data_manifest.aus import ABAW_HEADER, AUS
from data_manifest.cli_support import UserError
from data_manifest.shared_files import write_text_atomic

HEADER = "image_location," + ABAW_HEADER
_ROW = re.compile(r"^(?P<track>.+)/(?P<frame>\d+)\.(jpg|png)$")


def predictions_frame(
    order: Sequence[str], probs: dict[str, np.ndarray], binary: dict[str, np.ndarray]
) -> pd.DataFrame:
    """One row per (track, frame): prob_<AU> float32 and <AU> 0/1, frames numbered from 1."""
    parts = []
    for tid in order:
        p, b = probs[tid], binary[tid]
        df = pd.DataFrame({"track": tid, "frame": np.arange(1, len(p) + 1, dtype=np.int64)})
        for a, name in enumerate(AUS):
            df[f"prob_{name}"] = p[:, a].astype(np.float32)
        for a, name in enumerate(AUS):
            df[name] = b[:, a].astype(np.int8)
        parts.append(df)
    return pd.concat(parts, ignore_index=True)


def write_parquet(path: str | Path, frame: pd.DataFrame) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)


def read_example(path: str | Path) -> list[tuple[str, int]]:
    """(track, frame) of each row of an official example predictions file, in order."""
    path = Path(path)
    lines = path.read_text().splitlines()
    if not lines or lines[0].strip().replace(" ", "") != HEADER:
        raise UserError(f"{path}: first line is not the ABAW header {HEADER!r}")
    rows = []
    for i, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        loc = line.split(",", 1)[0].strip()
        m = _ROW.match(loc)
        if not m:
            raise UserError(f"{path}:{i}: image_location {loc!r} is not <track>/<frame>.jpg")
        rows.append((m["track"], int(m["frame"])))
    return rows


def _line(track: str, frame: int, values: np.ndarray) -> str:
    return f"{track}/{frame:05d}.jpg," + ",".join(str(int(v)) for v in values)


def submission_lines(
    binary: dict[str, np.ndarray],
    order: Sequence[str] | None = None,
    example: Sequence[tuple[str, int]] | None = None,
) -> list[str]:
    """Lines of predictions.txt: every frame of the tracks in `order`, or the `example` rows."""
    lines = [HEADER]
    if example is not None:
        missing = sorted({t for t, _ in example} - set(binary))
        if missing:
            raise UserError(
                f"the example file names {len(missing)} track(s) without predictions, "
                f"e.g. {missing[:3]}"
            )
        for track, frame in example:
            b = binary[track]
            lines.append(_line(track, frame, b[min(max(frame, 1), len(b)) - 1]))
        return lines
    for track in order if order is not None else list(binary):
        for i, row in enumerate(binary[track]):
            lines.append(_line(track, i + 1, row))
    return lines


def write_submission(
    path: str | Path,
    binary: dict[str, np.ndarray],
    order: Sequence[str] | None = None,
    example: Sequence[tuple[str, int]] | None = None,
) -> int:
    """Write predictions.txt atomically; returns the number of frame rows."""
    lines = submission_lines(binary, order, example)
    write_text_atomic(Path(path), "\n".join(lines) + "\n")
    return len(lines) - 1
