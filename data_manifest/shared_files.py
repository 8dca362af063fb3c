"""Files written for a team: atomic replacement with the mode the umask gives, never mkstemp's 0600.

Stores, runs, checkpoints, reports and submissions are read by teammates. `tempfile.mkstemp`
creates its file 0600, and `os.replace` keeps that mode, so a file written "atomically" the usual
way is private to its author. Every atomic write in the project goes through `write_atomic`,
which gives the file the mode a plain `open(path, "w")` would have had (0644 under umask 022).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask (read by setting and restoring it, under a lock)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def shared_mode(executable: bool = False) -> int:
    """Mode a new file (0o666) or folder/executable (0o777) gets under the current umask."""
    return (0o777 if executable else 0o666) & ~current_umask()


def write_atomic(path: str | os.PathLike, data: bytes, *, fsync: bool = False) -> None:
    """Replace `path` whole with `data`: readers see the old or the new content, never a part.

    The temporary file lives in the same folder (so `os.replace` is a rename), starts with a dot
    (listings skip it), and gets the umask's mode before it is renamed into place. With `fsync`,
    the bytes and the folder entry are on disk when this returns (checkpoints).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".tmp-{target.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, shared_mode())
        os.replace(tmp, target)
        if fsync:
            _fsync_dir(target.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str | os.PathLike, text: str, *, fsync: bool = False) -> None:
    """`write_atomic` for UTF-8 text."""
    write_atomic(path, text.encode("utf-8"), fsync=fsync)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some filesystems do not open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike, *, folder: bool = False) -> Iterator[Path]:
    """A temporary name beside `path` to build a large file (or a folder) under, renamed into
    place when the block ends without error and removed otherwise; what is built there is created
    with plain `open` / `mkdir`, so the umask decides its mode (the file is set to it again)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{target.name}.{os.getpid()}.{secrets.token_hex(4)}"
    if folder:
        os.mkdir(tmp)
    try:
        yield tmp
        if not folder:
            os.chmod(tmp, shared_mode())
            os.replace(tmp, target)
        elif target.exists():  # a folder cannot be renamed over a full one: swap, then drop
            old = target.parent / f".old-{target.name}.{os.getpid()}.{secrets.token_hex(4)}"
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
