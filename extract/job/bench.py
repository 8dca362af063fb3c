"""End-to-end extraction speed against the encoders alone, on the same machine, models and video.

`encoder_only_fps` is the ceiling: the encoders fed with crops already in memory and audio
already decoded. `end_to_end_fps` is a real track extraction into a fresh store (decode,
faces, alignment, regions, encoders, writes). Their ratio says how much the rest costs.
"""

from __future__ import annotations

import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from data_manifest.cli_support import UserError
from extract.job.config import ExtractConfig
from extract.job.shard import Shard


def run_bench(
    manifest: pd.DataFrame, cfg: ExtractConfig, *, track: str | None = None
) -> dict[str, Any]:
    from extract.audio_decode import load_audio
    from extract.job.group_fields import group_fields
    from extract.job.models import ModelCache
    from extract.job.plan import StoreState, plan
    from extract.job.runner import open_writer, run_track
    from extract.job.stages import face_batches, uses_frames

    rows = (
        manifest[manifest["video"].astype(str) != ""]
        if track is None
        else manifest[manifest["track_id"] == track]
    )
    if rows.empty:
        raise UserError(
            "no track to time: the manifest has no track with a video"
            if track is None
            else f"track {track!r} is not in the manifest"
        )
    one = rows.iloc[:1]
    models = ModelCache(cfg)
    with tempfile.TemporaryDirectory(prefix="auwild-bench-") as tmp:
        store = str(Path(tmp) / "bench.zarr")
        writer, fingerprints = open_writer(store, cfg, group_fields(cfg))
        (p,) = plan(one, StoreState(), fingerprints, Shard(0, 1)).tracks
        # untimed pass: warms caches, models and decoders, and collects the encoder inputs
        times = _times(p)
        n_frames = len(times)
        batches = []
        if cfg.visual:
            use_frames = uses_frames(p, cfg)
            backend = models.backend(aligned_input=use_frames)
            backend.reset(side=p.row.get("side") or "none")
            batches = list(face_batches(p, n_frames, cfg, backend, use_frames))
        audio = load_audio(p.row["video"]) if cfg.audio else None
        for name in cfg.visual:  # warm-up
            models.visual(name).encode(batches[0]["crops"][:2])
        # the job encodes only frames with a face; so does the ceiling
        inputs = [b["crops"][b["valid"]] for b in batches if b["valid"].any()]

        t0 = time.perf_counter()
        for crops in inputs:
            for name in cfg.visual:
                models.visual(name).encode(crops)
        if audio is not None and audio.valid:
            for name in cfg.audio:
                models.audio(name).encode(audio)
        encoder_seconds = time.perf_counter() - t0

        store2 = str(Path(tmp) / "bench2.zarr")
        writer2, fingerprints2 = open_writer(store2, cfg, group_fields(cfg))
        (p2,) = plan(one, StoreState(), fingerprints2, Shard(0, 1)).tracks
        t0 = time.perf_counter()
        run_track(p2, writer2, cfg, models, lambda n: None)
        e2e_seconds = time.perf_counter() - t0

    end_to_end = n_frames / e2e_seconds
    encoder_only = n_frames / encoder_seconds if encoder_seconds > 0 else float("inf")
    return {
        "track": p.track_id,
        "frames": n_frames,
        "visual": dict(cfg.visual),
        "audio": {k: v for k, v in cfg.audio.items()},
        "landmarks": cfg.landmarks,
        "device": cfg.device,
        "batch_size": cfg.batch_size,
        "end_to_end_fps": round(end_to_end, 2),
        "encoder_only_fps": round(encoder_only, 2),
        "ratio": round(end_to_end / encoder_only, 3),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }


def _times(track_plan):
    from extract.job.timeline import video_frame_times

    return video_frame_times(track_plan.row["video"])
