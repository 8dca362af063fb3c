"""Test-wide settings: every cache in a temporary folder, one thread, no network models."""

from __future__ import annotations

import os
import shutil
import tempfile

_CACHE_ROOT = tempfile.mkdtemp(prefix="auwild-test-cache-")
for _var in ("HF_HOME", "TORCH_HOME", "XDG_CACHE_HOME", "MPLCONFIGDIR"):
    os.environ[_var] = os.path.join(_CACHE_ROOT, _var.lower())
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402


def pytest_sessionfinish(session, exitstatus):
    """The caches go with the session: a run leaves nothing behind in the temp folder."""
    shutil.rmtree(_CACHE_ROOT, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """GPU tests are skipped on machines without CUDA."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # torch missing is a set-up error reported elsewhere
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
