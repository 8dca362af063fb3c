"""Where a store lives: a local folder or any fsspec URL (s3://, gs://, file://, memory://).

Zarr reads and writes the arrays; the few file-level operations the store needs beyond that
(list tracks, read or replace one metadata file, copy or delete a track's files, sizes) go
through the fsspec filesystem here, so the writer, reader, verify and merge share one code path.

The codec pipeline (what turns chunk bytes into arrays) is chosen here, in one place
(`zarr_pipeline`): the Rust `zarrs` pipeline for local stores when it is installed (reads of
uncompressed chunks near memory speed, writes several times faster), zarr-python's own
pipeline otherwise and as the reference. `AUWILD_ZARR_PIPELINE=python` (or `zarrs`) forces one;
zarrs reads files itself, so object stores (s3://, ...) always use the python pipeline.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from data_manifest.shared_files import write_atomic

PIPELINE_ENV = "AUWILD_ZARR_PIPELINE"
PIPELINES = {  # name -> zarr's codec_pipeline.path
    "zarrs": "zarrs.ZarrsCodecPipeline",
    "python": "zarr.core.codec_pipeline.BatchedCodecPipeline",
}


def zarrs_installed() -> bool:
    try:
        import zarrs  # noqa: F401
    except ImportError:
        return False
    return True


def choose_pipeline(local: bool) -> str:
    """ "zarrs" or "python" for a store (local or not), by the environment knob and what is
    installed; a knob naming something else, or zarrs when it is not installed, is an error."""
    asked = os.environ.get(PIPELINE_ENV, "").strip().lower()
    if asked and asked not in PIPELINES:
        raise ValueError(f"{PIPELINE_ENV}={asked!r}: must be one of {sorted(PIPELINES)}")
    if asked == "zarrs" and not zarrs_installed():
        raise ValueError(f"{PIPELINE_ENV}=zarrs but the zarrs package is not installed")
    if not local:
        return "python"  # zarrs opens local files itself; object stores go through fsspec
    if asked:
        return asked
    return "zarrs" if zarrs_installed() else "python"


class StoreNotFound(FileNotFoundError):
    """No store at the given location."""


def _is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


@dataclass
class StoreLocation:
    """A store's URL plus the fsspec options needed to reach it."""

    url: str  # local path or fsspec URL
    storage_options: dict[str, Any] = field(
        default_factory=dict
    )  # passed to fsspec (endpoint, keys)

    def __post_init__(self) -> None:
        import fsspec

        self.url = str(self.url).rstrip("/")
        self.local = _is_local(self.url)
        if self.local:
            path = self.url[len("file://") :] if self.url.startswith("file://") else self.url
            self.root = os.path.abspath(os.path.expanduser(path))
            self.fs = fsspec.filesystem("file")
        else:
            self.fs, self.root = fsspec.core.url_to_fs(self.url, **self.storage_options)
            self.root = self.root.rstrip("/")
        self.pipeline = choose_pipeline(self.local)  # "zarrs" or "python" (module docstring)

    def __str__(self) -> str:
        return self.url

    def zarr_store(self, read_only: bool):
        """The zarr Store for this location."""
        import zarr.storage

        if self.local:
            if not read_only:
                os.makedirs(self.root, exist_ok=True)
            return zarr.storage.LocalStore(self.root, read_only=read_only)
        return zarr.storage.FsspecStore.from_url(
            self.url, storage_options=self.storage_options or None, read_only=read_only
        )

    def zarr_pipeline(self):
        """Context in which zarr arrays opened or created use this location's codec pipeline
        (zarr picks an array's pipeline when the array object is made)."""
        import zarr

        return zarr.config.set({"codec_pipeline.path": PIPELINES[self.pipeline]})

    def path(self, key: str) -> str:
        return f"{self.root}/{key}" if key else self.root

    def refresh(self) -> None:
        """Forget cached listings (object-store filesystems cache directory listings)."""
        self.fs.invalidate_cache()

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self.path(key)))

    def read_bytes(self, key: str) -> bytes:
        return self.fs.cat_file(self.path(key))

    def read_json(self, key: str) -> dict | None:
        """Parsed JSON of `key`, or None when it does not exist."""
        try:
            data = self.read_bytes(key)
        except FileNotFoundError:
            return None
        return json.loads(data)

    def write_bytes(self, key: str, data: bytes) -> None:
        """Replace `key` whole: a reader sees the old or the new content, never a part."""
        target = self.path(key)
        if self.local:
            write_atomic(target, data)  # the umask's mode, for the team
        else:
            self.fs.pipe_file(target, data)  # object stores replace objects atomically

    def write_json(self, key: str, obj: dict) -> None:
        self.write_bytes(key, json.dumps(obj, indent=2, sort_keys=False).encode("utf-8"))

    def list_dirs(self, key: str) -> list[str]:
        """Names of the sub-folders (or common prefixes) directly under `key`."""
        try:
            entries = self.fs.ls(self.path(key), detail=True)
        except FileNotFoundError:
            return []
        names = []
        for e in entries:
            if e.get("type") == "directory":
                names.append(e["name"].rstrip("/").rsplit("/", 1)[-1])
        return sorted(names)

    def files(self, key: str) -> dict[str, int]:
        """{key relative to the store root: size in bytes} of every file under `key`."""
        base = self.path(key)
        if self.local:
            return self._local_files(base)
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return {}
        prefix = self.root + "/"
        out = {}
        for name, info in found.items():
            name = name if not self.local else os.path.abspath(name)
            rel = name[len(prefix) :] if name.startswith(prefix) else name
            base = rel.rsplit("/", 1)[-1]
            if base.startswith(".tmp-") or base.endswith(".partial"):
                continue  # an unfinished atomic write (ours, or zarr's) of another process
            out[rel] = int(info.get("size") or 0)
        return out

    def _local_files(self, base: str) -> dict[str, int]:
        """`files` on a local disk: os.scandir (fsspec's find stats every entry twice, which
        costs the writer a third of its time on a track of one-file chunks)."""
        prefix = self.root + "/"
        out: dict[str, int] = {}
        stack = [os.path.abspath(base)]
        while stack:
            folder = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                    continue
                if e.name.startswith(".tmp-") or e.name.endswith(".partial"):
                    continue  # an unfinished atomic write (ours, or zarr's) of another process
                try:
                    size = e.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    continue  # removed while listing
                rel = e.path[len(prefix) :] if e.path.startswith(prefix) else e.path
                out[rel] = int(size)
        return out

    def delete(self, key: str) -> None:
        """Delete everything under `key` (a missing key is fine)."""
        target = self.path(key)
        if self.fs.exists(target):
            self.fs.rm(target, recursive=True)
        self.refresh()
