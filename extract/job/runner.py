"""The extraction job: every track of a manifest (shard) into one feature store.

Per track, in order: plan what is missing, stream the visual input in batches
(decode -> faces -> align -> regions -> visual encoders), then the audio (decoded
once per video, encoded, pooled onto the frame times), then commit. Decoding and
face work for the next batch run in a background thread while the encoders work on
the current one, and writes go through a writer thread, so the encoder is rarely idle.

A failing track is recorded in the failures table and costs only itself.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from extract.job.config import ExtractConfig
from extract.job.failures import Failure, FailureLog, failures_path
from extract.job.shard import Shard
from extract.job.timeline import frame_ends, regular_times, video_frame_times

log = logging.getLogger("auwild.extract")

FACE_GROUP = "face"
AUDIO_VALID_GROUP = "audio"
FACE_SHAPE_VERSION = "mean68-v1"
AUDIO_POOL_RULE = "overlap-mean-v1"
SAMPLE_RATE = 16000


@dataclass
class TrackPlan:
    """What one track needs."""

    track_id: str
    row: dict[str, Any]  # the manifest row
    groups: list[str]  # array groups to compute
    reason: str  # new | resume | changed | add | overwrite
    n_frames: int  # estimated frames (for the progress bar)


@dataclass
class JobSummary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    frames: int = 0  # frames processed (visual or audio) in this run
    seconds: float = 0.0
    bytes_written: int = 0

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def table(self) -> str:
        rows = [
            ("tracks done", str(len(self.done))),
            ("tracks skipped", str(len(self.skipped))),
            ("tracks failed", str(len(self.failed))),
            ("frames", str(self.frames)),
            ("frames per second", f"{self.fps:.1f}"),
            ("bytes written", _human_bytes(self.bytes_written)),
        ]
        width = max(len(k) for k, _ in rows)
        lines = [f"  {k:<{width}}  {v}" for k, v in rows]
        for failure in self.failed:
            lines.append(f"  FAILED {failure.track} [{failure.stage}] {failure.error}")
        return "\n".join(lines)


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n:.1f} GiB"


def _dir_bytes(path: str) -> int:
    if "://" in path and not path.startswith("file://"):
        return 0
    root = Path(path.removeprefix("file://"))
    if not root.exists():
        return 0
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def source_signature(row: dict[str, Any]) -> dict[str, Any]:
    """Size and modification time of a track's inputs: a changed source is extracted again."""
    sig: dict[str, Any] = {}
    for key in ("video", "frames_dir"):
        path = row.get(key) or ""
        if path and os.path.exists(path):
            st = os.stat(path)
            sig[key] = {"path": path, "size": st.st_size, "mtime": int(st.st_mtime)}
    return sig


class Extractor:
    """Holds the loaded models and the store writer for one job."""

    def __init__(self, cfg: ExtractConfig, store: str, *, overwrite: bool = False):
        from extract.store import StoreWriter

        _quiet_model_loading()
        self.cfg = cfg
        self.store = store
        self.overwrite = overwrite
        self._backend = None
        self._visual: dict[str, Any] = {}
        self._audio_enc: dict[str, Any] = {}
        self.stage = "probe"
        self.group_fields = self._group_fields()
        models = {g: f for g, f in self.group_fields.items() if g.startswith(("visual/", "audio/"))}
        self.writer = StoreWriter(store, create=True, extractor_config=cfg.to_dict(), models=models)
        # {group: fingerprint}; registering is idempotent and refuses differing fields
        self.fingerprints = {
            group: self.writer.register_group(group, fields=fields)
            for group, fields in self.group_fields.items()
        }

    # ---- models, loaded once per job ---------------------------------------------------------
    @property
    def backend(self):
        if self._backend is None:
            from extract.faces import get_landmark_backend

            self._backend = get_landmark_backend(
                self.cfg.landmarks,
                device=self.cfg.device,
                aligned_input=self._aligned_input_default(),
                detect_every=self.cfg.detect_every,
            )
        return self._backend

    def _aligned_input_default(self) -> bool:
        return self.cfg.visual_input in ("auto", "frames")

    def visual_encoder(self, name: str):
        if name not in self._visual:
            from extract.encoders import load_visual_encoder

            self._visual[name] = load_visual_encoder(
                name, self.cfg.visual[name], device=self.cfg.device, layer=self.cfg.visual_layer
            )
        return self._visual[name]

    def audio_encoder(self, name: str):
        if name not in self._audio_enc:
            from extract.encoders import load_audio_encoder

            kwargs: dict[str, Any] = {"device": self.cfg.device}
            if self.cfg.audio_layers and name != "logmel":
                kwargs["layers"] = list(self.cfg.audio_layers)
            self._audio_enc[name] = load_audio_encoder(name, self.cfg.audio[name], **kwargs)
        return self._audio_enc[name]

    # ---- fingerprints ------------------------------------------------------------------------
    def _group_fields(self) -> dict[str, dict[str, Any]]:
        """Every array group this job writes, with the fields that change its numbers."""
        from extract.regions import REGION_VERSION

        cfg = self.cfg
        face = {
            "landmarks": cfg.landmarks,
            "crop_size": cfg.crop_size,
            "region_version": REGION_VERSION,
            "face_shape": FACE_SHAPE_VERSION,
            "visual_input": cfg.visual_input,
            "detect_every": cfg.detect_every,
            "backend": self.backend.fingerprint_fields() if cfg.visual else {},
        }
        fields: dict[str, dict[str, Any]] = {}
        if cfg.visual:
            fields[FACE_GROUP] = face
        for name in cfg.visual:
            enc = self.visual_encoder(name)
            fields[f"visual/{name}"] = {
                **enc.fingerprint_fields(),
                "face": face,
                "token_dtype": cfg.token_dtype,
                "patch_pool": cfg.patch_pool,
            }
        if cfg.audio:
            fields[AUDIO_VALID_GROUP] = {"sample_rate": SAMPLE_RATE, "pool_rule": AUDIO_POOL_RULE}
        for name in cfg.audio:
            enc = self.audio_encoder(name)
            fields[f"audio/{name}"] = {
                **enc.fingerprint_fields(),
                "sample_rate": SAMPLE_RATE,
                "pool_rule": AUDIO_POOL_RULE,
            }
        return fields

    # ---- planning ----------------------------------------------------------------------------
    def plan(self, manifest: pd.DataFrame, shard: Shard, only: set[str] | None) -> list[TrackPlan]:
        from extract.store import StoreReader, check_track_id

        reader = StoreReader(self.store, consolidated=False)  # the truth, not a snapshot
        complete = set(reader.tracks())
        unfinished = set(reader.incomplete_tracks())  # left by a killed run: redone whole
        plans: list[TrackPlan] = []
        for i, row in enumerate(manifest.to_dict("records")):
            tid = str(row["track_id"])
            if only is not None and tid not in only:
                continue
            if not shard.owns(tid):
                continue
            check_track_id(tid, row=i)
            est = int(row.get("n_frames", -1) or -1)
            if est <= 0:
                est = 0
            wanted = list(self.group_fields)
            if self.overwrite:
                plans.append(TrackPlan(tid, row, wanted, "overwrite", est))
                continue
            if tid not in complete:
                reason = "resume" if tid in unfinished else "new"
                plans.append(TrackPlan(tid, row, wanted, reason, est))
                continue
            attrs = reader.track_attrs(tid)
            if attrs.get("source_signature") != source_signature(row):
                plans.append(TrackPlan(tid, row, wanted, "changed", est))
                continue
            have = {g: e.get("fingerprint") for g, e in attrs.get("groups", {}).items()}
            missing = [g for g in wanted if have.get(g) != self.fingerprints[g]]
            if missing:
                plans.append(TrackPlan(tid, row, missing, "add", int(attrs.get("n_frames", est))))
            else:
                plans.append(TrackPlan(tid, row, [], "skip", 0))
        return plans

    # ---- one track ---------------------------------------------------------------------------
    def run_track(self, plan: TrackPlan, advance: Callable[[int], None]) -> int:
        """Extract the planned groups of one track; returns the frames processed."""
        row = plan.row
        video = row.get("video") or ""
        frames_dir = row.get("frames_dir") or ""
        self.stage = "probe"
        if plan.reason == "add":
            from extract.store import StoreReader

            times = StoreReader(self.store, consolidated=False).read(plan.track_id, "time")
        elif video:
            times = video_frame_times(video)
        elif frames_dir:
            n = _frames_folder_length(frames_dir)
            times = regular_times(n, float(row.get("fps") or self.cfg.default_fps))
        else:
            raise FileNotFoundError(f"track {plan.track_id}: no video and no frames folder")
        n_frames = len(times)
        attrs = {
            "track_id": plan.track_id,
            "video": video,
            "frames_dir": frames_dir,
            "video_id": row.get("video_id", ""),
            "side": row.get("side", "none"),
            "n_frames": n_frames,
            "fps": float(1.0 / np.median(np.diff(times))) if n_frames > 1 else 0.0,
            "source_signature": source_signature(row),
        }
        tw = self.writer.open_track(
            plan.track_id,
            n_frames=n_frames,
            attrs=attrs,
            overwrite=plan.reason in ("overwrite", "changed"),
            add_groups=plan.reason == "add",
        )
        if plan.reason != "add":
            tw.create_array("time", shape=(n_frames,), dtype="float64")
            tw.write("time", 0, times)
        visual_groups = [g for g in plan.groups if g == FACE_GROUP or g.startswith("visual/")]
        audio_groups = [g for g in plan.groups if g == AUDIO_VALID_GROUP or g.startswith("audio/")]
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer") as pool:
            pending: list[Future] = []
            if visual_groups:
                self._run_visual(plan, tw, times, visual_groups, pool, pending, advance)
            for fut in pending:
                fut.result()
            pending.clear()
            if audio_groups:
                self.stage = "audio"
                self._run_audio(plan, tw, times, audio_groups)
                if not visual_groups:
                    advance(n_frames)
        self.stage = "write"
        tw.commit()
        return n_frames

    def _visual_batches(
        self, plan: TrackPlan, times: np.ndarray
    ) -> Iterator[dict[str, np.ndarray]]:
        """Decode -> faces -> align -> regions, one batch at a time."""
        from extract.align import crop_affine, map_points, warp_crops
        from extract.regions import region_boxes
        from extract.video import iter_frames_folder, iter_video_frames

        row = plan.row
        video = row.get("video") or ""
        frames_dir = row.get("frames_dir") or ""
        use_frames = bool(frames_dir) and self.cfg.visual_input in ("auto", "frames")
        if self.cfg.visual_input == "frames" and not frames_dir:
            raise FileNotFoundError(
                f"track {plan.track_id}: --visual-input frames but no frames folder"
            )
        n_frames = len(times)
        backend = self.backend
        backend.aligned_input = use_frames
        backend.reset(side=row.get("side") or "none")
        bs = self.cfg.batch_size
        crop = self.cfg.crop_size
        if use_frames:
            source = (
                (present, frames)
                for _, frames, present in iter_frames_folder(frames_dir, n_frames, 1.0, bs)
            )
        else:
            source = ((np.ones(len(f), bool), f) for _, f in iter_video_frames(video, bs))
        start = 0
        for present, frames in source:
            if start >= n_frames:
                log.warning(
                    "%s: decoder gave more frames than the container lists; extra dropped",
                    plan.track_id,
                )
                break
            n = min(len(frames), n_frames - start)
            frames, present = frames[:n], present[:n]
            self.stage = "faces"
            faces = backend(frames)
            valid = np.asarray(faces.valid, bool) & present  # (n,)
            affine = crop_affine(faces.landmarks, crop)  # (n, 2, 3)
            crops = warp_crops(frames, affine, crop)  # (n, S, S, 3)
            crop_lm = map_points(faces.landmarks, affine)  # (n, 68, 2)
            rois = region_boxes(crop_lm, crop)  # (n, R, 4)
            yield {
                "start": start,
                "valid": valid,
                "box": np.asarray(faces.box, np.float32),
                "landmarks": np.asarray(faces.landmarks, np.float32),
                "align": affine.astype(np.float32),
                "rois": rois.astype(np.float32),
                "crops": crops,
            }
            start += n
        if start < n_frames:
            log.warning(
                "%s: decoder stopped at frame %d of %d; the rest is marked without a face",
                plan.track_id,
                start,
                n_frames,
            )

    def _run_visual(self, plan, tw, times, groups, pool, pending, advance) -> None:
        from extract.store import TokenStorage

        n_frames = len(times)
        encoders = [g.split("/", 1)[1] for g in groups if g.startswith("visual/")]
        created = False
        for batch in _prefetch(self._visual_batches(plan, times), depth=2):
            if not created:
                created = True
                if FACE_GROUP in groups:
                    n_rois = batch["rois"].shape[1]
                    tw.create_array("face/valid", shape=(n_frames,), dtype="bool")
                    tw.create_array("face/box", shape=(n_frames, 4), dtype="float32")
                    tw.create_array("face/landmarks", shape=(n_frames, 68, 2), dtype="float32")
                    tw.create_array("face/align", shape=(n_frames, 2, 3), dtype="float32")
                    tw.create_array("face/rois", shape=(n_frames, n_rois, 4), dtype="float32")
                for name in encoders:
                    enc = self.visual_encoder(name)
                    for key, shape in enc.outputs.items():
                        path = f"visual/{name}/{key}"
                        if key == "patch":
                            storage = TokenStorage(
                                kind=self.cfg.token_dtype, pool=self.cfg.patch_pool
                            )
                            tw.create_array(
                                path, shape=(n_frames, *shape), dtype="float16", storage=storage
                            )
                        else:
                            tw.create_array(path, shape=(n_frames, *shape), dtype="float16")
            start = batch["start"]
            if FACE_GROUP in groups:
                for key in ("valid", "box", "landmarks", "align", "rois"):
                    pending.append(pool.submit(tw.write, f"face/{key}", start, batch[key]))
            for name in encoders:
                self.stage = f"visual:{name}"
                out = self._encode_visual(self.visual_encoder(name), batch["crops"], batch["valid"])
                for key, values in out.items():
                    pending.append(pool.submit(tw.write, f"visual/{name}/{key}", start, values))
            advance(len(batch["valid"]))
            _drain(pending, keep=8)
        if not created:
            raise RuntimeError(f"track {plan.track_id}: no frames could be decoded")
        for fut in pending:
            fut.result()
        pending.clear()
        for group in groups:
            tw.finish_group(group)

    def _encode_visual(self, enc, crops: np.ndarray, valid: np.ndarray) -> dict[str, np.ndarray]:
        """Encode the frames with a face; frames without one get zeros."""
        n = len(crops)
        idx = np.flatnonzero(valid)
        out = {k: np.zeros((n, *shape), np.float16) for k, shape in enc.outputs.items()}
        if len(idx):
            values = _encode_with_oom_retry(enc.encode, crops[idx])
            for key, arr in values.items():
                out[key][idx] = arr.astype(np.float16)
        return out

    def _audio_track(self, video: str):
        """Decode once per video: `_left` / `_right` tracks of one video share it."""
        from extract.audio_decode import load_audio

        return load_audio(video)  # cached per file: the next track of the video reuses it

    def _run_audio(self, plan, tw, times, groups) -> None:
        from extract.audio_align import pool_to_frames

        n_frames = len(times)
        video = plan.row.get("video") or ""
        audio = self._audio_track(video) if video else None
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
            if group == AUDIO_VALID_GROUP:
                continue
            name = group.split("/", 1)[1]
            enc = self.audio_encoder(name)
            pooled = np.zeros((n_frames, enc.dim), np.float32)
            if ok:
                feats, starts, stops = enc.encode(audio)
                pooled, _ = pool_to_frames(feats, starts, stops, times, ends)
            tw.create_array(group, shape=(n_frames, enc.dim), dtype="float16")
            tw.write(group, 0, pooled.astype(np.float16))
            tw.finish_group(group)
        if AUDIO_VALID_GROUP in groups:
            valid = np.zeros(n_frames, bool)
            if ok:  # a frame has audio when its time lies inside the decoded audio
                audio_end = audio.start + len(audio.samples) / audio.sr
                valid = (times >= audio.start - 1e-6) & (times < audio_end)
            tw.create_array("audio/valid", shape=(n_frames,), dtype="bool")
            tw.write("audio/valid", 0, valid)
            tw.finish_group(AUDIO_VALID_GROUP)


def _quiet_model_loading() -> None:
    """One progress bar for the job: no per-model weight-loading bars from transformers."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # transformers is a dependency; without it the encoders report it
        return
    hf_logging.disable_progress_bar()


def _encode_with_oom_retry(encode: Callable, crops: np.ndarray) -> dict[str, np.ndarray]:
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
        a = _encode_with_oom_retry(encode, crops[:half])
        b = _encode_with_oom_retry(encode, crops[half:])
        return {k: np.concatenate([a[k], b[k]]) for k in a}


def _frames_folder_length(frames_dir: str) -> int:
    names = [p.stem for p in Path(frames_dir).glob("*.jpg")]
    numbers = [int(s) for s in names if s.isdigit()]
    if not numbers:
        raise FileNotFoundError(f"{frames_dir}: no numbered .jpg frames")
    return max(numbers)


def _drain(pending: list[Future], keep: int) -> None:
    """Bound the writer queue: wait for the oldest writes when too many are in flight."""
    while len(pending) > keep:
        pending.pop(0).result()


def _prefetch(iterator: Iterator[Any], depth: int) -> Iterator[Any]:
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


def run_extraction(
    manifest: pd.DataFrame,
    store: str,
    cfg: ExtractConfig,
    *,
    shard: Shard | None = None,
    tracks: set[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> JobSummary:
    """Extract every planned track; failures are recorded and the job goes on."""
    from tqdm.auto import tqdm

    shard = shard or Shard(0, 1)
    t0 = time.perf_counter()
    bytes_before = _dir_bytes(store)
    extractor = Extractor(cfg, store, overwrite=overwrite)
    failures = FailureLog(failures_path(store))
    summary = JobSummary()
    if "status" in manifest:  # tracks the manifest marks unusable (missing video, ...) are skipped
        manifest = manifest[manifest["status"].astype(str).isin(["ok", ""])]
    plans = extractor.plan(manifest, shard, tracks)
    todo = [p for p in plans if p.reason != "skip"]
    summary.skipped = [p.track_id for p in plans if p.reason == "skip"]
    log.info(
        "shard %s: %d tracks to extract, %d already complete",
        shard,
        len(todo),
        len(summary.skipped),
    )
    total = sum(p.n_frames for p in todo) or None
    bar = tqdm(total=total, unit="frame", desc="extract", disable=not progress, smoothing=0.1)
    for plan in todo:
        t_track = time.perf_counter()
        extractor.stage = "probe"
        try:
            n = extractor.run_track(plan, bar.update)
        except Exception as exc:  # one bad track costs one track: recorded, the job goes on
            failure = failures.record(plan.track_id, extractor.stage, exc)
            summary.failed.append(failure)
            log.error("%s failed at %s: %s", plan.track_id, failure.stage, failure.error)
            continue
        summary.done.append(plan.track_id)
        summary.frames += n
        dt = time.perf_counter() - t_track
        log.info(
            "%s: %d frames (%s: %s) in %.1f s, %.1f frames/s",
            plan.track_id,
            n,
            plan.reason,
            ", ".join(plan.groups),
            dt,
            n / dt if dt > 0 else 0.0,
        )
    bar.close()
    summary.seconds = time.perf_counter() - t0
    summary.bytes_written = max(0, _dir_bytes(store) - bytes_before)
    return summary
