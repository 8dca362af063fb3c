"""Every file the store writes honours the umask: a teammate (another uid) reads the store."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

from extract.store import TokenStorage
from extract.store.consolidate import consolidate_store
from extract.store.merge import merge_stores
from tests.extract.store.store_fixtures import register_all, small_writer, write_track

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
NOBODY = 65534

READ_AS_OTHER = """
import sys
from extract.store import StoreReader
from extract.store.inspect import inspect_store
from extract.store.verify import verify_store
url = sys.argv[1]
r = StoreReader(url)
assert r.tracks() == ["t0", "t1"], r.tracks()
for tid in r.tracks():
    for name in r.arrays(tid):
        r.read(tid, name)
report = verify_store(url)
assert report.ok, report.problems
assert inspect_store(url)["tracks"] == 2
print("read as", __import__("os").getuid())
"""


def _others_can_run(path: str) -> bool:
    """True when every folder above `path` is traversable and the file executable by others."""
    path = os.path.realpath(path)
    parts = path.split(os.sep)
    for i in range(2, len(parts)):
        if not os.stat(os.sep.join(parts[:i])).st_mode & stat.S_IXOTH:
            return False
    return bool(os.stat(path).st_mode & stat.S_IXOTH)


def _interpreter_for_others() -> str | None:
    """This Python, or a system one of the same version when this one lives in a private home."""
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    for candidate in (sys.executable, shutil.which(version), f"/usr/bin/{version}"):
        if candidate and os.path.exists(candidate) and _others_can_run(candidate):
            return candidate
    return None


@pytest.fixture()
def shared_dir():
    """A folder other users can traverse (pytest's own tmp folders are 0700)."""
    folder = tempfile.mkdtemp(prefix="auwild-shared-")
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _write_store(url: str) -> None:
    storage = TokenStorage("int8", pool=2)
    w = small_writer(url)  # the root, tracks/zarr.json, leases and chunk files
    register_all(w, storage)
    write_track(w, "t0", n=13, storage=storage)
    tw = w.open_track("t1", n_frames=5)  # a live lease file while the store is read
    tw.abort()
    write_track(w, "t1", n=9, seed=1, storage=storage)


def test_files_are_written_with_the_umask_mode(shared_dir):
    old = os.umask(0o022)
    try:
        url = os.path.join(shared_dir, "s.zarr")
        _write_store(url)
        consolidate_store(url)
        merge_stores([url], os.path.join(shared_dir, "m.zarr"))
    finally:
        os.umask(old)
    for top in ("s.zarr", "m.zarr"):
        for root, dirs, files in os.walk(os.path.join(shared_dir, top)):
            for name in dirs:
                mode = stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode)
                assert mode == 0o755, (os.path.join(root, name), oct(mode))
            for name in files:
                mode = stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode)
                assert mode == 0o644, (os.path.join(root, name), oct(mode))


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to run as another uid"
)
def test_another_uid_reads_lists_and_verifies_the_store(shared_dir):
    old = os.umask(0o022)
    try:
        url = os.path.join(shared_dir, "s.zarr")
        _write_store(url)
    finally:
        os.umask(old)
    python = _interpreter_for_others()
    if python is None:
        pytest.skip("no Python interpreter another user may run")
    packages = [p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p)]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join([REPO, *packages]),
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": shared_dir,
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        [python, "-c", READ_AS_OTHER, url],
        user=NOBODY,
        group=NOBODY,
        env=env,
        cwd=shared_dir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"read as {NOBODY}" in done.stdout
