"""End-to-end extraction speed beside the encoders alone and the writer alone, on one track.

Three rates over the same track, models and machine:

- `encoder_only_fps`, the ceiling: the visual encoders fed with crops already in
  memory (frames with a face, as the job encodes) and the audio encoders with
  audio already decoded;
- `writer_only_fps`: the track's arrays, already computed, written into a fresh
  store as the job lays them out;
- `end_to_end_fps`: a real extraction of the track into a fresh store through
  the job's public entry point (`run_extraction`), less the time the same call
  takes with nothing to extract (model loading and store set-up), so it counts
  decode, faces, alignment, regions, encoders and writes, overlapped as the job
  overlaps them.

Where the time goes comes from a plain sequential pass over the same track, each
stage timed on its own: decode, detect, landmarks, warp (alignment, crops and
regions), encode_visual, decode_audio, encode_audio, write. Its stages add up to
more than the end-to-end time when the job overlaps them.

The end-to-end goals on a GPU: at least 0.7 of encoder-only from aligned crops,
0.5 from full 720p video (`goal_ratio` in the result).
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data_manifest.shared_files import write_text_atomic
from data_manifest.user_error import UserError
from extract.job.config import ExtractConfig

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


def _pick_row(manifest: pd.DataFrame, track: str | None) -> pd.DataFrame:
    if track is not None:
        rows = manifest[manifest["track_id"].astype(str) == track]
        if rows.empty:
            raise UserError(f"track {track!r} is not in the manifest")
        return rows.iloc[:1]
    rows = manifest[manifest["video"].astype(str) != ""]
    if "status" in rows:
        rows = rows[rows["status"].astype(str).isin(["ok", ""])]
    if rows.empty:
        raise UserError("no track to time: the manifest has no usable track with a video")
    return rows.iloc[:1]


def _uses_frames(row: dict[str, Any], cfg: ExtractConfig) -> bool:
    frames_dir = str(row.get("frames_dir") or "")
    if cfg.visual_input == "frames" and not frames_dir:
        raise UserError(f"track {row['track_id']}: --visual-input frames but no frames folder")
    return bool(frames_dir) and cfg.visual_input in ("auto", "frames")


class _Models:
    """Backend and encoders, loaded once for the timed passes."""

    def __init__(self, cfg: ExtractConfig, aligned: bool) -> None:
        from extract.encoders import load_audio_encoder, load_visual_encoder
        from extract.faces import get_landmark_backend

        self.backend = get_landmark_backend(
            cfg.landmarks, device=cfg.device, aligned_input=aligned, detect_every=cfg.detect_every
        )
        self.visual = {
            name: load_visual_encoder(name, src, device=cfg.device, layer=cfg.visual_layer)
            for name, src in cfg.visual.items()
        }
        self.audio = {}
        for name, src in cfg.audio.items():
            kwargs: dict[str, Any] = {"device": cfg.device}
            if cfg.audio_layers and name != "logmel":
                kwargs["layers"] = list(cfg.audio_layers)
            self.audio[name] = load_audio_encoder(name, src, **kwargs)


def _frame_source(row: dict[str, Any], cfg: ExtractConfig, use_frames: bool):
    """(times (T,), iterator of (present (n,), frames (n, H, W, 3)))."""
    from extract.job.timeline import regular_times, video_frame_times
    from extract.video import iter_frames_folder, iter_video_frames

    video = str(row.get("video") or "")
    if use_frames:
        folder = str(row["frames_dir"])
        numbers = [int(p.stem) for p in Path(folder).glob("*.jpg") if p.stem.isdigit()]
        if not numbers:
            raise UserError(f"{folder}: no numbered .jpg frames")
        times = video_frame_times(video) if video else None
        n = len(times) if times is not None else max(numbers)
        if times is None:
            times = regular_times(n, float(row.get("fps") or cfg.default_fps))
        it = ((p, f) for _, f, p in iter_frames_folder(folder, n, 1.0, cfg.batch_size))
        return times, it
    times = video_frame_times(video)
    return times, ((np.ones(len(f), bool), f) for _, f in iter_video_frames(video, cfg.batch_size))


def _staged_pass(row: dict[str, Any], cfg: ExtractConfig, models: _Models, use_frames: bool):
    """Decode -> faces -> warp, each timed; returns the per-batch arrays and the stage seconds."""
    from extract.align import crop_affine, map_points, warp_crops
    from extract.regions import region_boxes

    stages = dict.fromkeys(STAGES, 0.0)
    backend = models.backend
    backend.aligned_input = use_frames
    _, source = _frame_source(row, cfg, use_frames)
    backend.reset(side=str(row.get("side") or "none"))
    backend(next(source)[1])  # warm-up outside the clock: builds the detector, loads kernels
    backend.reset(side=str(row.get("side") or "none"), track=str(row["track_id"]))
    for key in backend_timings(backend):
        backend_timings(backend)[key] = 0.0
    times, source = _frame_source(row, cfg, use_frames)
    batches: list[dict[str, np.ndarray]] = []
    frame_size = None
    start = 0
    t0 = time.perf_counter()
    for present, frames in source:
        stages["decode"] += time.perf_counter() - t0
        n = min(len(frames), len(times) - start)
        if n <= 0:
            break
        frames, present = frames[:n], present[:n]
        frame_size = [int(frames.shape[2]), int(frames.shape[1])]
        faces = backend(frames)
        t1 = time.perf_counter()
        affine = crop_affine(faces.landmarks, cfg.crop_size)  # (n, 2, 3)
        crops = warp_crops(frames, affine, cfg.crop_size)  # (n, S, S, 3)
        crop_lm = map_points(faces.landmarks, affine)  # (n, 68, 2)
        rois = region_boxes(crop_lm, cfg.crop_size)  # (n, R, 4)
        stages["warp"] += time.perf_counter() - t1
        batches.append(
            {
                "valid": np.asarray(faces.valid, bool) & present,
                "box": faces.box,
                "landmarks": faces.landmarks,
                "align": affine.astype(np.float32),
                "rois": rois.astype(np.float32),
                "crops": crops,
                "crop_landmarks": (crop_lm / cfg.crop_size).astype(np.float32),
            }
        )
        start += n
        t0 = time.perf_counter()
    rate = backend.end_track()
    for key, seconds in backend_timings(backend).items():
        stages[key] += seconds
    return times[:start], batches, stages, frame_size, rate


def backend_timings(backend: Any) -> dict[str, float]:
    """The backend's detect/landmarks seconds (empty for backends that do not keep them)."""
    return getattr(backend, "timings", {})


def _encode_all(
    cfg: ExtractConfig, models: _Models, batches, row, times, stages, repeats: int
) -> dict:
    """Encoder-only pass: visual encoders on the crops with a face, audio encoders on decoded audio."""
    from extract.audio_align import pool_to_frames
    from extract.audio_decode import load_audio
    from extract.job.stages import encode_visual
    from extract.job.timeline import frame_ends

    outputs: dict[str, np.ndarray] = {}
    for enc in models.visual.values():  # warm-up outside the clock, at the batch's shape
        encode_visual(enc, batches[0]["crops"], batches[0]["valid"], batches[0])
    n = sum(len(b["valid"]) for b in batches)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for name, enc in models.visual.items():
            arrays = {k: np.zeros((n, *s), np.float16) for k, s in enc.outputs.items()}
            start = 0
            for b in batches:  # as the job encodes: frames with a face, and what enc needs
                stop = start + len(b["valid"])
                for key, values in encode_visual(enc, b["crops"], b["valid"], b).items():
                    arrays[key][start:stop] = values
                start = stop
            for key, values in arrays.items():
                outputs[f"visual/{name}/{key}"] = values
        best = min(best, time.perf_counter() - t0)
    stages["encode_visual"] = best if models.visual else 0.0
    video = str(row.get("video") or "")
    audio = None
    if models.audio and video:
        t0 = time.perf_counter()
        audio = load_audio(video, cache=False)
        stages["decode_audio"] = time.perf_counter() - t0
    if audio is not None and audio.valid:
        ends = frame_ends(times)
        best = float("inf")
        for i in range(repeats + 1):  # the first run warms up
            t0 = time.perf_counter()
            for name, enc in models.audio.items():
                feats, starts, stops = enc.encode(audio)
                pooled, _ = pool_to_frames(feats, starts, stops, times, ends)
                outputs[f"audio/{name}"] = pooled.astype(np.float16)
            seconds = time.perf_counter() - t0
            if i:
                best = min(best, seconds)
        stages["encode_audio"] = best
        audio_end = audio.start + len(audio.samples) / audio.sr
        outputs["audio/valid"] = (times >= audio.start - 1e-6) & (times < audio_end)
    return outputs


def _write_all(store: str, cfg: ExtractConfig, track: str, times, batches, outputs) -> float:
    """Writer-only pass: the track's arrays into a fresh store, laid out as the job lays them."""
    from extract.store import StoreWriter, TokenStorage
    from extract.store.schema import group_of

    n = len(times)
    t0 = time.perf_counter()
    writer = StoreWriter(store, create=True, extractor_config=cfg.to_dict(), models={})
    arrays: dict[str, np.ndarray] = {}
    if batches:
        for key in ("valid", "box", "landmarks", "align", "rois"):
            arrays[f"face/{key}"] = np.concatenate([b[key] for b in batches])
    arrays.update(outputs)
    groups = sorted({group_of(path) for path in arrays})
    for group in groups:
        writer.register_group(group, fields={"bench": group})
    tw = writer.open_track(track, n_frames=n, attrs={"track_id": track, "n_frames": n})
    tw.create_array("time", shape=(n,), dtype="float64")
    tw.write("time", 0, times)
    for path, values in arrays.items():
        storage = None
        if path.endswith("/patch"):
            storage = TokenStorage(kind=cfg.token_dtype, pool=cfg.patch_pool)
        dtype = "float16" if values.dtype == np.float16 else values.dtype
        tw.create_array(path, shape=values.shape, dtype=dtype, storage=storage)
    for lo in range(0, n, cfg.batch_size):  # batch by batch, as the job writes
        for path, values in arrays.items():
            tw.write(path, lo, values[lo : lo + cfg.batch_size])
    for group in groups:
        tw.finish_group(group)
    tw.commit()
    return time.perf_counter() - t0


def _end_to_end(
    manifest: pd.DataFrame, cfg: ExtractConfig, track: str, tmp: Path, repeats: int
) -> float:
    """Seconds the job spends on the track: a full run less a run with nothing to extract."""
    from extract.job.runner import run_extraction

    def timed(store: Path, tracks: set[str]) -> float:
        t0 = time.perf_counter()
        summary = run_extraction(manifest, str(store), cfg, tracks=tracks, progress=False)
        if summary.failed:
            failure = summary.failed[0]
            raise RuntimeError(
                f"bench track {failure.track} failed at {failure.stage}: {failure.error}"
            )
        return time.perf_counter() - t0

    timed(tmp / "warm.zarr", {track})  # warms caches, decoders and kernels
    best = float("inf")
    for i in range(repeats):
        store = tmp / f"e2e{i}.zarr"
        setup = timed(store, {"\0no-track"})
        best = min(best, timed(store, {track}) - setup)
    return max(best, 1e-9)


def run_bench(
    manifest: pd.DataFrame, cfg: ExtractConfig, *, track: str | None = None, repeats: int = 1
) -> dict[str, Any]:
    """Time one track (the first with a video, or `track`); each rate is the best of `repeats`."""
    if repeats < 1:
        raise UserError(f"--repeat must be at least 1, got {repeats}")
    one = _pick_row(manifest, track)
    row = one.iloc[0].to_dict()
    tid = str(row["track_id"])
    use_frames = _uses_frames(row, cfg) if cfg.visual else False
    models = _Models(cfg, aligned=use_frames)
    times, batches, stages, frame_size, rate = (
        np.zeros(0),
        [],
        dict.fromkeys(STAGES, 0.0),
        None,
        None,
    )
    if cfg.visual:
        times, batches, stages, frame_size, rate = _staged_pass(row, cfg, models, use_frames)
    else:
        from extract.job.timeline import video_frame_times

        times = video_frame_times(str(row["video"]))
    if cfg.visual and not batches:
        raise UserError(f"track {tid}: no frames could be decoded")
    outputs = _encode_all(cfg, models, batches, row, times, stages, repeats)
    n_frames = len(times)
    encoder_seconds = stages["encode_visual"] + stages["encode_audio"]
    with tempfile.TemporaryDirectory(prefix="auwild-bench-") as tmp:
        stages["write"] = min(
            _write_all(str(Path(tmp) / f"writer{i}.zarr"), cfg, tid, times, batches, outputs)
            for i in range(repeats)
        )
        e2e_seconds = _end_to_end(one, cfg, tid, Path(tmp), repeats)

    def fps(seconds: float) -> float:
        return round(n_frames / seconds, 2) if seconds > 0 else float("inf")

    end_to_end, encoder_only, writer_only = (
        fps(e2e_seconds),
        fps(encoder_seconds),
        fps(stages["write"]),
    )
    total = sum(stages.values())
    source = "frames" if use_frames else "video"
    ratio = round(end_to_end / encoder_only, 3) if encoder_only not in (0, float("inf")) else None
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
            "end_to_end/writer_only": round(end_to_end / writer_only, 3),
            "writer_only/encoder_only": round(writer_only / encoder_only, 3)
            if encoder_only != float("inf")
            else None,
        },
        "goal_ratio": GOAL_RATIO[source],
        "stages_s": {k: round(v, 4) for k, v in stages.items()},
        "stages_share": {k: round(v / total, 3) if total else 0.0 for k, v in stages.items()},
        "staged_fps": fps(total),
        "face_rate": round(rate.rate, 3) if rate is not None else None,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }


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
