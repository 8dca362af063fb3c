"""The `mediapipe` extra installs a working environment of its own: a fresh Python 3.11 venv with
`pip install -e ".[mediapipe]"` (numpy<2 and what follows from it), one headless OpenCV, and one
synthetic track through `auwild-extract run --landmarks mediapipe` into a complete store.

Needs the package registry the first time (pip's cache makes reruns fast) and python3.11.
torch comes from AUWILD_TEST_TORCH (default torch==2.13.0, the CPU build the Makefile installs).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
TORCH = os.environ.get("AUWILD_TEST_TORCH", "torch==2.13.0")
FRAMES = 20


def _run(cmd: list[str], cwd: Path, timeout: float) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # conftest points XDG_CACHE_HOME at a temporary folder; pip keeps its cache where it lives
    env.setdefault("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def mediapipe_env(tmp_path_factory):
    """bin/ of a fresh venv with auwild[mediapipe] and one headless OpenCV; seconds per step."""
    python = shutil.which("python3.11")
    if python is None:
        pytest.skip("python3.11 is not installed (MediaPipe 0.10.21 has wheels up to 3.12)")
    venv = tmp_path_factory.mktemp("mediapipe-env") / "venv"
    timings = {}
    t0 = time.perf_counter()
    _run([python, "-m", "venv", str(venv)], ROOT, 120)
    # --no-compile: Python compiles what it imports; byte-compiling all of torch, jax and
    # transformers up front is most of pip's CPU time
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-compile"]
    _run(pip + [TORCH], ROOT, 900)
    timings["venv + torch"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    _run(pip + ["-e", f"{ROOT}[mediapipe]"], ROOT, 1200)
    _run(["sh", str(ROOT / "docker" / "one_opencv.sh"), str(venv / "bin" / "python")], ROOT, 300)
    timings["auwild[mediapipe]"] = time.perf_counter() - t0
    yield venv / "bin", timings
    shutil.rmtree(venv, ignore_errors=True)  # about 2 GB; pytest keeps its last three tmp roots


def test_mediapipe_extra_resolves_to_versions_that_import_together(mediapipe_env):
    bin_dir, _ = mediapipe_env
    probe = (
        "import json, importlib.metadata as md, numpy, pandas, pyarrow, pyarrow.parquet, cv2, "
        "mediapipe, torch, transformers, zarr\n"
        "from transformers.utils.import_utils import is_torch_available\n"
        "cv = [d for d in ('opencv-python', 'opencv-contrib-python', 'opencv-python-headless')"
        " if any(True for _ in md.distributions(name=d))]\n"
        "print(json.dumps({'numpy': numpy.__version__, 'pandas': pandas.__version__,"
        " 'pyarrow': pyarrow.__version__, 'cv2': cv2.__version__, 'opencv': cv,"
        " 'mediapipe': mediapipe.__version__, 'facemesh': hasattr(mediapipe, 'solutions'),"
        " 'torch_on': is_torch_available()}))"
    )
    got = json.loads(_run([str(bin_dir / "python"), "-c", probe], ROOT, 300))
    assert got["numpy"].startswith("1."), got
    assert int(got["pyarrow"].split(".")[0]) < 21, got
    assert int(got["pandas"].split(".")[0]) < 3, got
    assert got["opencv"] == ["opencv-python-headless"], got
    assert tuple(int(x) for x in got["cv2"].split(".")[:2]) < (4, 12), got
    assert got["facemesh"], f"mediapipe {got['mediapipe']} has no FaceMesh"
    assert got["torch_on"], "transformers disabled this torch"


def test_one_synthetic_track_through_mediapipe_into_a_complete_store(mediapipe_env, tmp_path):
    from extract.store.reader import StoreReader

    bin_dir, timings = mediapipe_env
    t0 = time.perf_counter()
    _run(
        [str(bin_dir / "auwild-manifest"), "synth", "--out", "syn", "--tracks", "1"]
        + ["--frames", str(FRAMES), "--quiet"],
        tmp_path,
        300,
    )
    _run(
        [str(bin_dir / "auwild-manifest"), "affwild2", "--root", "syn", "--out", "m.parquet"],
        tmp_path,
        300,
    )
    _run(
        [str(bin_dir / "auwild-extract"), "tiny-models", "--out", "models", "--only", "dinov2"],
        tmp_path,
        300,
    )
    _run(
        [str(bin_dir / "auwild-extract"), "run", "--manifest", "m.parquet", "--store", "f.zarr"]
        + ["--visual", "dinov2=models/dinov2", "--landmarks", "mediapipe", "--device", "cpu"]
        + ["--visual-input", "video", "--no-progress"],
        tmp_path,
        600,
    )
    timings["synth + extract"] = time.perf_counter() - t0
    print("mediapipe env timings (s):", {k: round(v, 1) for k, v in timings.items()})

    # read back here, with this environment's numpy 2: the store crosses environments
    reader = StoreReader(str(tmp_path / "f.zarr"))
    assert reader.incomplete_tracks() == []
    (tid,) = reader.tracks()
    assert reader.n_frames(tid) == FRAMES
    valid = reader.read(tid, "face/valid")
    box = reader.read(tid, "face/box")
    lm = reader.read(tid, "face/landmarks")
    assert valid.shape == (FRAMES,) and lm.shape == (FRAMES, 68, 2)
    assert valid.mean() >= 0.5, f"MediaPipe found the rendered face in {valid.mean():.0%}"
    v = valid.astype(bool)
    assert (lm[v] >= box[v, None, :2] - 1.0).all() and (lm[v] <= box[v, None, 2:] + 1.0).all()
    cls = reader.read(tid, "visual/dinov2/cls")
    assert cls.shape[0] == FRAMES and np.isfinite(cls.astype(np.float32)).all()
