"""Every clip of tests/data/clips through decoding and through `auwild-extract run` (slow).

The clips carry the quirks users meet (README.md there): a variable-rate file whose container
declares more frames than decode, rotation metadata, audio before and after the video, AAC
priming, 5.1 audio, a one-frame file, files without audio. One job extracts them all with tiny
models from a one-row-per-clip manifest written by `auwild-manifest csv`.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from extract.audio_align import pool_to_frames
from extract.audio_decode import decode_audio
from extract.job.timeline import frame_ends, video_frame_times
from extract.video import iter_video_frames, probe_video

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CLIPS = ROOT / "tests" / "data" / "clips"
BURST_AT = 1.0  # the made clips' 1 kHz burst, container time (make_clips.py)

# clip -> what must hold: decoded frames, first frame time, audio start (None: no audio),
# whether the made 1 kHz burst is in it, display rotation
EXPECTED = {
    "vfr_editlist": dict(frames=95, t0=0.0, audio=0.0, burst=True, rotation=0),
    "audio_late": dict(frames=60, t0=0.0, audio=0.436, burst=True, rotation=0),
    "one_frame": dict(frames=1, t0=0.0, audio=0.0, burst=True, rotation=0),
    "rotated_portrait": dict(frames=10, t0=0.0, audio=None, burst=False, rotation=-90),
    "audio_first_b_frames": dict(frames=23, t0=2002 / 24000, audio=0.0, burst=False, rotation=0),
    "mpeg4_part2_aac32k": dict(frames=149, t0=0.0, audio=0.0, burst=False, rotation=0),
    "no_audio_qcif": dict(frames=120, t0=0.0, audio=None, burst=False, rotation=0),
    "aac_5_1": dict(frames=132, t0=0.0, audio=0.0, burst=False, rotation=0),
}


def _clip(name: str) -> str:
    return str(CLIPS / f"{name}.mp4")


def test_every_clip_in_the_folder_is_checked():
    assert sorted(p.stem for p in CLIPS.glob("*.mp4")) == sorted(EXPECTED)
    assert sum(p.stat().st_size for p in CLIPS.iterdir()) < 5_000_000


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_decoding(name):
    """Video timeline, audio decode and alignment of each clip, without the job."""
    want = EXPECTED[name]
    path = _clip(name)
    batches = list(iter_video_frames(path, 16))
    times = np.concatenate([t for t, _ in batches])
    frames = np.concatenate([f for _, f in batches])
    assert len(times) == len(frames) == want["frames"]
    assert times[0] == pytest.approx(want["t0"], abs=1e-6)
    assert np.all(np.diff(times) > 0)  # presentation order, also with B-frames
    np.testing.assert_allclose(video_frame_times(path), times)  # the job's timeline agrees
    info = probe_video(path)
    assert info.rotation == want["rotation"]
    assert frames.shape[1:3] == (info.height, info.width)  # shown size, after rotation
    audio = decode_audio(path)
    if want["audio"] is None:
        assert not audio.valid and audio.reason == "no audio stream"
        return
    assert audio.valid and audio.sr == 16000 and audio.samples.ndim == 1
    assert audio.start == pytest.approx(want["audio"], abs=1e-3)
    # a per-10-ms energy "feature" pooled onto the frames by presentation time
    hop = audio.sr // 100
    n = len(audio.samples) // hop
    energy = (audio.samples[: n * hop].reshape(n, hop) ** 2).mean(1, keepdims=True)  # (n, 1)
    starts = audio.start + np.arange(n) / 100.0
    pooled, covered = pool_to_frames(energy, starts, starts + 0.01, times, frame_ends(times))
    assert covered[(times >= audio.start) & (times + 0.04 < audio.end)].all()
    # a frame ending more than one feature hop before the audio starts has no audio
    assert not covered[frame_ends(times) < audio.start - 0.01].any()
    assert want["audio"] == 0.0 or (~covered).any()
    if want["burst"]:  # the burst sits at its container time, priming and offsets folded in
        onset = starts[np.argmax(energy[:, 0] > 0.25 * energy.max())]
        assert onset == pytest.approx(BURST_AT, abs=0.012)
        if len(times) > 1:
            loud = times[np.argmax(pooled[:, 0])]
            assert BURST_AT - 0.07 <= loud <= BURST_AT + 0.1


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """`auwild-extract tiny-models`, `auwild-manifest csv` and `auwild-extract run` on all clips."""
    base = tmp_path_factory.mktemp("real_clips")
    out = _run(
        ["-m", "extract", "tiny-models", "--out", str(base / "models"), "--only", "dinov2", "wavlm"]
    )
    models = json.loads(out.stdout)
    table = base / "clips.csv"
    with open(table, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["track_id", "video", "split"])
        for name in sorted(EXPECTED):
            writer.writerow([name, _clip(name), "train"])
    manifest = base / "manifest.parquet"
    _run(["-m", "data_manifest", "csv", "--table", str(table), "--out", str(manifest)])
    store = base / "features.zarr"
    proc = _run(
        [
            "-m",
            "extract",
            "run",
            "--manifest",
            str(manifest),
            "--store",
            str(store),
            "--visual",
            f"dinov2={models['dinov2']}",
            "--audio",
            f"wavlm={models['wavlm']},logmel",
            "--crop-size",
            "56",
            "--batch-size",
            "16",
            "--no-progress",
        ]
    )
    from extract.store import StoreReader

    return StoreReader(str(store)), proc.stderr


def test_run_extracts_every_clip(job):
    reader, log = job
    assert sorted(reader.tracks()) == sorted(EXPECTED)  # and the job exited 0: none failed


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_run_per_clip(job, name):
    reader, log = job
    want = EXPECTED[name]
    n = want["frames"]
    assert reader.n_frames(name) == n  # the store's length is the decoded frames
    times = reader.read(name, "time")
    decoded = np.concatenate([t for t, _ in iter_video_frames(_clip(name), 64)])
    np.testing.assert_allclose(times, decoded)
    for array, shape in [
        ("face/valid", (n,)),
        ("visual/dinov2/cls", (n, 32)),
        ("audio/wavlm", (n, 32)),
        ("audio/logmel", (n, 80)),
        ("audio/valid", (n,)),
    ]:
        assert reader.read(name, array).shape == shape, array
    valid = reader.read(name, "audio/valid")
    logmel = reader.read(name, "audio/logmel").astype(np.float32)
    if want["audio"] is None:
        assert not valid.any()
        assert not logmel.any() and not reader.read(name, "audio/wavlm").any()
        assert f"{name}: audio not usable (no audio stream)" in log
        return
    audio = decode_audio(_clip(name))  # a frame has audio when its time lies inside it
    assert audio.start == pytest.approx(want["audio"], abs=1e-3)
    np.testing.assert_array_equal(valid, (times >= audio.start - 1e-6) & (times < audio.end))
    assert valid.any() and logmel[valid].any()
    if want["burst"] and n > 1:  # loudest frame at the burst: the audio offset is respected
        loud = times[np.argmax(logmel.mean(1))]
        assert BURST_AT - 0.07 <= loud <= BURST_AT + 0.1, loud


def test_run_warns_once_about_the_variable_rate_clip(job):
    _, log = job
    lines = [line for line in log.splitlines() if "container declares" in line]
    assert len(lines) == 1, lines
    assert "vfr_editlist.mp4: container declares 98 frames, 95 decoded" in lines[0]
    assert "truncated" not in log
