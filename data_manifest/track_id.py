"""Which track ids can become store paths: the one rule, used by the manifest and by the store.

A track id names a folder in the feature store (`tracks/<track_id>/`), a file name in reports and
a key in object storage, so it is checked where it enters (manifest building and validation)
rather than where it first breaks (the middle of an extraction job).
"""

from __future__ import annotations

import re


class InvalidTrackId(ValueError):
    """A track id that cannot safely become a path in a filesystem or object store."""


# Letters, digits and `_ - . + =` only: safe on POSIX, Windows, S3 and GCS keys and in URLs.
_SAFE = re.compile(r"[A-Za-z0-9_.+=-]+")
_MAX_LEN = 200  # leaves room for array paths under the 255-byte limit of most filesystems
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {
    f"{p}{i}" for p in ("COM", "LPT") for i in range(1, 10)
}


def check_track_id(track_id: object, row: object | None = None) -> str:
    """Return `track_id` if it is safe as a store path; raise InvalidTrackId naming the row if given.

    Refused: empty ids, path separators, `.`/`..`, leading dots or dashes, whitespace, control
    characters, anything outside `[A-Za-z0-9_.+=-]`, Windows device names and ids over 200 chars.
    """
    where = f" (manifest row {row})" if row is not None else ""
    if not isinstance(track_id, str):
        raise InvalidTrackId(f"track id {track_id!r}{where} is not a string")
    reason = why_unsafe(track_id)
    if reason:
        raise InvalidTrackId(f"track id {track_id!r}{where} cannot be a store path: {reason}")
    return track_id


def why_unsafe(tid: str) -> str:
    """Why `tid` cannot be a store path, or "" when it can."""
    if not tid:
        return "it is empty"
    if tid in (".", "..") or ".." in tid:
        return "it contains '..'"
    if "/" in tid or "\\" in tid:
        return "it contains a path separator"
    if len(tid) > _MAX_LEN:
        return f"it is longer than {_MAX_LEN} characters"
    if tid[0] in ".-":
        return "it starts with '.' or '-'"
    if tid.endswith("."):
        return "it ends with '.'"
    bad = sorted({c for c in tid if not _SAFE.fullmatch(c)})
    if bad:
        return (
            "it contains "
            + ", ".join(repr(c) for c in bad)
            + " (allowed: letters, digits, _ - . + =)"
        )
    if tid.split(".")[0].upper() in _WINDOWS_RESERVED:
        return "it is a reserved device name on Windows"
    return ""
