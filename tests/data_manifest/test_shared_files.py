"""Atomic writes give files the umask's mode, not mkstemp's 0600."""

import os
import stat

import pytest

from data_manifest.shared_files import shared_mode, write_atomic, write_text_atomic


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_write_atomic_honours_umask(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        target = tmp_path / "sub" / "file.json"
        write_atomic(target, b"{}", fsync=True)
        assert stat.S_IMODE(target.stat().st_mode) == mode
        assert shared_mode() == mode
        write_text_atomic(target, "replaced")
        assert target.read_text() == "replaced"
        assert stat.S_IMODE(target.stat().st_mode) == mode
    finally:
        os.umask(old)
    assert [p.name for p in target.parent.iterdir()] == ["file.json"]  # no temporary left
