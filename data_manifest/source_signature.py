"""What a track's sources are, by content: a copied or moved dataset is the same dataset.

A signature holds the file size and a hash of three sampled blocks (head, middle, tail) of a
video, and for a frames folder the number of frames, a hash of their names and of three sampled
images. Paths and modification times are left out on purpose: copying a dataset to another disk
and rebuilding its manifest must not make the extraction job redo (and so lose) finished work,
while re-encoding a video or replacing face images must be seen.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from data_manifest.frames_dir import frame_numbers

SIGNATURE_VERSION = "content-v1"
BLOCK = 1 << 16  # bytes read at each sampled position


def file_signature(path: str) -> dict[str, Any]:
    """{"size", "sample"}: the size and a hash of the head, middle and tail blocks of a file."""
    size = os.path.getsize(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for offset in sorted({0, max(0, size // 2 - BLOCK // 2), max(0, size - BLOCK)}):
            f.seek(offset)
            h.update(f.read(BLOCK))
    return {"size": int(size), "sample": h.hexdigest()[:16]}


def frames_signature(folder: str) -> dict[str, Any]:
    """{"frames", "names", "sample"}: frame count, hash of the numbers, hash of 3 sampled images."""
    numbers = frame_numbers(folder)
    names = {int(n): None for n in numbers}
    for entry in os.scandir(folder):
        stem, _ = os.path.splitext(entry.name)
        if stem.isdigit() and int(stem) in names:
            names[int(stem)] = entry.name
    ordered = [names[int(n)] for n in numbers]
    listing = hashlib.sha256("\n".join(ordered).encode("utf-8")).hexdigest()[:16]
    h = hashlib.sha256()
    if ordered:
        for i in sorted({0, len(ordered) // 2, len(ordered) - 1}):
            sig = file_signature(os.path.join(folder, ordered[i]))
            h.update(f"{ordered[i]}:{sig['size']}:{sig['sample']}\n".encode())
    return {"frames": len(ordered), "names": listing, "sample": h.hexdigest()[:16]}


def source_signature(row: dict[str, Any]) -> dict[str, Any]:
    """The signature of a manifest row's video and frames folder (those that exist)."""
    sig: dict[str, Any] = {"version": SIGNATURE_VERSION}
    video = str(row.get("video") or "")
    frames_dir = str(row.get("frames_dir") or "")
    if video and os.path.isfile(video):
        sig["video"] = file_signature(video)
    if frames_dir and os.path.isdir(frames_dir):
        sig["frames_dir"] = frames_signature(frames_dir)
    return sig


def signature_change(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """ "" when `old` and `new` describe the same content, else one phrase saying what changed.

    Signatures written before content signing (path + mtime) are compared by video size only:
    they cannot tell more, and treating every old track as changed would redo whole stores.
    """
    old = dict(old or {})
    if old.get("version") != SIGNATURE_VERSION:
        before = (old.get("video") or {}).get("size")
        after = (new.get("video") or {}).get("size")
        if before is not None and after is not None and before != after:
            return f"video size {before} -> {after} bytes"
        return ""
    changes = []
    for key in ("video", "frames_dir"):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if a is None or b is None:
            changes.append(f"{key} {'added' if a is None else 'gone'}")
            continue
        fields = [
            f"{k} {a.get(k)} -> {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)
        ]
        changes.append(f"{key}: " + ", ".join(fields))
    return "; ".join(changes)
