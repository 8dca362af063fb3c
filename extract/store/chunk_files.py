"""Window reads straight from local chunk files: no codec pipeline, no intermediate copy.

Patch tokens (fp16, int8) are stored as plain bytes followed by zarr's crc32c: their chunk files
can be read without zarr. For such an array (codecs exactly `bytes` then `crc32c`, a regular
grid chunked along time only, no sharding, a local disk) a read of frames [start, stop) opens
each chunk file the window touches and fills it with one `preadv`: the frames inside the window
land straight in the numpy output, the frames of an edge chunk outside the window in one reused
bounce buffer, the last 4 bytes in a checksum slot. The checksum is zarr's crc32c codec: the
4 bytes at the end of the file are the crc32c of every byte before them, little endian,
including the fill-padded frames past the end of the array in its last chunk; so a chunk is
read whole and checked before its frames are returned.

Checked once per version of a file, not on every read: a process remembers each chunk file it has
checked by its inode, size, mtime and ctime, and later windows over the same file read only the
frames they need, without the checksum (training reads every chunk many times; the check alone
was a third of a window's cost, the over-read of edge chunks another fifth). What the checksum
guards against, a torn, truncated or overwritten file, changes what `fstat` says: a rewrite by
the store is a new file renamed into place (zarr's local store writes a temporary file and
renames it: a new inode), an in-place write moves mtime and ctime, a truncation the size; so such a file is checked again before it is trusted. Damage that
leaves all four unchanged while this process runs (the disk flipping a bit under the page cache)
is the disk's own checks' to catch, and the next process checks the file afresh.
`AUWILD_CHECK_EVERY_READ=1` checks every chunk on every read, as zarr does.

Errors are those of the zarr path (integrity.py): a missing chunk file is MissingChunk (never
fill values, whatever the metadata's fill_value), a file of the wrong size or checksum is
CorruptChunk, each one line naming track, array and file. Anything else (object stores,
compressed or sharded chunks, other codecs or grids, big-endian data) gets no plan
(`plan_chunk_files` returns None) and is read by zarr. `AUWILD_DIRECT_READ=0` turns the direct
read off, so every read goes through zarr, the reference (reader.py).

crc32c by `google_crc32c` (zarr's own dependency). The `crc32c` package is up to 3x faster on
a buffer in cache, but inside a window read both are bound by memory and within a few percent
of each other (bench/results/store_read.md): not worth a dependency.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass

import google_crc32c
import numpy as np

from extract.store.integrity import CHUNK_DIR, CorruptChunk, MissingChunk

DIRECT_ENV = "AUWILD_DIRECT_READ"  # "0" (or off/false/no): every read through zarr
EVERY_READ_ENV = "AUWILD_CHECK_EVERY_READ"  # "1": crc32c of every chunk on every read

CRC_BYTES = 4
PLAIN_DTYPES = {  # zarr v3 data type names read as plain bytes
    "bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
    "float16", "float32", "float64",
}  # fmt: skip


def crc_extend(crc: int, data: np.ndarray) -> int:
    """crc32c of the bytes before `data` (`crc`) extended over `data` (uint8, contiguous)."""
    return google_crc32c.extend(crc, data)


def direct_enabled() -> bool:
    """False when the environment turns direct reads off (AUWILD_DIRECT_READ=0)."""
    return os.environ.get(DIRECT_ENV, "1").strip().lower() not in ("0", "off", "false", "no")


def check_every_read() -> bool:
    """True when the environment asks for every chunk's checksum on every read."""
    return os.environ.get(EVERY_READ_ENV, "0").strip().lower() in ("1", "on", "true", "yes")


class CheckedFiles:
    """The chunk files this process has read whole and found whole, by their `fstat` identity.

    A file is trusted while (device, inode, size, mtime, ctime) are those it had when checked;
    any write, truncation or replacement changes one of them, with one gap: file times tick in
    coarse steps (a few ms), so a file replaced within the same tick, reusing the inode at the
    same size, would look the same. Hence only a file whose ctime is `settle_s` or more in the
    past when checked is remembered: anything that touches it later gets a later ctime. A fresh
    file (a track being written next door) is checked on every read until it settles.
    Bounded: past `limit` entries the record starts afresh (files are checked again)."""

    def __init__(self, limit: int = 1 << 20, settle_s: float = 2.0):
        self.limit = limit
        self.settle_s = settle_s
        self._seen: dict[tuple[int, int], tuple[int, int, int]] = {}

    @staticmethod
    def _key(st: os.stat_result) -> tuple[tuple[int, int], tuple[int, int, int]]:
        return (st.st_dev, st.st_ino), (st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def trusted(self, st: os.stat_result) -> bool:
        ident, version = self._key(st)
        return self._seen.get(ident) == version

    def add(self, st: os.stat_result) -> None:
        """Remember a file just found whole (when it has settled)."""
        if self.now() - st.st_ctime < self.settle_s:
            return
        if len(self._seen) >= self.limit:
            self._seen = {}
        ident, version = self._key(st)
        self._seen[ident] = version

    def now(self) -> float:
        return time.time()

    def clear(self) -> None:
        self._seen = {}


CHECKED = CheckedFiles()  # shared by every reader in the process (workers have their own)


@dataclass(frozen=True)
class ChunkFiles:
    """Where and how the chunk files of one array lie, enough to read windows of it directly."""

    folder: str  # the array's folder (holds zarr.json)
    shape: tuple[int, ...]  # (T, ...)
    dtype: np.dtype
    chunk: int  # frames per chunk file
    key_prefix: str  # chunk file name before the time index ("c/" for the default encoding)
    key_suffix: str  # after it ("/0/0/0" for 4-d arrays: one chunk across the other axes)
    frame_bytes: int  # bytes of one frame

    def path(self, i: int) -> str:
        """The file of chunk `i` (frames i * chunk ...)."""
        return f"{self.folder}/{self.key_prefix}{i}{self.key_suffix}"

    def read(self, start: int, stop: int, tid: str = "?", name: str = "?") -> np.ndarray:
        """Frames start..stop (clipped to the array) as a new array (stop - start, ...)."""
        start, stop = max(0, int(start)), min(int(stop), self.shape[0])
        stop = max(start, stop)
        out = np.empty((stop - start, *self.shape[1:]), self.dtype)
        if stop == start:
            return out
        flat = out.reshape(-1).view(np.uint8)  # (n * frame_bytes,) the output's own memory
        fb = self.frame_bytes
        whole = self.chunk * fb
        every = check_every_read()
        for i in range(start // self.chunk, -(-stop // self.chunk)):
            c0 = i * self.chunk
            lo, hi = max(start, c0), min(stop, c0 + self.chunk)
            mine = flat[(lo - start) * fb : (hi - start) * fb]  # this chunk's frames in the window
            fd, st = self._open(i, whole, start, stop, tid, name)
            try:
                if not every and CHECKED.trusted(st):  # checked before, unchanged since
                    self._fill(fd, [mine], (lo - c0) * fb, i, start, stop, tid, name)
                    continue
                parts = []  # the file's bytes in order
                bounce = _bounce(whole) if lo > c0 or hi < c0 + self.chunk else None
                if lo > c0:
                    parts.append(bounce[: (lo - c0) * fb])
                parts.append(mine)
                if hi < c0 + self.chunk:
                    parts.append(bounce[(hi - c0) * fb : whole])
                slot = np.empty(CRC_BYTES, np.uint8)
                self._fill(fd, [*parts, slot], 0, i, start, stop, tid, name)
            finally:
                os.close(fd)
            crc = 0
            for p in parts:
                crc = crc_extend(crc, p)
            if crc != int.from_bytes(slot.tobytes(), "little"):
                raise CorruptChunk(
                    f"track {tid!r} array {name!r}: chunk file {self.path(i)} does not decode "
                    f"(frames {start}..{stop}; crc32c checksum mismatch)"
                )
            CHECKED.add(st)
        return out

    def _open(self, i, whole, start, stop, tid, name) -> tuple[int, os.stat_result]:
        """(open descriptor, fstat) of chunk file `i`, of the size a whole chunk has, or raise
        naming it."""
        path = self.path(i)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise MissingChunk(
                f"track {tid!r} array {name!r}: chunk file {path} is missing"
            ) from None
        st = os.fstat(fd)
        if st.st_size != whole + CRC_BYTES:
            os.close(fd)
            raise CorruptChunk(
                f"track {tid!r} array {name!r}: chunk file {path} does not decode "
                f"(frames {start}..{stop}; {st.st_size} bytes, expected {whole + CRC_BYTES})"
            )
        return fd, st

    def _fill(self, fd, buffers, offset, i, start, stop, tid, name) -> None:
        """Fill `buffers` in order with the file's bytes from `offset`, or raise naming it."""
        views = [memoryview(b) for b in buffers]
        while views:  # preadv may return less than asked: go on from where it stopped
            n = os.preadv(fd, views, offset)
            if n <= 0:
                raise CorruptChunk(
                    f"track {tid!r} array {name!r}: chunk file {self.path(i)} does not decode "
                    f"(frames {start}..{stop}; cut short at byte {offset})"
                )
            offset += n
            while views and n >= len(views[0]):
                n -= len(views.pop(0))
            if n:
                views[0] = views[0][n:]


_local = threading.local()


def _bounce(nbytes: int) -> np.ndarray:
    """This thread's bounce buffer for edge chunks, at least `nbytes` (kept between reads)."""
    buf = getattr(_local, "buf", None)
    if buf is None or len(buf) < nbytes:
        buf = _local.buf = np.empty(nbytes, np.uint8)
    return buf


def plan_chunk_files(folder: str, meta: dict) -> ChunkFiles | None:
    """A ChunkFiles for the array whose zarr.json is `meta` in local `folder`, or None when its
    chunks are not plain bytes + crc32c, one file per chunk along time (zarr reads those)."""
    if meta.get("zarr_format") != 3 or meta.get("node_type", "array") != "array":
        return None
    if meta.get("storage_transformers"):
        return None
    dtype_name = meta.get("data_type")
    if not isinstance(dtype_name, str) or dtype_name not in PLAIN_DTYPES:
        return None
    dtype = np.dtype(dtype_name)
    codecs = list(meta.get("codecs") or [])
    if [c.get("name") for c in codecs] != ["bytes", "crc32c"]:
        return None
    endian = (codecs[0].get("configuration") or {}).get("endian")
    if dtype.itemsize > 1 and (endian != "little" or sys.byteorder != "little"):
        return None
    shape = tuple(int(s) for s in meta.get("shape", ()))
    grid = meta.get("chunk_grid") or {}
    if grid.get("name") != "regular" or not shape:
        return None
    chunk_shape = [int(c) for c in (grid.get("configuration") or {}).get("chunk_shape", ())]
    if len(chunk_shape) != len(shape) or tuple(chunk_shape[1:]) != shape[1:] or chunk_shape[0] < 1:
        return None
    encoding = meta.get("chunk_key_encoding") or {"name": "default"}
    sep = (encoding.get("configuration") or {}).get("separator")
    rest = ["0"] * (len(shape) - 1)
    if encoding.get("name") == "default":
        sep = sep or "/"
        prefix, suffix = CHUNK_DIR + sep, "".join(sep + r for r in rest)
    elif encoding.get("name") == "v2":
        sep = sep or "."
        prefix, suffix = "", "".join(sep + r for r in rest)
    else:
        return None
    if sep not in ("/", "."):
        return None
    frame_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    return ChunkFiles(folder.rstrip("/"), shape, dtype, chunk_shape[0], prefix, suffix, frame_bytes)
