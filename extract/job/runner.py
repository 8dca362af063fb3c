"""The extraction job: every track of a manifest (shard) into one feature store.

`run_extraction` plans first (plan.py: no model loaded, nothing decoded), stops before any work
when complete tracks' sources changed and --overwrite was not given, then runs each track
through its stages (stages.py): probe, faces and visual encoders (decode and faces in a
background thread, writes in a writer thread, so the encoder is rarely idle), audio, commit.
Models are loaded the first time a track needs them (models.py).

A failing track is recorded in the failures table with the stage it failed in and costs only
itself; a track another process is writing is skipped and said; everything the job does not do
is listed in its summary.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from data_manifest.cli_support import UserError
from extract.job.config import ExtractConfig
from extract.job.failures import Failure, FailureLog, failures_path
from extract.job.group_fields import group_fields
from extract.job.models import ModelCache
from extract.job.plan import Plan, SkippedRow, StoreState, TrackPlan, plan
from extract.job.shard import Shard
from extract.job.stages import (
    StageError,
    TrackResult,
    Writes,
    encode_with_oom_retry,
    probe_times,
    run_audio,
    run_visual,
    stage,
    track_attrs,
)
from extract.store import TrackLeased, schema

log = logging.getLogger("auwild.extract")

LOW_FACE_RATE = 0.5  # tracks with fewer frames with a face are named in the summary

# kept for callers of the former names
_encode_with_oom_retry = encode_with_oom_retry


class SourcesChanged(UserError):
    """Complete tracks whose sources changed; nothing was extracted."""


@dataclass
class JobSummary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already complete
    failed: list[Failure] = field(default_factory=list)
    skipped_rows: list[SkippedRow] = field(default_factory=list)  # manifest status not ok
    unknown: list[str] = field(default_factory=list)  # --tracks ids not in the manifest
    leased: list[tuple[str, str]] = field(default_factory=list)  # (track, holder)
    low_faces: list[tuple[str, float]] = field(default_factory=list)  # (track, face rate)
    rewritten: list[tuple[str, str, list[str]]] = field(
        default_factory=list
    )  # (track, change, dropped)
    frames: int = 0  # frames processed (visual or audio) in this run
    seconds: float = 0.0
    bytes_written: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.unknown

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def table(self) -> str:
        rows = [
            ("tracks done", str(len(self.done))),
            ("tracks skipped", str(len(self.skipped))),
            ("tracks failed", str(len(self.failed))),
            ("tracks leased elsewhere", str(len(self.leased))),
            ("rows not usable", str(len(self.skipped_rows))),
            ("frames", str(self.frames)),
            ("frames per second", f"{self.fps:.1f}"),
            ("bytes written", _human_bytes(self.bytes_written)),
        ]
        width = max(len(k) for k, _ in rows)
        lines = [f"  {k:<{width}}  {v}" for k, v in rows]
        for failure in self.failed:
            lines.append(f"  FAILED {failure.track} [{failure.stage}] {failure.error}")
        if self.unknown:
            lines.append(
                f"  UNKNOWN --tracks id(s), not in the manifest: {', '.join(self.unknown)}"
            )
        for row in self.skipped_rows:
            lines.append(f"  SKIPPED manifest row {row.row_number} {row.track_id}: {row.why}")
        for tid, holder in self.leased:
            lines.append(f"  LEASED {tid}: being written by {holder}; left to it")
        for tid, rate in self.low_faces:
            what = "no face in any frame" if rate == 0 else f"a face in {rate:.0%} of frames"
            lines.append(f"  FEW FACES {tid}: {what}")
        for tid, change, dropped in self.rewritten:
            lost = f"; dropped groups {', '.join(dropped)}" if dropped else ""
            lines.append(f"  REWRITTEN {tid}: sources changed ({change}){lost}")
        return "\n".join(lines)


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


def _dir_bytes(path: str) -> int:
    if "://" in path and not path.startswith("file://"):
        return 0
    root = Path(path.removeprefix("file://"))
    if not root.exists():
        return 0
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def open_writer(store: str, cfg: ExtractConfig, fields: dict[str, dict]):
    """The store writer with every group of the job registered; returns (writer, fingerprints)."""
    from extract.store import FingerprintMismatch, StoreWriter

    models = {g: f for g, f in fields.items() if g.startswith(("visual/", "audio/"))}
    writer = StoreWriter(store, create=True, extractor_config=cfg.to_dict(), models=models)
    try:
        fingerprints = {g: writer.register_group(g, fields=f) for g, f in fields.items()}
    except FingerprintMismatch as exc:
        raise UserError(
            f"{store}: {exc}. This store was extracted with other settings; use another --store "
            "for these settings"
        ) from exc
    return writer, fingerprints


def changed_message(store: str, changed: list[TrackPlan]) -> str:
    names = "; ".join(f"{p.track_id} ({p.change})" for p in changed[:5])
    more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
    return (
        f"{store}: the sources of {len(changed)} complete track(s) changed since they were "
        f"extracted: {names}{more}. Nothing was extracted. Rerun with --overwrite to rewrite "
        "them whole (groups not named on this command line are dropped from them), or restore "
        "the original files."
    )


def run_track(
    p: TrackPlan,
    writer,
    cfg: ExtractConfig,
    models: ModelCache,
    advance: Callable[[int], None],
) -> TrackResult:
    """Extract the planned groups of one track, under its lease. Raises StageError or TrackLeased."""
    from extract.store import TrackExists

    with stage("probe"):
        times = probe_times(p, cfg, writer.url)
        attrs = track_attrs(p, times)
    n_frames = len(times)
    try:
        tw = writer.open_track(
            p.track_id,
            n_frames=n_frames,
            attrs=attrs,
            overwrite=p.reason == "changed",
            add_groups=p.reopens,
            replace_groups=tuple(p.replace),
            row=p.row_number,
        )
    except TrackExists:  # another process completed it since we planned
        return TrackResult(0, already_done=True)
    except TrackLeased:
        raise
    except Exception as exc:
        raise StageError("open", exc) from exc
    try:
        groups = list(p.groups)
        if p.reason == "add":  # another process may have added them while we waited
            groups = [g for g in groups if not tw.has_group(g)]
            if not groups:
                tw.abort()
                return TrackResult(0, already_done=True)
        if not p.reopens:
            with stage("write"):
                tw.create_array(schema.TIME, shape=(n_frames,), dtype="float64")
                tw.write(schema.TIME, 0, times)
        visual = [g for g in groups if g == schema.FACE_GROUP or g.startswith("visual/")]
        audio = [g for g in groups if g == schema.AUDIO_VALID_GROUP or g.startswith("audio/")]
        rate = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer") as pool:
            writes = Writes(pool)
            try:
                if visual:
                    rate = run_visual(p, tw, n_frames, visual, cfg, models, writes, advance)
                writes.drain()
            finally:
                for fut in writes.pending:
                    fut.cancel()
        if audio:
            run_audio(p, tw, times, audio, models)
            if not visual:
                advance(n_frames)
        with stage("commit"):
            tw.commit()
    except BaseException:
        try:
            tw.abort()
        except Exception as exc:  # the error that brought us here matters more
            log.warning("%s: abort after failure also failed: %s", p.track_id, exc)
        raise
    return TrackResult(n_frames, face_rate=rate)


def run_extraction(
    manifest: pd.DataFrame,
    store: str,
    cfg: ExtractConfig,
    *,
    shard: Shard | None = None,
    tracks: set[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    models: ModelCache | None = None,
) -> JobSummary:
    """Extract every planned track; failures are recorded and the job goes on.

    Raises SourcesChanged (nothing extracted) when complete tracks' sources changed and
    `overwrite` is False.
    """
    from tqdm.auto import tqdm

    shard = shard or Shard(0, 1)
    t0 = time.perf_counter()
    bytes_before = _dir_bytes(store)
    fields = group_fields(cfg)  # no model loaded
    writer, fingerprints = open_writer(store, cfg, fields)
    the_plan: Plan = plan(
        manifest, StoreState.read(store), fingerprints, shard, tracks, overwrite=overwrite
    )
    if the_plan.changed:
        raise SourcesChanged(changed_message(store, the_plan.changed))
    models = models or ModelCache(cfg)
    failures = FailureLog(failures_path(store))
    summary = JobSummary(
        skipped=[p.track_id for p in the_plan.complete],
        skipped_rows=the_plan.skipped_rows,
        unknown=the_plan.unknown,
    )
    for bad in the_plan.bad_ids:
        exc = ValueError(f"manifest row {bad.row_number}: {bad.why}")
        summary.failed.append(failures.record(bad.track_id, "plan", exc))
        log.error("%s (row %d): %s", bad.track_id, bad.row_number, bad.why)
    for row in the_plan.skipped_rows:
        log.warning("manifest row %d %s skipped: %s", row.row_number, row.track_id, row.why)
    if the_plan.unknown:
        log.error("--tracks names id(s) not in the manifest: %s", ", ".join(the_plan.unknown))
    todo = the_plan.todo
    log.info(
        "shard %s: %d tracks to extract, %d already complete",
        shard,
        len(todo),
        len(summary.skipped),
    )
    total = sum(p.n_frames for p in todo) or None
    bar = tqdm(total=total, unit="frame", desc="extract", disable=not progress, smoothing=0.1)
    for p in todo:
        t_track = time.perf_counter()
        try:
            result = run_track(p, writer, cfg, models, bar.update)
        except StageError as exc:  # one bad track costs one track: recorded, the job goes on
            if isinstance(exc.error, UserError):  # a model that cannot load fails every track
                raise exc.error from None
            failure = failures.record(p.track_id, exc.stage, exc.error)
            summary.failed.append(failure)
            log.error("%s failed at %s: %s", p.track_id, failure.stage, failure.error)
            continue
        except TrackLeased as exc:
            holder = _holder(exc)
            summary.leased.append((p.track_id, holder))
            log.warning("%s: being written by %s; skipped", p.track_id, holder)
            continue
        if result.already_done:
            summary.skipped.append(p.track_id)
            continue
        summary.done.append(p.track_id)
        summary.frames += result.n_frames
        if p.reason == "changed":
            summary.rewritten.append((p.track_id, p.change, p.dropped))
        if result.face_rate is not None and result.face_rate < LOW_FACE_RATE:
            summary.low_faces.append((p.track_id, result.face_rate))
            log.warning("%s: a face in only %.0f%% of frames", p.track_id, 100 * result.face_rate)
        dt = time.perf_counter() - t_track
        log.info(
            "%s: %d frames (%s: %s) in %.1f s, %.1f frames/s",
            p.track_id,
            result.n_frames,
            p.reason,
            ", ".join(p.groups),
            dt,
            result.n_frames / dt if dt > 0 else 0.0,
        )
    bar.close()
    summary.seconds = time.perf_counter() - t0
    summary.bytes_written = max(0, _dir_bytes(store) - bytes_before)
    return summary


def _holder(exc) -> str:
    h = exc.holder
    return f"pid {h.get('pid')} on host {h.get('host')!r} since {h.get('started')}"
