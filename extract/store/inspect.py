"""What a store holds: tracks, frames, arrays (shapes, dtypes, storage), bytes per frame, fingerprints."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from extract.store.reader import StoreReader
from extract.store.schema import FACE_GROUP, FACE_VALID, SCALE_SUFFIX, TRACKS

FACE_RATE_LINES = 10  # tracks listed in the text output, lowest face rate first


def _array_of_file(key: str) -> tuple[str, str] | None:
    """'tracks/<tid>/<array>/c/...' -> (tid, array); None for metadata files."""
    parts = key.split("/")
    if len(parts) < 4 or parts[0] != TRACKS or "c" not in parts[2:]:
        return None
    i = parts.index("c", 2)
    return parts[1], "/".join(parts[2:i])


def inspect_store(url: str, storage_options: Mapping[str, Any] | None = None) -> dict:
    """Summary of the store at `url` as a JSON-able dict.

    Keys: url, schema_version, package_version, created, fingerprint, groups ({name: fingerprint}),
    models, extractor, tracks (number complete), incomplete_tracks (ids), frames (total over
    complete tracks), bytes (stored bytes of their arrays), bytes_per_frame, arrays
    ({path: {frame_shape, dtype, token_storage, chunk_frames, shard_frames, tracks, bytes_per_frame}}),
    face_rate ({track: fraction of frames with face/valid, None without a face group}).
    """
    reader = StoreReader(url, storage_options=storage_options)
    tracks = reader.tracks()
    complete = set(tracks)
    frames_of = {tid: reader.n_frames(tid) for tid in tracks}
    total_frames = sum(frames_of.values())
    bytes_by_array: dict[str, int] = {}
    frames_by_array: dict[str, int] = {}
    seen: set[tuple[str, str]] = set()
    total_bytes = 0
    for key, size in reader.location.files(TRACKS).items():
        found = _array_of_file(key)
        if found is None or found[0] not in complete:
            continue
        tid, name = found
        if name.endswith(SCALE_SUFFIX):
            name = name[: -len(SCALE_SUFFIX)]  # an int8 token array's scales count with it
        bytes_by_array[name] = bytes_by_array.get(name, 0) + size
        total_bytes += size
        if (tid, name) not in seen:
            seen.add((tid, name))
            frames_by_array[name] = frames_by_array.get(name, 0) + frames_of[tid]
    arrays: dict[str, dict] = {}
    for tid in tracks:
        for name in reader.arrays(tid):
            entry = arrays.get(name)
            if entry is None:
                arr = reader.array(tid, name)
                storage = arr.attrs.get("token_storage")
                arrays[name] = entry = {
                    "frame_shape": list(arr.shape[1:]),
                    "dtype": str(arr.dtype),
                    "token_storage": dict(storage) if storage else None,
                    "chunk_frames": int(arr.chunks[0]),
                    "shard_frames": int(arr.shards[0]) if arr.shards else int(arr.chunks[0]),
                    "tracks": 0,
                }
            entry["tracks"] += 1
    for name, entry in arrays.items():
        n = frames_by_array.get(name, 0)
        entry["bytes_per_frame"] = round(bytes_by_array.get(name, 0) / n, 2) if n else None
    face_rate: dict[str, float | None] = {}
    for tid in tracks:
        if FACE_GROUP in reader.track_attrs(tid).get("groups", {}):
            valid = reader.read(tid, FACE_VALID)
            face_rate[tid] = round(float(valid.mean()), 4) if len(valid) else 0.0
        else:
            face_rate[tid] = None
    attrs = reader.attrs
    return {
        "url": reader.url,
        "schema_version": attrs.get("schema_version"),
        "package_version": attrs.get("package_version"),
        "created": attrs.get("created"),
        "fingerprint": reader.fingerprint,
        "groups": {name: g["fingerprint"] for name, g in reader.groups.items()},
        "models": attrs.get("models", {}),
        "extractor": attrs.get("extractor", {}),
        "tracks": len(tracks),
        "incomplete_tracks": reader.incomplete_tracks(),
        "frames": total_frames,
        "bytes": total_bytes,
        "bytes_per_frame": round(total_bytes / total_frames, 2) if total_frames else None,
        "arrays": dict(sorted(arrays.items())),
        "face_rate": face_rate,
    }


def format_inspect(info: Mapping[str, Any]) -> str:
    """Human-readable text of inspect_store's dict."""
    lines = [
        f"store        {info['url']}",
        f"schema       {info['schema_version']} (written by auwild {info['package_version']}, {info['created']})",
        f"fingerprint  {info['fingerprint']}",
        f"tracks       {info['tracks']} complete, {len(info['incomplete_tracks'])} incomplete",
        f"frames       {info['frames']}",
        f"bytes/frame  {info['bytes_per_frame']}  (total {info['bytes']} bytes)",
    ]
    if info["models"]:
        lines.append("models")
        for name, fields in info["models"].items():
            lines.append(f"  {name:<22} {_model_summary(fields)}")
    lines.append("groups")
    for name, fp in info["groups"].items():
        lines.append(f"  {name:<24} {fp}")
    lines.append("arrays")
    for name, a in info["arrays"].items():
        storage = a["token_storage"]
        extra = f" {storage['kind']} pool={storage['pool']}" if storage else ""
        lines.append(
            f"  {name:<24} (T, {', '.join(map(str, a['frame_shape']))}) {a['dtype']}{extra}"
            f"  chunk={a['chunk_frames']} shard={a['shard_frames']}  {a['bytes_per_frame']} B/frame"
        )
    rates = {t: r for t, r in info.get("face_rate", {}).items() if r is not None}
    if rates:
        values = np.array(list(rates.values()))
        lines.append(
            f"face rate    mean {values.mean():.3f}, min {values.min():.3f}, max {values.max():.3f}"
            " (fraction of frames with face/valid, per track)"
        )
        for tid, rate in sorted(rates.items(), key=lambda kv: kv[1])[:FACE_RATE_LINES]:
            lines.append(f"  {tid:<24} {rate:.3f}")
        if len(rates) > FACE_RATE_LINES:
            lines.append(f"  ... {len(rates) - FACE_RATE_LINES} more (--json lists every track)")
    for tid in info["incomplete_tracks"]:
        lines.append(f"incomplete   {tid}")
    return "\n".join(lines)


def _model_summary(fields: object) -> str:
    """The identity of a model in one short line: its id and revision or content hash."""
    if not isinstance(fields, dict):
        return str(fields)
    keys = ("model", "revision", "content_hash", "layer", "layers", "crop_size", "dim")
    parts = [f"{k}={fields[k]}" for k in keys if fields.get(k) not in (None, "")]
    return ", ".join(parts) or str(fields)
