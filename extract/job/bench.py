"""End-to-end extraction speed beside the encoders alone and the writer alone, on one track.

Every pass runs the job's own code (models.py, plan.py, stages.py, runner.py); the bench adds
only the clocks. Three rates over the same track, models and machine:

- `encoder_only_fps`, the ceiling: the visual encoders fed with crops already in
  memory (frames with a face, as the job encodes: `stages.encode_visual`) and the
  audio encoders with audio already decoded (`stages.pool_audio`);
- `writer_only_fps`: the track's arrays, already computed, written into a fresh
  store by the job's writer code (`open_writer`, `stages.VisualArrays` through a
  writer thread, `stages.write_audio`), commit included;
- `end_to_end_fps`: the job on the track in a fresh store: planning it (signing
  its sources) and `run_track` (decode, faces, alignment, regions, encoders and
  writes, overlapped as the job overlaps them, audio decoded afresh). Model
  loading and store set-up stay outside the clock: a first warm-up run loads
  the models, decoders and kernels, which every later pass shares (one ModelCache).

Where the time goes comes from a plain sequential pass over the same track: the job's
`face_batches` with a timer (decode, detect, landmarks, warp), then the encoder-only
and writer-only passes (encode_visual, decode_audio, encode_audio, write). Its stages add
up to more than the end-to-end time when the job overlaps them.

The end-to-end goals on a GPU: at least 0.7 of encoder-only from aligned crops,
0.5 from full 720p video (`goal_ratio` in the result).
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data_manifest.shared_files import write_text_atomic
from data_manifest.source_signature import source_signature
from data_manifest.user_error import UserError
from extract.job.config import ExtractConfig
from extract.job.group_fields import group_fields
from extract.job.models import ModelCache
from extract.job.plan import StoreState, TrackPlan, plan
from extract.job.runner import open_writer, run_track
from extract.job.shard import Shard
from extract.job.stages import (
    StageError,
    VisualArrays,
    Writes,
    audio_valid,
    encode_visual,
    face_batches,
    pool_audio,
    probe_times,
    start_faces,
    track_attrs,
    track_audio,
    uses_frames,
    write_audio,
    write_audio_valid,
)
from extract.job.timeline import frame_ends
from extract.store import schema

STAGES = (
    "decode",
    "detect",
    "landmarks",
    "warp",
    "encode_visual",
    "decode_audio",
    "encode_audio",
    "write",
)
GOAL_RATIO = {"frames": 0.7, "video": 0.5}  # end-to-end / encoder-only on a GPU
ONE_SHARD = Shard(0, 1)


def pick_track(manifest: pd.DataFrame, cfg: ExtractConfig, track: str | None) -> TrackPlan:
    """The track to time, as the job plans it: `track`, or the first usable row with a video."""
    only = None if track is None else {track}
    # an empty store and unsigned sources: which rows the job would extract, nothing read
    picked = plan(
        manifest,
        StoreState(),
        dict.fromkeys(group_fields(cfg), ""),
        ONE_SHARD,
        only,
        signature=lambda row: {},
    )
    if track is not None:
        if picked.unknown:
            raise UserError(f"track {track!r} is not in the manifest")
        for row in picked.skipped_rows + picked.bad_ids:
            raise UserError(f"track {track!r} (manifest row {row.row_number}): {row.why}")
        return picked.tracks[0]
    for p in picked.tracks:
        if isinstance(p.row.get("video"), str) and p.row["video"]:
            return p
    raise UserError("no track to time: the manifest has no usable track with a video")


def _job_pass(one: pd.DataFrame, cfg: ExtractConfig, models: ModelCache, store: Path) -> float:
    """Seconds the job spends on the one track of `one` in a fresh store: plan it, run_track."""
    from extract.audio_decode import clear_audio_cache

    writer, fingerprints = open_writer(str(store), cfg, group_fields(cfg))
    state = StoreState.read(str(store))
    clear_audio_cache()  # the job decodes each video's audio once: no earlier pass's copy
    t0 = time.perf_counter()
    p = plan(one, state, fingerprints, ONE_SHARD).todo[0]
    try:
        run_track(p, writer, cfg, models, advance=lambda n: None)
    except StageError as exc:
        if isinstance(exc.error, UserError):  # a model that cannot load
            raise exc.error from None
        raise UserError(f"bench track {p.track_id} failed at {exc.stage}: {exc}") from exc
    return time.perf_counter() - t0


def _faces_pass(p: TrackPlan, n_frames: int, cfg: ExtractConfig, models: ModelCache, stages):
    """The job's face_batches, run through with a timer: (batches, face rate, face mode)."""
    backend, use_frames, mode = start_faces(p, cfg, models)

    def timer(name: str, seconds: float) -> None:
        stages[name] += seconds

    batches = list(face_batches(p, n_frames, cfg, backend, use_frames, timer))
    return batches, backend.end_track(), mode


def _best(repeats: int, fn) -> tuple[float, Any]:
    """(least seconds of fn(0) .. fn(repeats - 1), the last call's result)."""
    best, out = float("inf"), None
    for i in range(repeats):
        t0 = time.perf_counter()
        out = fn(i)
        best = min(best, time.perf_counter() - t0)
    return best, out


def _encode_visual(cfg: ExtractConfig, models: ModelCache, batches) -> dict[str, list[dict]]:
    """Per encoder, per batch: its outputs (zeros where no face), as the job encodes them."""
    return {
        name: [encode_visual(models.visual(name), b["crops"], b["valid"], b) for b in batches]
        for name in cfg.visual
    }


def _encode_audio(cfg: ExtractConfig, models: ModelCache, audio, times) -> dict[str, np.ndarray]:
    ends = frame_ends(times)
    return {name: pool_audio(models.audio(name), audio, times, ends) for name in cfg.audio}


def _write_track(
    store: Path, p: TrackPlan, cfg: ExtractConfig, models: ModelCache, times, faces, out
) -> None:
    """The track's computed arrays into a fresh store, by the job's writer code."""
    fields = group_fields(cfg)
    writer, _ = open_writer(str(store), cfg, fields)
    n_frames = len(times)
    tw = writer.open_track(p.track_id, n_frames=n_frames, attrs=track_attrs(p, times))
    tw.create_array(schema.TIME, shape=(n_frames,), dtype="float64")
    tw.write(schema.TIME, 0, times)
    visual = [g for g in fields if g == schema.FACE_GROUP or g.startswith("visual/")]
    if visual:
        encoders = {name: models.visual(name) for name in cfg.visual}
        shapes = {name: enc.outputs for name, enc in encoders.items()}
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer") as pool:
            arrays = VisualArrays(tw, n_frames, visual, shapes, cfg, Writes(pool))
            batches, mode = faces
            for i, batch in enumerate(batches):
                arrays.add_faces(batch)
                for name in encoders:
                    arrays.add_encoded(name, batch["start"], out["visual"][name][i])
            arrays.finish(mode, encoders)
    for name, pooled in out["audio"].items():
        write_audio(tw, name, models.audio(name), pooled)
    if schema.AUDIO_VALID_GROUP in fields:
        write_audio_valid(tw, out["audio_valid"])
    tw.commit()


def run_bench(
    manifest: pd.DataFrame, cfg: ExtractConfig, *, track: str | None = None, repeats: int = 1
) -> dict[str, Any]:
    """Time one track (the first with a video, or `track`); each rate is the best of `repeats`."""
    if repeats < 1:
        raise UserError(f"--repeat must be at least 1, got {repeats}")
    p = pick_track(manifest, cfg, track)
    p.signature = source_signature(p.row)  # as the job stores it (the timed job signs anew)
    tid = p.track_id
    one = manifest.iloc[[p.row_number - 1]]
    models = ModelCache(cfg)  # shared by every pass: loaded once, by the warm-up
    stages = dict.fromkeys(STAGES, 0.0)
    with tempfile.TemporaryDirectory(prefix="auwild-bench-") as tmp:
        tmp = Path(tmp)
        _job_pass(one, cfg, models, tmp / "warm.zarr")  # loads models, warms decoders, kernels
        times = probe_times(p, cfg, store="")  # p is planned on an empty store: no stored times
        n_frames = len(times)
        batches, rate, mode = [], None, {}
        out: dict[str, Any] = {"visual": {}}
        if cfg.visual:
            batches, rate, mode = _faces_pass(p, n_frames, cfg, models, stages)
            stages["encode_visual"], out["visual"] = _best(
                repeats, lambda i: _encode_visual(cfg, models, batches)
            )
        audio = None
        if cfg.audio:
            t0 = time.perf_counter()
            audio = track_audio(p, cache=False)
            stages["decode_audio"] = time.perf_counter() - t0
        seconds, out["audio"] = _best(repeats, lambda i: _encode_audio(cfg, models, audio, times))
        stages["encode_audio"] = seconds if audio is not None else 0.0  # no audio: zeros only
        out["audio_valid"] = audio_valid(audio, times)
        stages["write"], _ = _best(
            repeats,
            lambda i: _write_track(
                tmp / f"writer{i}.zarr", p, cfg, models, times, (batches, mode), out
            ),
        )
        e2e_seconds = min(_job_pass(one, cfg, models, tmp / f"e2e{i}.zarr") for i in range(repeats))
    encoder_seconds = stages["encode_visual"] + stages["encode_audio"]

    def fps(seconds: float) -> float:
        return round(n_frames / seconds, 2) if seconds > 0 else float("inf")

    end_to_end, encoder_only, writer_only = (
        fps(max(e2e_seconds, 1e-9)),
        fps(encoder_seconds),
        fps(stages["write"]),
    )
    total = sum(stages.values())
    source = "frames" if cfg.visual and uses_frames(p, cfg) else "video"
    frame_size = (
        [int(batches[0]["frame_hw"][1]), int(batches[0]["frame_hw"][0])] if batches else None
    )
    ratio = _ratio(end_to_end, encoder_only)
    return {
        "track": tid,
        "frames": n_frames,
        "visual_input": source,
        "frame_size": frame_size,
        "visual": dict(cfg.visual),
        "audio": dict(cfg.audio),
        "landmarks": cfg.landmarks,
        "detect_every": cfg.detect_every,
        "device": cfg.device,
        "batch_size": cfg.batch_size,
        "repeats": repeats,
        "end_to_end_fps": end_to_end,
        "encoder_only_fps": encoder_only,
        "writer_only_fps": writer_only,
        "ratio": ratio,  # end-to-end / encoder-only
        "ratios": {
            "end_to_end/encoder_only": ratio,
            "end_to_end/writer_only": _ratio(end_to_end, writer_only),
            "writer_only/encoder_only": _ratio(writer_only, encoder_only),
        },
        "goal_ratio": GOAL_RATIO[source],
        "stages_s": {k: round(v, 4) for k, v in stages.items()},
        "stages_share": {k: round(v / total, 3) if total else 0.0 for k, v in stages.items()},
        "staged_fps": fps(total),
        "face_rate": round(rate.rate, 3) if rate is not None else None,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }


def _ratio(a: float, b: float) -> float | None:
    """a / b to 3 significant digits (tiny CPU encoders make some ratios 0.00x); None when b is
    0 or infinite (nothing timed)."""
    if b in (0, float("inf")):
        return None
    return float(f"{a / b:.3g}")


def report(result: dict[str, Any], json_out: str | None) -> None:
    """Print the result as a table, or as JSON to stdout (`-`) or to a file."""
    if json_out is None:
        for key, value in result.items():
            print(f"{key:>20}: {value}")
        return
    text = json.dumps(result, indent=2) + "\n"
    if json_out == "-":
        sys.stdout.write(text)
    else:
        write_text_atomic(json_out, text)
        print(f"bench result written to {json_out}")
