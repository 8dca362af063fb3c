"""Deterministic partition of the manifest's tracks over N processes (`--shard i/N`).

A track goes to shard `crc32(track_id) % N`: stable when the manifest grows or is
reordered, the same on every machine, and needs no coordination between processes.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from data_manifest.user_error import UserError


@dataclass(frozen=True)
class Shard:
    index: int  # this process's shard, 0 <= index < count
    count: int  # total number of shards

    def owns(self, track_id: str) -> bool:
        return zlib.crc32(track_id.encode("utf-8")) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str | None) -> Shard:
    """Parse "i/N" (0-based i); None means the whole manifest. SLURM: `--shard $SLURM_ARRAY_TASK_ID/N`."""
    if not text:
        return Shard(0, 1)
    try:
        index_text, count_text = text.split("/")
        shard = Shard(int(index_text), int(count_text))
    except ValueError:
        raise UserError(f"--shard must look like i/N (e.g. 0/4), got {text!r}") from None
    if shard.count < 1 or not 0 <= shard.index < shard.count:
        raise UserError(f"--shard {text}: need 0 <= i < N")
    return shard
