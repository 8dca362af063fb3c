"""Copy a store with its patch tokens stored another way (fp16 / int8, pooled or not).

A store is extracted once (say fp16, full grid) and shrunk later without running the encoders
again: every complete track is copied array by array into a new store; patch token arrays
(`visual/<enc>/patch`) are decoded to float32 and encoded with the new TokenStorage, everything
else is copied as stored. The visual groups' fingerprint fields `token_dtype` / `patch_pool` (or TokenStorage's
`token_kind` / `token_pool`) are rewritten, so the new store's fingerprints say what it holds. Transcoding int8 to fp16 or a
pooled grid to a finer one cannot bring back what was dropped: the source's own storage is kept
in the fields (`transcoded_from`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from extract.store.quantize import TokenStorage
from extract.store.reader import StoreReader
from extract.store.schema import SCALE_SUFFIX
from extract.store.writer import StoreWriter

PATCH_SUFFIX = "/patch"


def is_patch(name: str) -> bool:
    return name.startswith("visual/") and name.endswith(PATCH_SUFFIX)


def transcode_store(
    src: str,
    dst: str,
    storage: TokenStorage,
    *,
    storage_options: Mapping[str, Any] | None = None,
    frames_per_read: int = 1024,
    progress: Callable[[str], None] | None = None,
) -> list[str]:
    """Copy every complete track of store `src` into a new store `dst`, patch tokens re-encoded
    with `storage`; returns the track ids copied (tracks already complete in `dst` are kept)."""
    reader = StoreReader(src, storage_options=storage_options)
    attrs = reader.attrs
    extractor = dict(attrs.get("extractor") or {})
    if any(g.startswith("visual/") for g in reader.groups):
        extractor.update({"token_dtype": storage.kind, "patch_pool": storage.pool})
    writer = StoreWriter(
        dst, extractor_config=extractor, models=attrs.get("models"), storage_options=storage_options
    )
    for name, entry in reader.groups.items():
        fields = dict(entry["fields"])
        if name.startswith("visual/"):
            named = {
                "token_dtype": storage.kind,  # the extractor's field names
                "patch_pool": storage.pool,
                **storage.fingerprint_fields(),  # TokenStorage's own
            }
            present = [k for k in named if k in fields]
            if "transcoded_from" not in fields:
                fields["transcoded_from"] = {k: fields[k] for k in present}
            fields.update({k: named[k] for k in present} or storage.fingerprint_fields())
        writer.register_group(name, fields)
    done = []
    for tid in reader.tracks():
        if writer.track_status(tid) == "complete":
            continue
        tattrs = reader.track_attrs(tid)
        n = int(tattrs["n_frames"])
        groups = dict(tattrs.get("groups", {}))
        keep = {
            k: v
            for k, v in tattrs.items()
            if k
            not in ("groups", "status", "schema_version", "n_frames", "written_by", "completed")
        }
        with writer.open_track(tid, n_frames=n, attrs=keep, overwrite=True) as tw:
            for name in reader.arrays(tid):
                if name.endswith(SCALE_SUFFIX):
                    continue
                arr = reader.array(tid, name)
                shape = tuple(arr.shape)
                if is_patch(name):
                    tw.create_array(name, (n, *shape[1:]), "float32", storage=storage)
                else:
                    tw.create_array(name, shape, arr.dtype, attrs=dict(arr.attrs))
                for a in range(0, n, frames_per_read):
                    tw.write(name, a, reader.read(tid, name, a, a + frames_per_read))
            for grp, entry in groups.items():
                tw.finish_group(grp, entry.get("track_fields"))
        done.append(tid)
        if progress is not None:
            progress(tid)
    return done
