"""Window reads straight from local chunk files: no codec pipeline, no intermediate copy.

Patch tokens (fp16, int8) are stored as plain bytes followed by zarr's crc32c: their chunk files
can be read without zarr. For such an array (codecs exactly `bytes` then `crc32c`, a regular
grid chunked along time only, no sharding, a local disk) a read of frames [start, stop) opens
each chunk file the window touches and fills it with one `preadv`: the frames inside the window
land straight in the numpy output, the frames of an edge chunk outside the window in one reused
bounce buffer, the last 4 bytes in a checksum slot. The checksum is zarr's crc32c codec: the
4 bytes at the end of the file are the crc32c of every byte before them, little endian,
including the fill-padded frames past the end of the array in its last chunk; so every chunk is
read whole and checked before its frames are returned.

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
from dataclasses import dataclass

import google_crc32c
import numpy as np

from extract.store.integrity import CHUNK_DIR, CorruptChunk, MissingChunk

DIRECT_ENV = "AUWILD_DIRECT_READ"  # "0" (or off/false/no): every read through zarr

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
        for i in range(start // self.chunk, -(-stop // self.chunk)):
            c0 = i * self.chunk
            lo, hi = max(start, c0), min(stop, c0 + self.chunk)
            parts = []  # the file's bytes in order: (buffer, offset in the file)
            bounce = None
            if lo > c0 or hi < c0 + self.chunk:
                bounce = _bounce(whole)
            if lo > c0:
                parts.append(bounce[: (lo - c0) * fb])
            parts.append(flat[(lo - start) * fb : (hi - start) * fb])
            if hi < c0 + self.chunk:
                parts.append(bounce[(hi - c0) * fb : whole])
            slot = np.empty(CRC_BYTES, np.uint8)
            self._read_chunk(i, parts, slot, whole, start, stop, tid, name)
            crc = 0
            for p in parts:
                crc = crc_extend(crc, p)
            if crc != int.from_bytes(slot.tobytes(), "little"):
                raise CorruptChunk(
                    f"track {tid!r} array {name!r}: chunk file {self.path(i)} does not decode "
                    f"(frames {start}..{stop}; crc32c checksum mismatch)"
                )
        return out

    def _read_chunk(self, i, parts, slot, whole, start, stop, tid, name) -> None:
        """Fill `parts` then `slot` with the bytes of chunk file `i`, or raise naming it."""
        path = self.path(i)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise MissingChunk(
                f"track {tid!r} array {name!r}: chunk file {path} is missing"
            ) from None
        try:
            size = os.fstat(fd).st_size
            if size != whole + CRC_BYTES:
                raise CorruptChunk(
                    f"track {tid!r} array {name!r}: chunk file {path} does not decode "
                    f"(frames {start}..{stop}; {size} bytes, expected {whole + CRC_BYTES})"
                )
            views = [memoryview(p) for p in parts] + [memoryview(slot)]
            offset = 0
            while views:  # preadv may return less than asked: go on from where it stopped
                n = os.preadv(fd, views, offset)
                if n <= 0:
                    raise CorruptChunk(
                        f"track {tid!r} array {name!r}: chunk file {path} does not decode "
                        f"(frames {start}..{stop}; cut short at byte {offset})"
                    )
                offset += n
                while views and n >= len(views[0]):
                    n -= len(views.pop(0))
                if n:
                    views[0] = views[0][n:]
        finally:
            os.close(fd)


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
