"""The stages of one track: probe, faces, visual:<enc>, audio:<enc>, write, commit.

Each stage is a function (or a block) that raises `StageError(stage)` from the error it met, so
the failures table records where a track failed without any shared "current stage" variable:
the decode and face stages run in a prefetch thread while the encoders run in the caller's
thread and the writes in a writer thread, and each error carries its own stage across.

Array paths come from extract/store/schema.py only.

`face_batches` takes an optional `timer(stage, seconds)`: with one it reports the seconds of
decode, detect, landmarks and warp per batch (the bench's breakdown); without one it times
nothing.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
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

Timer = Callable[[str, float], None]  # (stage, seconds): called once per batch and stage

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


def start_faces(plan: TrackPlan, cfg: ExtractConfig, models: ModelCache):
    """(landmark backend reset for this track, whether its input is the frames folder, the
    per-track fields of its face and visual groups)."""
    use_frames = uses_frames(plan, cfg)
    backend = models.backend(aligned_input=use_frames)
    backend.reset(side=plan.row.get("side") or "none", track=plan.track_id)
    return backend, use_frames, {"aligned_input": use_frames, **backend.fingerprint_fields()}


def face_batches(
    plan: TrackPlan,
    n_frames: int,
    cfg: ExtractConfig,
    backend,
    use_frames: bool,
    timer: Timer | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Decode -> faces -> align -> regions, one batch at a time (stages decode and faces).

    `timer`, when given, gets the seconds of decode, detect, landmarks and warp of each batch."""
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
            item = timed(timer, "decode", next, source, None)
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
            faces = find_faces(backend, frames, timer)
            valid = np.asarray(faces.valid, bool) & present  # (n,)
            affine, crops, rois, crop_lm = timed(
                timer, "warp", align_faces, frames, faces.landmarks, crop
            )
            batch = {
                "start": start,
                "valid": valid,
                "box": np.asarray(faces.box, np.float32),
                "landmarks": np.asarray(faces.landmarks, np.float32),
                "align": affine,
                "rois": rois,
                "crops": crops,
                "crop_landmarks": crop_lm,  # (n, 68, 2) in [0, 1]
                "frame_hw": frames.shape[1:3],  # (H, W) of the source frames
                "frame_index": np.arange(start, start + n),  # (n,) frame numbers in the track
                "track_id": np.full(n, plan.track_id, dtype=object),  # (n,)
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


def timed(timer: Timer | None, name: str, fn: Callable, *args):
    """fn(*args); its seconds go to `timer` under `name` when there is a timer."""
    if timer is None:
        return fn(*args)
    t0 = time.perf_counter()
    out = fn(*args)
    timer(name, time.perf_counter() - t0)
    return out


def find_faces(backend, frames: np.ndarray, timer: Timer | None = None):
    """backend(frames); with a timer, its seconds split into detect (the backend's own count of
    its detector's seconds, where it keeps one) and landmarks (the rest of the call)."""
    if timer is None:
        return backend(frames)
    timings = getattr(backend, "timings", {})
    before = timings.get("detect", 0.0)
    t0 = time.perf_counter()
    faces = backend(frames)
    seconds = time.perf_counter() - t0
    detect = timings.get("detect", 0.0) - before
    timer("detect", detect)
    timer("landmarks", seconds - detect)
    return faces


def align_faces(
    frames: np.ndarray, landmarks: np.ndarray, crop: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(affine (n, 2, 3) float32, crops (n, S, S, 3), region boxes (n, R, 4) float32,
    landmarks in the crop (n, 68, 2) float32 in [0, 1])."""
    from extract.align import crop_affine, map_points, warp_crops
    from extract.regions import region_boxes

    affine = crop_affine(landmarks, crop)  # (n, 2, 3)
    crops = warp_crops(frames, affine, crop)  # (n, S, S, 3)
    crop_lm = map_points(landmarks, affine)  # (n, 68, 2) crop pixels
    rois = region_boxes(crop_lm, crop)  # (n, R, 4)
    return (
        affine.astype(np.float32),
        crops,
        rois.astype(np.float32),
        (crop_lm / crop).astype(np.float32),
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


class VisualArrays:
    """The face and visual arrays of one track: created at the first batch, written per batch
    through the writer thread, their groups finished at the end (the job's and the bench's)."""

    def __init__(
        self,
        tw,
        n_frames: int,
        groups: list[str],
        shapes: dict[str, dict[str, tuple[int, ...]]],  # encoder -> output key -> shape
        cfg: ExtractConfig,
        writes: Writes,
    ):
        self.tw, self.n_frames, self.groups, self.shapes = tw, n_frames, groups, shapes
        self.cfg, self.writes = cfg, writes
        self.faces = schema.FACE_GROUP in groups
        self.created = False

    def _create(self, batch: dict[str, np.ndarray]) -> None:
        from extract.store import TokenStorage

        self.created = True
        with stage("write"):
            if self.faces:
                for key, path in FACE_ARRAYS.items():
                    self.tw.create_array(
                        path, shape=(self.n_frames, *batch[key].shape[1:]), dtype=batch[key].dtype
                    )
            for name, outputs in self.shapes.items():
                for key, shape in outputs.items():
                    storage = None
                    if key == "patch":
                        storage = TokenStorage(kind=self.cfg.token_dtype, pool=self.cfg.patch_pool)
                    self.tw.create_array(
                        visual_array(name, key),
                        shape=(self.n_frames, *shape),
                        dtype="float16",
                        storage=storage,
                    )

    def add_faces(self, batch: dict[str, np.ndarray]) -> None:
        """Queue the batch's face arrays (creating every array at the first batch)."""
        if not self.created:
            self._create(batch)
        if self.faces:
            for key, path in FACE_ARRAYS.items():
                self.writes.submit(self.tw.write, path, batch["start"], batch[key])

    def add_encoded(self, name: str, start: int, out: dict[str, np.ndarray]) -> None:
        """Queue encoder `name`'s outputs for frames start.. (after `add_faces` of the batch)."""
        for key, values in out.items():
            self.writes.submit(self.tw.write, visual_array(name, key), start, values)

    def finish(self, mode: dict[str, Any], encoders: dict[str, Any]) -> None:
        """Wait for the writes, then finish the face group and each encoder's group."""
        self.writes.drain()
        with stage("write"):
            if self.faces:
                self.tw.finish_group(schema.FACE_GROUP, track_fields=mode)
            for name, enc in encoders.items():
                fields = {**mode, "encoder": enc.fingerprint_fields()}
                self.tw.finish_group(schema.visual_group(name), track_fields=fields)


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
    encoders = [g.split("/", 1)[1] for g in groups if g.startswith("visual/")]
    with stage("faces"):
        backend, use_frames, mode = start_faces(plan, cfg, models)
    loaded: dict[str, Any] = {}
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}
    for name in encoders:
        with stage(f"visual:{name}"):
            loaded[name] = models.visual(name)
            shapes[name] = loaded[name].outputs  # one dry run: the encoder's own stage
    arrays = VisualArrays(tw, n_frames, groups, shapes, cfg, writes)
    faces = 0
    batches = face_batches(plan, n_frames, cfg, backend, use_frames)
    for batch in prefetch(batches, depth=2):
        arrays.add_faces(batch)
        for name, enc in loaded.items():
            with stage(f"visual:{name}"):
                out = encode_visual(enc, batch["crops"], batch["valid"], batch)
            arrays.add_encoded(name, batch["start"], out)
        faces += int(batch["valid"].sum())
        advance(len(batch["valid"]))
    # the backend says the track's low-face-rate warning, once (the job summary only lists it)
    backend.end_track()
    if not arrays.created:
        raise StageError(
            "decode", RuntimeError(f"track {plan.track_id}: no frames could be decoded")
        )
    arrays.finish(mode, loaded)
    # frames past the end of the decoded stream have no face (zeros, valid False)
    return faces / n_frames if (schema.FACE_GROUP in groups and n_frames) else None


# What a visual encoder may ask for besides the crops (its `needs` attribute), each handed to
# its `encode` as a keyword argument of the same name: per-frame arrays from the face stage.
VISUAL_INPUTS = {
    "rois": "rois",  # (n, R, 4) AU region boxes, [0, 1] crop coordinates
    "landmarks": "crop_landmarks",  # (n, 68, 2) aligned landmarks, [0, 1] crop coordinates
    "frame_index": "frame_index",  # (n,) frame numbers (seed the augmented local views)
    "track_id": "track_id",  # (n,) the track's id
}


def encode_visual(
    enc, crops: np.ndarray, valid: np.ndarray, batch: dict[str, Any] | None = None
) -> dict[str, np.ndarray]:
    """Encode the frames with a face; frames without one get zeros."""
    from extract.store.quantize import EncodedTokens

    n = len(crops)
    idx = np.flatnonzero(valid)
    out: dict[str, Any] = {k: np.zeros((n, *shape), np.float16) for k, shape in enc.outputs.items()}
    needs = getattr(enc, "needs", ())
    unknown = [k for k in needs if k not in VISUAL_INPUTS or batch is None]
    if unknown:
        name = getattr(enc, "name", type(enc).__name__)
        raise ValueError(
            f"encoder {name!r} asks for {unknown}; the job hands {list(VISUAL_INPUTS)}"
        )
    if len(idx):
        inputs = {k: batch[VISUAL_INPUTS[k]][idx] for k in needs}  # type: ignore[index]
        values = encode_with_oom_retry(enc.encode, crops[idx], inputs)
        for key, arr in values.items():
            if isinstance(arr, EncodedTokens):  # quantised/pooled on the device: kept as it is
                out[key] = arr.scatter(idx, n)
            else:
                out[key][idx] = arr.astype(np.float16)
    return out  # a batch without a face keeps plain zeros: the writer encodes those itself


def encode_with_oom_retry(
    encode: Callable, crops: np.ndarray, inputs: dict[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Encode; on GPU out-of-memory split the batch (and its per-frame `inputs`) in halves and
    retry, down to one frame."""
    inputs = inputs or {}
    try:
        return encode(crops, **inputs)
    except Exception as exc:
        if type(exc).__name__ != "OutOfMemoryError" or len(crops) <= 1:
            raise
        import torch

        torch.cuda.empty_cache()
        half = len(crops) // 2
        log.warning("GPU out of memory on a batch of %d; retrying as two of %d", len(crops), half)
        a = encode_with_oom_retry(encode, crops[:half], {k: v[:half] for k, v in inputs.items()})
        b = encode_with_oom_retry(encode, crops[half:], {k: v[half:] for k, v in inputs.items()})
        return {k: _concat(a[k], b[k]) for k in a}


def _concat(a, b):
    from extract.store.quantize import EncodedTokens

    if isinstance(a, EncodedTokens):
        return EncodedTokens.concat([a, b])
    return np.concatenate([a, b])


# ---- audio ------------------------------------------------------------------------------------
def run_audio(
    plan: TrackPlan, tw, times: np.ndarray, groups: list[str], models: ModelCache
) -> None:
    """Audio encoders pooled onto the frame times, and audio/valid."""
    with stage("audio:decode"):
        audio = track_audio(plan)  # cached per file: _left/_right share it
    ends = frame_ends(times)
    for group in groups:
        if group == schema.AUDIO_VALID_GROUP:
            continue
        name = group.split("/", 1)[1]
        with stage(f"audio:{name}"):
            enc = models.audio(name)
            pooled = pool_audio(enc, audio, times, ends)
        write_audio(tw, name, enc, pooled)
    if schema.AUDIO_VALID_GROUP in groups:
        write_audio_valid(tw, audio_valid(audio, times))


def track_audio(plan: TrackPlan, cache: bool = True):
    """The track's decoded audio, or None (said in one line) when it has none that is usable."""
    from extract.audio_decode import load_audio

    video = plan.row.get("video") or ""
    audio = load_audio(video, cache=cache) if video else None
    if audio is not None and audio.valid:
        return audio
    reason = audio.reason if audio is not None else "no video, so no audio"
    log.warning(
        "%s: audio not usable (%s); audio arrays are zeros, audio/valid False",
        plan.track_id,
        reason,
    )
    return None


def pool_audio(enc, audio, times: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Encoder features pooled onto the frames (T, dim) float32; zeros without audio."""
    from extract.audio_align import pool_to_frames

    if audio is None:
        return np.zeros((len(times), enc.dim), np.float32)
    feats, starts, stops = enc.encode(audio)
    pooled, _ = pool_to_frames(feats, starts, stops, times, ends)
    return pooled


def audio_valid(audio, times: np.ndarray) -> np.ndarray:
    """(T,) bool: the frame's time lies inside the decoded audio."""
    if audio is None:
        return np.zeros(len(times), bool)
    audio_end = audio.start + len(audio.samples) / audio.sr
    return (times >= audio.start - 1e-6) & (times < audio_end)


def write_audio(tw, name: str, enc, pooled: np.ndarray) -> None:
    """Audio encoder `name`'s group of one track."""
    path = schema.audio_features(name)
    with stage("write"):
        tw.create_array(path, shape=pooled.shape, dtype="float16")
        tw.write(path, 0, pooled.astype(np.float16))
        # the loaded encoder's own fields; whether the track had audio is in audio/valid,
        # not here: tracks whose per-track fields differ do not mix in one training set
        tw.finish_group(
            schema.audio_group(name), track_fields={"encoder": enc.fingerprint_fields()}
        )


def write_audio_valid(tw, valid: np.ndarray) -> None:
    with stage("write"):
        tw.create_array(schema.AUDIO_VALID, shape=valid.shape, dtype="bool")
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
