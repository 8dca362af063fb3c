"""The stages of one track: probe, faces, visual:<enc>, audio:<enc>, write, commit.

Each stage is a function (or a block) that raises `StageError(stage)` from the error it met, so
the failures table records where a track failed without any shared "current stage" variable:
the decode and face stages run in a prefetch thread while the encoders run in the caller's
thread and the writes in a writer thread, and each error carries its own stage across.

Array paths come from extract/store/schema.py only.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from extract.job.config import ExtractConfig
from extract.job.models import ModelCache
from extract.job.plan import TrackPlan
from extract.job.timeline import frame_ends, regular_times, video_frame_times
from extract.store import schema

log = logging.getLogger("auwild.extract")

FACE_ARRAYS = {  # batch key -> array path
    "valid": schema.FACE_VALID,
    "box": schema.FACE_BOX,
    "landmarks": schema.FACE_LANDMARKS,
    "align": schema.FACE_ALIGN,
    "rois": schema.FACE_ROIS,
}


class StageError(Exception):
    """An error met in one stage of one track; `.stage` names it, `__cause__` is the error."""

    def __init__(self, stage: str, exc: BaseException):
        super().__init__(f"{type(exc).__name__}: {exc}")
        self.stage = stage
        self.error = exc


@contextmanager
def stage(name: str):
    """Run a block as stage `name`: any error leaving it becomes StageError(name)."""
    try:
        yield
    except StageError:
        raise
    except Exception as exc:
        raise StageError(name, exc) from exc


@dataclass
class TrackResult:
    n_frames: int  # frames processed
    face_rate: float | None = None  # fraction of frames with a face; None when faces not written
    already_done: bool = False  # another process finished the planned groups first


def visual_array(enc: str, key: str) -> str:
    """Path of encoder output `key` ("cls", "patch", "local", ...)."""
    if key == "cls":
        return schema.visual_cls(enc)
    if key == "patch":
        return schema.visual_patch(enc)
    return f"{schema.visual_group(enc)}/{key}"


# ---- probe -----------------------------------------------------------------------------------
def probe_times(plan: TrackPlan, cfg: ExtractConfig, store: str) -> np.ndarray:
    """Frame times (T,) float64: the stored ones for a track that stays, else from the sources."""
    row = plan.row
    video = row.get("video") or ""
    frames_dir = row.get("frames_dir") or ""
    if plan.reopens:
        from extract.store import StoreReader

        return StoreReader(store, consolidated=False).read(plan.track_id, schema.TIME)
    if video:
        return video_frame_times(video)
    if frames_dir:
        n = frames_folder_length(frames_dir)
        return regular_times(n, float(row.get("fps") or cfg.default_fps))
    raise FileNotFoundError(f"track {plan.track_id}: no video and no frames folder")


def track_attrs(plan: TrackPlan, times: np.ndarray) -> dict[str, Any]:
    row = plan.row
    n_frames = len(times)
    return {
        "track_id": plan.track_id,
        "video": row.get("video") or "",
        "frames_dir": row.get("frames_dir") or "",
        "video_id": row.get("video_id", ""),
        "side": row.get("side", "none"),
        "n_frames": n_frames,
        "fps": float(1.0 / np.median(np.diff(times))) if n_frames > 1 else 0.0,
        "source_signature": plan.signature,
    }


def frames_folder_length(frames_dir: str) -> int:
    names = [p.stem for p in Path(frames_dir).glob("*.jpg")]
    numbers = [int(s) for s in names if s.isdigit()]
    if not numbers:
        raise FileNotFoundError(f"{frames_dir}: no numbered .jpg frames")
    return max(numbers)


# ---- faces (prefetch thread) ------------------------------------------------------------------
def uses_frames(plan: TrackPlan, cfg: ExtractConfig) -> bool:
    """True when this track's visual input is its frames folder (aligned crops), not the video."""
    frames_dir = plan.row.get("frames_dir") or ""
    if cfg.visual_input == "frames" and not frames_dir:
        raise FileNotFoundError(
            f"track {plan.track_id}: --visual-input frames but no frames folder"
        )
    return bool(frames_dir) and cfg.visual_input in ("auto", "frames")


def face_batches(
    plan: TrackPlan, n_frames: int, cfg: ExtractConfig, backend, use_frames: bool
) -> Iterator[dict[str, np.ndarray]]:
    """Decode -> faces -> align -> regions, one batch at a time (stages decode and faces)."""
    from extract.align import crop_affine, map_points, warp_crops
    from extract.regions import region_boxes
    from extract.video import iter_frames_folder, iter_video_frames

    bs, crop = cfg.batch_size, cfg.crop_size
    with stage("decode"):
        if use_frames:
            source = (
                (present, frames)
                for _, frames, present in iter_frames_folder(
                    plan.row["frames_dir"], n_frames, 1.0, bs
                )
            )
        else:
            source = (
                (np.ones(len(f), bool), f) for _, f in iter_video_frames(plan.row["video"], bs)
            )
    start = 0
    while True:
        with stage("decode"):
            item = next(source, None)
        if item is None:
            break
        present, frames = item
        if start >= n_frames:
            log.warning(
                "%s: decoder gave more frames than the container lists; extra dropped",
                plan.track_id,
            )
            break
        n = min(len(frames), n_frames - start)
        with stage("faces"):
            frames, present = frames[:n], present[:n]
            faces = backend(frames)
            valid = np.asarray(faces.valid, bool) & present  # (n,)
            affine = crop_affine(faces.landmarks, crop)  # (n, 2, 3)
            crops = warp_crops(frames, affine, crop)  # (n, S, S, 3)
            crop_lm = map_points(faces.landmarks, affine)  # (n, 68, 2)
            rois = region_boxes(crop_lm, crop)  # (n, R, 4)
            batch = {
                "start": start,
                "valid": valid,
                "box": np.asarray(faces.box, np.float32),
                "landmarks": np.asarray(faces.landmarks, np.float32),
                "align": affine.astype(np.float32),
                "rois": rois.astype(np.float32),
                "crops": crops,
            }
        yield batch
        start += n
    if start < n_frames:
        log.warning(
            "%s: decoder stopped at frame %d of %d; the rest is marked without a face",
            plan.track_id,
            start,
            n_frames,
        )


# ---- visual -----------------------------------------------------------------------------------
class Writes:
    """The writer thread: writes run there in order, errors come back as stage "write"."""

    def __init__(self, pool: ThreadPoolExecutor, keep: int = 8):
        self.pool = pool
        self.keep = keep
        self.pending: list[Future] = []

    def submit(self, fn: Callable, *args) -> None:
        self.pending.append(self.pool.submit(fn, *args))
        while len(self.pending) > self.keep:  # bound the queue: wait for the oldest
            self._wait(self.pending.pop(0))

    def drain(self) -> None:
        while self.pending:
            self._wait(self.pending.pop(0))

    @staticmethod
    def _wait(fut: Future) -> None:
        with stage("write"):
            fut.result()


def run_visual(
    plan: TrackPlan,
    tw,
    n_frames: int,
    groups: list[str],
    cfg: ExtractConfig,
    models: ModelCache,
    writes: Writes,
    advance: Callable[[int], None],
) -> float | None:
    """Faces and visual encoders of one track; returns the face rate when faces are written."""
    from extract.store import TokenStorage

    encoders = [g.split("/", 1)[1] for g in groups if g.startswith("visual/")]
    with stage("faces"):
        use_frames = uses_frames(plan, cfg)
        backend = models.backend(aligned_input=use_frames)
        backend.reset(side=plan.row.get("side") or "none")
        mode = {"aligned_input": use_frames, **backend.fingerprint_fields()}
    loaded: dict[str, Any] = {}
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}
    for name in encoders:
        with stage(f"visual:{name}"):
            loaded[name] = models.visual(name)
            shapes[name] = loaded[name].outputs  # one dry run: the encoder's own stage
    created = False
    faces = 0
    frames = 0
    batches = face_batches(plan, n_frames, cfg, backend, use_frames)
    for batch in prefetch(batches, depth=2):
        start = batch["start"]
        if not created:
            created = True
            with stage("write"):
                if schema.FACE_GROUP in groups:
                    for key, path in FACE_ARRAYS.items():
                        tw.create_array(
                            path, shape=(n_frames, *batch[key].shape[1:]), dtype=batch[key].dtype
                        )
                for name in loaded:
                    for key, shape in shapes[name].items():
                        storage = None
                        if key == "patch":
                            storage = TokenStorage(kind=cfg.token_dtype, pool=cfg.patch_pool)
                        tw.create_array(
                            visual_array(name, key),
                            shape=(n_frames, *shape),
                            dtype="float16",
                            storage=storage,
                        )
        if schema.FACE_GROUP in groups:
            for key, path in FACE_ARRAYS.items():
                writes.submit(tw.write, path, start, batch[key])
        for name, enc in loaded.items():
            with stage(f"visual:{name}"):
                out = encode_visual(enc, batch["crops"], batch["valid"])
            for key, values in out.items():
                writes.submit(tw.write, visual_array(name, key), start, values)
        faces += int(batch["valid"].sum())
        frames += len(batch["valid"])
        advance(len(batch["valid"]))
    if not created:
        raise StageError(
            "decode", RuntimeError(f"track {plan.track_id}: no frames could be decoded")
        )
    writes.drain()
    with stage("write"):
        if schema.FACE_GROUP in groups:
            tw.finish_group(schema.FACE_GROUP, track_fields=mode)
        for name, enc in loaded.items():
            fields = {**mode, "encoder": enc.fingerprint_fields()}
            tw.finish_group(schema.visual_group(name), track_fields=fields)
    # frames past the end of the decoded stream have no face (zeros, valid False)
    return faces / n_frames if (schema.FACE_GROUP in groups and n_frames) else None


def encode_visual(enc, crops: np.ndarray, valid: np.ndarray) -> dict[str, np.ndarray]:
    """Encode the frames with a face; frames without one get zeros."""
    n = len(crops)
    idx = np.flatnonzero(valid)
    out = {k: np.zeros((n, *shape), np.float16) for k, shape in enc.outputs.items()}
    if len(idx):
        values = encode_with_oom_retry(enc.encode, crops[idx])
        for key, arr in values.items():
            out[key][idx] = arr.astype(np.float16)
    return out


def encode_with_oom_retry(encode: Callable, crops: np.ndarray) -> dict[str, np.ndarray]:
    """Encode; on GPU out-of-memory split the batch in halves and retry, down to one frame."""
    try:
        return encode(crops)
    except Exception as exc:
        if type(exc).__name__ != "OutOfMemoryError" or len(crops) <= 1:
            raise
        import torch

        torch.cuda.empty_cache()
        half = len(crops) // 2
        log.warning("GPU out of memory on a batch of %d; retrying as two of %d", len(crops), half)
        a = encode_with_oom_retry(encode, crops[:half])
        b = encode_with_oom_retry(encode, crops[half:])
        return {k: np.concatenate([a[k], b[k]]) for k in a}


# ---- audio ------------------------------------------------------------------------------------
def run_audio(
    plan: TrackPlan, tw, times: np.ndarray, groups: list[str], models: ModelCache
) -> None:
    """Audio encoders pooled onto the frame times, and audio/valid."""
    from extract.audio_align import pool_to_frames
    from extract.audio_decode import load_audio

    n_frames = len(times)
    video = plan.row.get("video") or ""
    with stage("audio:decode"):
        audio = load_audio(video) if video else None  # cached per file: _left/_right share it
    ok = audio is not None and audio.valid
    if not ok:
        reason = audio.reason if audio is not None else "no video, so no audio"
        log.warning(
            "%s: audio not usable (%s); audio arrays are zeros, audio/valid False",
            plan.track_id,
            reason,
        )
    ends = frame_ends(times)
    for group in groups:
        if group == schema.AUDIO_VALID_GROUP:
            continue
        name = group.split("/", 1)[1]
        path = schema.audio_features(name)
        with stage(f"audio:{name}"):
            enc = models.audio(name)
            pooled = np.zeros((n_frames, enc.dim), np.float32)
            if ok:
                feats, starts, stops = enc.encode(audio)
                pooled, _ = pool_to_frames(feats, starts, stops, times, ends)
        with stage("write"):
            tw.create_array(path, shape=(n_frames, enc.dim), dtype="float16")
            tw.write(path, 0, pooled.astype(np.float16))
            # the loaded encoder's own fields; whether the track had audio is in audio/valid,
            # not here: tracks whose per-track fields differ do not mix in one training set
            tw.finish_group(group, track_fields={"encoder": enc.fingerprint_fields()})
    if schema.AUDIO_VALID_GROUP in groups:
        valid = np.zeros(n_frames, bool)
        if ok:  # a frame has audio when its time lies inside the decoded audio
            audio_end = audio.start + len(audio.samples) / audio.sr
            valid = (times >= audio.start - 1e-6) & (times < audio_end)
        with stage("write"):
            tw.create_array(schema.AUDIO_VALID, shape=(n_frames,), dtype="bool")
            tw.write(schema.AUDIO_VALID, 0, valid)
            tw.finish_group(schema.AUDIO_VALID_GROUP)


# ---- background prefetch ----------------------------------------------------------------------
def prefetch(iterator: Iterator[Any], depth: int) -> Iterator[Any]:
    """Run `iterator` in a background thread, `depth` items ahead of the consumer."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # handed to the consumer, which raises it
            q.put(exc)

    thread = threading.Thread(target=produce, name="visual-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
