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
    from extract.job.runner import Extractor

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
    with tempfile.TemporaryDirectory(prefix="auwild-bench-") as tmp:
        store = str(Path(tmp) / "bench.zarr")
        ext = Extractor(cfg, store)
        (plan,) = ext.plan(one, Shard(0, 1), None)
        # untimed pass: warms caches, models and decoders, and collects the encoder inputs
        times = _times(plan)
        n_frames = len(times)
        batches = list(ext._visual_batches(plan, times)) if cfg.visual else []
        audio = ext._audio_track(plan.row["video"]) if cfg.audio else None
        for name in cfg.visual:  # warm-up
            ext.visual_encoder(name).encode(batches[0]["crops"][:2])
        # the job encodes only frames with a face; so does the ceiling
        inputs = [b["crops"][b["valid"]] for b in batches if b["valid"].any()]

        t0 = time.perf_counter()
        for crops in inputs:
            for name in cfg.visual:
                ext.visual_encoder(name).encode(crops)
        if audio is not None and audio.valid:
            for name in cfg.audio:
                ext.audio_encoder(name).encode(audio)
        encoder_seconds = time.perf_counter() - t0

        store2 = str(Path(tmp) / "bench2.zarr")
        ext2 = Extractor(cfg, store2)
        ext2._backend = ext._backend
        ext2._visual, ext2._audio_enc = ext._visual, ext._audio_enc
        (plan2,) = ext2.plan(one, Shard(0, 1), None)
        t0 = time.perf_counter()
        ext2.run_track(plan2, lambda n: None)
        e2e_seconds = time.perf_counter() - t0

    end_to_end = n_frames / e2e_seconds
    encoder_only = n_frames / encoder_seconds if encoder_seconds > 0 else float("inf")
    return {
        "track": plan.track_id,
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


def _times(plan):
    from extract.job.timeline import video_frame_times

    return video_frame_times(plan.row["video"])
