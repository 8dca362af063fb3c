"""The store's layout in one place: schema version, array paths, group names and track-id rules.

Everything that turns a name into a path inside the store goes through here, so a track id that
would escape its folder or confuse an object store is refused before anything is written.
"""

from __future__ import annotations

# The track-id rule lives with the manifest, which refuses bad ids when it is made; the store
# applies the same rule to every path it builds.
from data_manifest.track_id import InvalidTrackId as InvalidTrackId  # re-exported
from data_manifest.track_id import check_track_id

# Bump when the layout or the meaning of an array changes. 2: every chunk carries a crc32c
# checksum, each track's group entry lists its arrays (so completeness can be proven), and
# writers hold a lease per track.
SCHEMA_VERSION = 2

TRACKS = "tracks"  # group holding one sub-group per track
STATUS_ATTR = "status"  # track attribute written last
STATUS_COMPLETE = "complete"
STATUS_WRITING = "writing"

# Array paths inside tracks/<track_id>/ (the contract in DESIGN.md, "The store contract").
TIME = "time"  # (T,) float64 seconds from container PTS
FACE_VALID = "face/valid"  # (T,) bool
FACE_BOX = "face/box"  # (T, 4) float32 source pixels
FACE_LANDMARKS = "face/landmarks"  # (T, 68, 2) float32 source pixels
FACE_ALIGN = "face/align"  # (T, 2, 3) float32 source -> crop affine
FACE_ROIS = "face/rois"  # (T, R, 4) float32 crop coords in [0, 1]
AUDIO_VALID = "audio/valid"  # (T,) bool
SCALE_SUFFIX = "_scale"  # int8 tokens keep their per-token scale in <name>_scale

FACE_GROUP = "face"
AUDIO_VALID_GROUP = "audio"


def visual_group(enc: str) -> str:
    """Group name of a visual encoder's arrays."""
    return f"visual/{enc}"


def visual_cls(enc: str) -> str:
    return f"visual/{enc}/cls"  # (T, D) float16


def visual_patch(enc: str) -> str:
    return f"visual/{enc}/patch"  # (T, h, w, D) float16 or int8 (+ patch_scale (T, h, w))


def audio_group(enc: str) -> str:
    """Group name of an audio encoder's array (one array per encoder)."""
    return f"audio/{enc}"


def audio_features(enc: str) -> str:
    return f"audio/{enc}"  # (T, D) float16 pooled onto video frame times


def scale_path(name: str) -> str:
    """Path of the per-token scale array that goes with an int8 token array."""
    return name + SCALE_SUFFIX


def group_of(array_path: str) -> str | None:
    """The fingerprinted group an array belongs to (None for the track-level `time`).

    `face/*` -> "face", `visual/<enc>/*` -> "visual/<enc>", `audio/valid` -> "audio",
    `audio/<enc>` -> "audio/<enc>", anything else -> its first path component.
    """
    parts = array_path.split("/")
    if array_path == TIME:
        return None
    if parts[0] == "visual" and len(parts) >= 3:
        return "/".join(parts[:2])
    if parts[0] == "audio":
        if array_path == AUDIO_VALID:
            return AUDIO_VALID_GROUP
        base = parts[1] if len(parts) > 1 else ""
        if base.endswith(SCALE_SUFFIX):
            base = base[: -len(SCALE_SUFFIX)]
        return f"audio/{base}"
    return parts[0]


# What a complete group must hold: {array path: trailing shape (None: any)}; every array also has
# the track's n_frames first. Visual encoders decide their own outputs, so for them (and any other
# group) the arrays recorded in the track's group entry at finish_group are the list.
FIXED_GROUPS: dict[str, dict[str, tuple[int, ...] | None]] = {
    FACE_GROUP: {
        FACE_VALID: (),
        FACE_BOX: (4,),
        FACE_LANDMARKS: (68, 2),
        FACE_ALIGN: (2, 3),
        FACE_ROIS: None,
    },
    AUDIO_VALID_GROUP: {AUDIO_VALID: ()},
}
TRACK_ARRAYS: dict[str, tuple[int, ...] | None] = {TIME: ()}  # every track, whatever its groups


def required_arrays(group: str, entry: dict | None = None) -> dict[str, tuple[int, ...] | None]:
    """{array path: trailing shape or None} that group `group` must hold to be complete.

    Fixed lists for `face` and `audio`, the one array of `audio/<enc>`; for the rest the arrays
    recorded in the track's group entry (`entry["arrays"]`: {path: {"shape", "dtype"}}), plus what
    they imply: the `_scale` array (T, h, w) of int8 patch tokens.
    """
    out: dict[str, tuple[int, ...] | None] = dict(FIXED_GROUPS.get(group, {}))
    if group.startswith("audio/"):
        out.setdefault(audio_features(group.split("/", 1)[1]), None)
    for path, spec in ((entry or {}).get("arrays") or {}).items():
        shape = tuple(int(s) for s in spec.get("shape", []))[1:]
        if out.get(path) is None or out[path] == shape:
            out[path] = shape
        if spec.get("dtype") == "int8" and len(shape) == 3:
            out[scale_path(path)] = shape[:2]
    return out


def track_path(track_id: str) -> str:
    """Path of a track's group, relative to the store root."""
    return f"{TRACKS}/{check_track_id(track_id)}"
