"""Fingerprints: a stable hash of everything that changes the numbers, and which fields differ.

A fingerprint is computed from a flat-or-nested mapping of JSON-able fields (model id, revision,
crop size, token dtype, ...). Keys are sorted and numbers normalised, so the same fields always
give the same hash on every machine and Python version.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

_MISSING = "<missing>"


class FingerprintMismatch(ValueError):
    """Two fingerprints of one group differ; `.fields` names the fields that differ."""

    def __init__(self, message: str, fields: list[str] | None = None):
        super().__init__(message)
        self.fields = list(fields or [])


def canonical(value: Any) -> Any:
    """JSON-able, order-independent form of `value` (tuples -> lists, numpy scalars -> Python)."""
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return canonical(value.tolist())  # numpy scalars and arrays
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and abs(value) < 2**53:
            return int(value)  # 224.0 and 224 are the same setting
        return repr(value) if not math.isfinite(value) else value
    raise TypeError(f"fingerprint field value {value!r} ({type(value).__name__}) is not JSON-able")


def fingerprint_of(fields: Mapping[str, Any]) -> str:
    """Stable 16-hex-digit hash of `fields`."""
    text = json.dumps(canonical(fields), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    else:
        out[prefix] = value


def diff_fields(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Dotted names of the fields whose values differ between `a` and `b` (sorted)."""
    fa: dict[str, Any] = {}
    fb: dict[str, Any] = {}
    _flatten(canonical(a), "", fa)
    _flatten(canonical(b), "", fb)
    return sorted(k for k in set(fa) | set(fb) if fa.get(k, _MISSING) != fb.get(k, _MISSING))


def describe_diff(
    a: Mapping[str, Any], b: Mapping[str, Any], names: tuple[str, str] = ("a", "b")
) -> str:
    """One line per differing field: `crop_size: a=224, b=112`."""
    fa: dict[str, Any] = {}
    fb: dict[str, Any] = {}
    _flatten(canonical(a), "", fa)
    _flatten(canonical(b), "", fb)
    parts = []
    for key in diff_fields(a, b):
        parts.append(
            f"{key}: {names[0]}={fa.get(key, _MISSING)!r}, {names[1]}={fb.get(key, _MISSING)!r}"
        )
    return "; ".join(parts)


def group_entry(fields: Mapping[str, Any]) -> dict[str, Any]:
    """What the store keeps per group: {"fingerprint": ..., "fields": ...}."""
    fields = canonical(fields)
    return {"fingerprint": fingerprint_of(fields), "fields": fields}


def group_fingerprint(entry: Mapping[str, Any]) -> str | None:
    """The root fingerprint a group entry was made under (a track's entry keeps it as
    `group_fingerprint`; a root entry's `fingerprint` is it)."""
    return entry.get("group_fingerprint", entry.get("fingerprint"))


def track_fields_of(entry: Mapping[str, Any]) -> dict:
    """The fields a track's entry fingerprint covers: {"group": fields, "track": track_fields}."""
    return {"group": entry.get("fields", {}), "track": entry.get("track_fields", {})}


def _mismatch(
    name: str, fingerprints: tuple, fa: Mapping, fb: Mapping, where: tuple[str, str]
) -> FingerprintMismatch:
    """The error for two entries of group `name` whose fingerprints differ, naming the fields."""
    fields = diff_fields(fa, fb)
    detail = describe_diff(fa, fb, where) if fields else "fingerprints differ (fields unknown)"
    return FingerprintMismatch(
        f"group {name!r}: {where[0]} fingerprint {fingerprints[0]} != {where[1]} "
        f"fingerprint {fingerprints[1]}; differing fields: {detail}",
        fields,
    )


def check_same_track_entry(
    name: str, a: Mapping[str, Any], b: Mapping[str, Any], where: tuple[str, str]
) -> None:
    """Raise FingerprintMismatch naming fields (e.g. `track.aligned_input`) when two tracks'
    entries of group `name` record different per-track fields."""
    if a.get("fingerprint") == b.get("fingerprint"):
        return
    raise _mismatch(
        name,
        (a.get("fingerprint"), b.get("fingerprint")),
        track_fields_of(a),
        track_fields_of(b),
        where,
    )


def store_fingerprint(groups: Mapping[str, Mapping[str, Any]]) -> str:
    """Fingerprint of a whole store: the hash of its groups' fingerprints."""
    return fingerprint_of({name: entry["fingerprint"] for name, entry in groups.items()})


def check_same_group(
    name: str,
    expected: Mapping[str, Any],
    found: Mapping[str, Any],
    where: tuple[str, str] = ("store", "new"),
) -> None:
    """Raise FingerprintMismatch naming the differing fields if two group entries differ."""
    if group_fingerprint(expected) == group_fingerprint(found):
        return
    raise _mismatch(
        name,
        (group_fingerprint(expected), group_fingerprint(found)),
        expected.get("fields", {}),
        found.get("fields", {}),
        where,
    )


def content_hash(path: str, chunk: int = 1 << 20) -> str:
    """Stable hash of a local file or folder (relative names and bytes), for models given as folders.

    Hidden files and folders (`.git`, `.cache`) are skipped; the result does not depend on where
    the folder lives or on file times.
    """
    import os

    h = hashlib.sha256()
    if os.path.isfile(path):
        entries = [(os.path.basename(path), path)]
    else:
        entries = []
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in files:
                if not name.startswith("."):
                    full = os.path.join(root, name)
                    entries.append((os.path.relpath(full, path).replace(os.sep, "/"), full))
    if not entries:
        raise FileNotFoundError(f"nothing to hash at {path}")
    for rel, full in sorted(entries):
        h.update(rel.encode("utf-8") + b"\0")
        with open(full, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()[:16]
