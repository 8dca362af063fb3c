"""ABAW AU annotation files: a header line `AU1,...,AU26`, then one row of 12 values per frame.

Values are 0 / 1, and -1 for a frame that is not annotated. Anything else is an
`AnnotationError` that names the file and the 1-based line, so a bad file is fixed
in one look instead of being silently shifted or truncated.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from data_manifest.aus import ABAW_HEADER, AUS, N_AUS


class AnnotationError(ValueError):
    """A malformed annotation file; `path` and `line` (1-based) say where."""

    def __init__(self, path: str | os.PathLike, line: int, message: str):
        self.path = str(path)
        self.line = int(line)
        self.message = message
        super().__init__(f"{self.path}:{self.line}: {message}")


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise AnnotationError(path, 0, "file not found") from exc
    except UnicodeDecodeError as exc:
        raise AnnotationError(path, 1, f"not a text file ({exc.reason})") from exc
    lines = text.splitlines()
    while lines and not lines[-1].strip():  # trailing blank lines are harmless
        lines.pop()
    return lines


def _check_header(path: Path, lines: list[str]) -> None:
    if not lines:
        raise AnnotationError(path, 1, f"empty file, expected the header {ABAW_HEADER!r}")
    header = [h.strip() for h in lines[0].split(",")]
    if header != list(AUS):
        raise AnnotationError(path, 1, f"header is {lines[0].strip()!r}, expected {ABAW_HEADER!r}")


def _parse_row(path: Path, lineno: int, line: str) -> list[int]:
    """One data line -> 12 ints in {-1, 0, 1}, or AnnotationError naming the line and the AU."""
    if not line.strip():
        raise AnnotationError(path, lineno, "empty row")
    fields = [f.strip() for f in line.split(",")]
    if len(fields) != N_AUS:
        raise AnnotationError(path, lineno, f"expected {N_AUS} values, found {len(fields)}")
    row = []
    for au, field in zip(AUS, fields):
        try:
            value = float(field)
        except ValueError:
            raise AnnotationError(path, lineno, f"{au} value {field!r} is not a number") from None
        if value not in (-1.0, 0.0, 1.0):
            raise AnnotationError(path, lineno, f"{au} value {field!r} is not one of -1, 0, 1")
        row.append(int(value))
    return row


def parse_annotation_file(path: str | os.PathLike) -> np.ndarray:
    """An ABAW AU annotation file -> (N, 12) int8, row i = frame i+1; raises AnnotationError."""
    path = Path(path)
    lines = _read_lines(path)
    _check_header(path, lines)
    body = lines[1:]
    if not body:
        return np.zeros((0, N_AUS), np.int8)
    # Fast path for well-formed files (C parser); any surprise falls back to the line-by-line
    # parser, which finds and names the offending line.
    if all(body_line.strip() for body_line in body):
        try:
            arr = np.loadtxt(io.StringIO("\n".join(body)), delimiter=",", dtype=np.int64, ndmin=2)
        except ValueError:
            arr = None
        if arr is not None and arr.shape == (len(body), N_AUS) and np.isin(arr, (-1, 0, 1)).all():
            return arr.astype(np.int8)
    rows = [_parse_row(path, i + 2, line) for i, line in enumerate(body)]
    return np.asarray(rows, dtype=np.int8).reshape(-1, N_AUS)


def write_annotation_file(path: str | os.PathLike, labels: np.ndarray) -> Path:
    """(N, 12) labels in {-1, 0, 1} -> an ABAW annotation file (header + one line per frame)."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[1] != N_AUS:
        raise ValueError(f"labels must be (N, {N_AUS}), got {labels.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "\n".join(",".join(str(int(v)) for v in row) for row in labels)
    path.write_text(ABAW_HEADER + "\n" + body + ("\n" if len(labels) else ""), encoding="utf-8")
    return path
