"""The failures table: one JSON line per failed track, appended beside the store.

Several shard processes may append at once; each record is one `write` of one line
on a file opened in append mode, which POSIX keeps whole. The file gets the umask's mode,
so teammates running other shards can append to it and read it.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from data_manifest.shared_files import shared_mode


@dataclass
class Failure:
    track: str  # track id from the manifest
    stage: str  # probe, decode, faces, visual:<enc>, audio:<enc>, write
    error: str  # one line: exception type and message
    time: str  # ISO time of the failure
    detail: str = ""  # the traceback's last lines, for the curious


def failures_path(store: str) -> Path | None:
    """`<store>/../<store name>.failures.jsonl` for local stores; None for remote ones."""
    if "://" in store and not store.startswith("file://"):
        return None
    path = Path(store.removeprefix("file://"))
    return path.with_name(path.name + ".failures.jsonl")


class FailureLog:
    """Collects this process's failures and appends them to the shared table."""

    def __init__(self, path: Path | None):
        self.path = path
        self.records: list[Failure] = []

    def record(self, track: str, stage: str, exc: BaseException) -> Failure:
        failure = Failure(
            track=track,
            stage=stage,
            error=f"{type(exc).__name__}: {exc}".splitlines()[0][:500],
            time=time.strftime("%Y-%m-%dT%H:%M:%S"),
            detail="".join(traceback.format_exception(exc)[-3:])[-2000:],
        )
        self.records.append(failure)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            line = json.dumps(asdict(failure)) + "\n"
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, shared_mode())
            try:
                os.write(fd, line.encode("utf-8"))
            finally:
                os.close(fd)
        return failure


def read_failures(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
