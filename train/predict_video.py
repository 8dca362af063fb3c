"""AUs for new videos: a run's features extracted for video files, predicted, written OpenFace-style.

A run knows everything needed to apply it to a video nobody put in a manifest: its checkpoint
names the store arrays the model reads and the fingerprint fields of their groups, and its
store records the extraction settings and model sources. So the videos become a one-row-per-video
manifest, go through the extraction job (`extract.job.runner.run_extraction`) with those settings
into a temporary store (or `keep_store`), and through `train.predict.predict_split`, fold models
combined as for any split. Before anything is extracted, the fields the job would record here
are compared with the ones the model was trained on, so features that would differ (another
model file, another crop size, GPU against CPU precision) are refused with the fields named.

Per video, DIR/<stem>.csv has one row per decoded frame, faces or not (as OpenFace writes):
frame (1-based), timestamp (s, from the container), face and success (1 when a face was
found; the store keeps no detector confidence), AU01_r.. (probability) and AU01_c.. (0/1
decision at the run's thresholds); DIR/<stem>.png is the timeline. A video that cannot be
probed or extracted costs one line and that video.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data_manifest.aus import AUS
from data_manifest.shared_files import write_atomic, write_text_atomic
from data_manifest.user_error import UserError

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset(
    ".mp4 .m4v .mov .avi .mkv .webm .mpg .mpeg .wmv .flv .ts .mts .3gp .ogv".split()
)
SPLIT = "test"  # the split the videos' manifest rows are in


def openface_au(name: str) -> str:
    """Project AU name -> OpenFace's zero-padded spelling: AU1 -> AU01, AU12 -> AU12."""
    return f"AU{int(name[2:]):02d}"


R_COLUMNS = [openface_au(a) + "_r" for a in AUS]
C_COLUMNS = [openface_au(a) + "_c" for a in AUS]
COLUMNS = ["frame", "timestamp", "face", "success", *R_COLUMNS, *C_COLUMNS]


@dataclass
class VideoResult:
    video: Path
    csv: Path
    png: Path
    n_frames: int
    no_face: list[tuple[int, int]]  # 1-based inclusive frame ranges without a face


@dataclass
class Skipped:
    video: Path
    why: str

    def __post_init__(self) -> None:
        self.why = self.why.removeprefix(f"{self.video}: ")  # the line names the video once


@dataclass
class VideoSummary:
    written: list[VideoResult] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    store: str | None = None  # the kept store, if any
    manifest: str | None = None  # its manifest, if kept
    notes: list[str] = field(default_factory=list)  # how these videos went otherwise than RUN's

    @property
    def ok(self) -> bool:
        return not self.skipped

    def lines(self) -> list[str]:
        out = []
        for r in self.written:
            faces = r.n_frames - sum(b - a + 1 for a, b in r.no_face)
            where = f"; no face in frames {format_ranges(r.no_face)}" if r.no_face else ""
            where = "; no face in any frame" if r.no_face and not faces else where
            out.append(
                f"wrote {r.csv} and {r.png.name}: {r.n_frames} frames, {faces} with a face{where}"
            )
        for s in self.skipped:
            out.append(f"SKIPPED {s.video}: {s.why}")
        out += [f"NOTE {n}" for n in self.notes]
        out.append(
            f"{len(self.written)} video(s) written, {len(self.skipped)} skipped"
            + (f"; store kept at {self.store} (manifest {self.manifest})" if self.store else "")
        )
        return out


def format_ranges(ranges: list[tuple[int, int]], most: int = 12) -> str:
    """[(1, 20), (45, 45)] -> "1-20, 45" (the first `most`, then how many more)."""
    parts = [f"{a}-{b}" if b > a else str(a) for a, b in ranges[:most]]
    if len(ranges) > most:
        parts.append(f"and {len(ranges) - most} more ranges")
    return ", ".join(parts)


def faceless_ranges(face: np.ndarray) -> list[tuple[int, int]]:
    """1-based inclusive (first, last) frame ranges where `face` (T,) is False."""
    edges = np.diff(np.r_[0, (~np.asarray(face, bool)).astype(np.int8), 0])
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(a) + 1, int(b)) for a, b in zip(starts, stops)]


# ----------------------------------------------------------------------------- the videos


def list_videos(path: str | Path) -> list[Path]:
    """A video file, or every video file (by suffix) directly in a folder, sorted."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UserError(f"--video: no such file or folder: {path}")
    videos = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise UserError(
            f"--video: no video file in {path} (suffixes {', '.join(sorted(VIDEO_SUFFIXES))})"
        )
    return videos


def _track_ids(videos: list[Path]) -> list[str]:
    """One store-safe, unique track id per video: its stem (a.mp4 and a.avi: a, a_avi)."""
    from data_manifest.track_id import why_unsafe

    out: list[str] = []
    for v in videos:
        tid = re.sub(r"[^A-Za-z0-9_.-]+", "_", v.stem).strip("._") or "video"
        if why_unsafe(tid):
            tid = "video"
        base, k = tid, 1
        while tid in out:
            suffix = v.suffix.lstrip(".").lower()
            tid = f"{base}_{suffix}" if k == 1 else f"{base}_{suffix}{k}"
            k += 1
        out.append(tid)
    return out


def video_manifest(videos: list[Path]) -> pd.DataFrame:
    """One manifest row per video (split `test`, no labels), probed like `auwild-manifest csv`:
    a file that cannot be probed gets status bad_video and its reason in `error`."""
    from data_manifest.manifest import make_manifest
    from data_manifest.track_row import TrackRow
    from data_manifest.video_probe import VideoProbeError, probe_counts

    rows = []
    for tid, video in zip(_track_ids(videos), videos):
        row = TrackRow(tid, tid, SPLIT, "none", video=str(video.resolve()))
        try:
            counts = probe_counts(video)
            row.fps, row.n_frames = counts.fps, counts.n_frames
        except VideoProbeError as exc:
            row.problem("bad_video", str(exc))
        except Exception as exc:  # a file the decoder cannot open at all: that video only
            row.problem("bad_video", f"{video}: {type(exc).__name__}: {exc}")
        rows.append(row.as_dict())
    return make_manifest(rows)


# ----------------------------------------------------------------------------- the settings


def _meta(model_dir: Path, which: str) -> dict[str, Any]:
    for name in ("best.json", "last.json") if which == "best" else ("last.json",):
        if (model_dir / name).exists():
            return json.loads((model_dir / name).read_text())
    raise UserError(f"{model_dir}: no checkpoint (best.pt or last.pt); did fit finish an epoch?")


def needed_groups(meta: dict[str, Any]) -> list[str]:
    """The store groups a checkpoint's model reads: its features, the face flag, the audio flag."""
    from extract.store.schema import group_of

    data = meta["config"]["data"]
    keys = list(meta["keys"])
    paths = [data["features"][k] for k in keys] + [data.get("face_valid", "face/valid")]
    if "audio" in keys:
        paths.append(data.get("audio_valid", "audio/valid"))
    return sorted({g for g in (group_of(p) for p in paths) if g})


def _source(
    kind: str,
    name: str,
    recorded: str | None,
    given: dict[str, str | None],
    models_dir: str | None,
) -> str | None:
    """The model source of one encoder: given on the command line, else the recorded one, else
    a folder of the same name under `models_dir`; a recorded folder that is gone is a UserError."""
    from extract.encoders.hf_source import looks_like_path

    if given.get(name):
        return given[name]
    if not recorded:
        return recorded
    base = os.path.basename(os.path.normpath(recorded))
    if models_dir:
        candidate = Path(models_dir).expanduser() / base
        if candidate.is_dir():
            return str(candidate)
    if looks_like_path(recorded) and not os.path.isdir(os.path.expanduser(recorded)):
        where = f" nor in {models_dir}" if models_dir else ""
        raise UserError(
            f"{kind} encoder {name!r}: model folder {recorded} recorded in the run's store is "
            f"not there{where}; pass --models-dir DIR (a folder holding {base}/) or "
            f"--{kind} {name}=PATH"
        )
    return recorded


def _device(device: str, fields: dict[str, dict]) -> str:
    """`auto` -> the kind the store's encoders computed on when this machine has it (their
    numbers depend on it); an explicit device is kept."""
    if device != "auto":
        return device
    kinds = {f["compute"] for f in fields.values() if isinstance(f, dict) and "compute" in f}
    if kinds == {"cpu"}:
        return "cpu"
    if kinds == {"cuda"}:
        import torch

        if torch.cuda.is_available():
            return "cuda"
    return device


def extract_config(
    run: str | Path,
    which: str = "best",
    device: str = "auto",
    models_dir: str | None = None,
    visual: dict[str, str | None] | None = None,
    audio: dict[str, str | None] | None = None,
    store: str | None = None,
):
    """The ExtractConfig that writes the arrays RUN's model reads with the settings of RUN's
    store, and checks that its fingerprint fields are the ones the model was trained on.

    `visual` / `audio`: {encoder: model source} replacing the recorded sources; `models_dir`:
    where to look for recorded model folders that moved (by folder name); `store`: RUN's store
    when it is no longer where RUN says."""
    from extract.job.config import ExtractConfig
    from extract.job.group_fields import group_fields
    from extract.store.fingerprint import describe_diff, group_entry
    from train.run import model_dirs, read_run_info

    info = read_run_info(run)
    meta = _meta(model_dirs(run)[0], which)
    groups = needed_groups(meta)
    saved_fp = meta.get("store_fingerprints") or {}
    saved_fields = meta.get("store_fields") or {}
    store = store or info.get("store", "")
    try:
        from extract.store import StoreReader

        recorded = dict(StoreReader(store).attrs.get("extractor") or {})
    except Exception as exc:
        raise UserError(
            f"{run}: cannot read the extraction settings from the run's store {store!r} ({exc})"
        ) from exc
    if not recorded:
        raise UserError(
            f"{store}: the store records no extraction settings (not written by auwild-extract "
            "run); videos cannot be extracted like it"
        )
    names = {
        "visual": [g.split("/", 1)[1] for g in groups if g.startswith("visual/")],
        "audio": [g.split("/", 1)[1] for g in groups if g.startswith("audio/")],
    }
    given = {"visual": dict(visual or {}), "audio": dict(audio or {})}
    for kind in ("visual", "audio"):
        extra = sorted(set(given[kind]) - set(names[kind]))
        if extra:
            raise UserError(
                f"--{kind} {extra[0]}: the run's model does not read that encoder; it reads "
                f"{', '.join(names['visual'] + names['audio']) or 'none'}"
            )
    sources = {}
    for kind in ("visual", "audio"):
        rec = recorded.get(kind) or {}
        sources[kind] = {}
        for name in names[kind]:
            if name not in rec:
                raise UserError(f"{store}: no settings recorded for {kind} encoder {name!r}")
            sources[kind][name] = _source(kind, name, rec[name], given[kind], models_dir)
    known = {f.name for f in dataclasses.fields(ExtractConfig)} - {"visual", "audio", "device"}
    kwargs = {k: v for k, v in recorded.items() if k in known}
    if kwargs.get("audio_layers"):
        kwargs["audio_layers"] = tuple(kwargs["audio_layers"])
    cfg = ExtractConfig(
        visual=sources["visual"],
        audio=sources["audio"],
        device=_device(device, saved_fields),
        **kwargs,
    )
    fields = group_fields(cfg)
    differ = []
    for g in groups:
        if g not in fields:
            raise UserError(
                f"{run}: the model reads group {g!r}, which extracting "
                f"{', '.join(names['visual'] + names['audio'])} does not write"
            )
        if saved_fp.get(g) and group_entry(fields[g])["fingerprint"] != saved_fp[g]:
            diff = describe_diff(saved_fields.get(g, {}), fields[g], ("trained", "here"))
            differ.append(f"{g} ({diff or 'fingerprints differ'})")
    if differ:
        hint = ""
        if any("compute" in d for d in differ):
            hint = "; --device chooses where encoders run (their precision differs on a GPU)"
        if any("content_hash" in d or "revision" in d for d in differ):
            hint += (
                "; give the model files the store was extracted with (--visual/--audio NAME=PATH)"
            )
        raise UserError(
            "features extracted here would differ from the ones the model was trained on: "
            + "; ".join(differ)
            + hint
        )
    return cfg


def face_path_note(trained: dict | None, here: dict | None) -> str | None:
    """A line when the faces of the new videos were found otherwise than those of RUN's tracks.

    `trained` / `here`: the per-track fields of the face group (aligned_input, detector, ...) of
    a track of RUN's store and of a new video. They are not in the group fingerprint (a store
    mixes aligned crops and videos), but a model trained on aligned crops meets detector crops
    here, which users should know when they read the probabilities."""
    from extract.store.fingerprint import describe_diff

    if not trained or not here:
        return None
    # settings one side lacks (a detector's parameters beside aligned crops) are implied by
    # aligned_input and detector; listing them as '<missing>' would bury the point
    keys = (set(trained) & set(here)) | {"aligned_input", "detector"}
    diff = describe_diff(
        {k: v for k, v in trained.items() if k in keys},
        {k: v for k, v in here.items() if k in keys},
        ("trained", "here"),
    )
    if not diff:
        return None
    aligned = (
        "RUN's faces came from aligned crops, these from the videos; "
        if (trained.get("aligned_input") and not here.get("aligned_input"))
        else ""
    )
    return f"faces were found otherwise than in the run's training tracks: {aligned}{diff}"


def _face_track_fields(reader, tid: str | None) -> dict | None:
    if tid is None:
        return None
    groups = reader.track_attrs(tid).get("groups") or {}
    return (groups.get("face") or {}).get("track_fields")


# ----------------------------------------------------------------------------- outputs


def openface_frame(
    times: np.ndarray, face: np.ndarray, probs: np.ndarray, binary: np.ndarray
) -> pd.DataFrame:
    """OpenFace-like table: times (T,) s, face (T,) bool, probs (T, A), binary (T, A)."""
    n = len(times)
    out = pd.DataFrame(
        {
            "frame": np.arange(1, n + 1),
            "timestamp": np.asarray(times, np.float64),
            "face": np.asarray(face, bool).astype(np.int8),
            "success": np.asarray(face, bool).astype(np.int8),
        }
    )
    r = pd.DataFrame(np.asarray(probs, np.float64), columns=R_COLUMNS)
    c = pd.DataFrame(np.asarray(binary, np.int8), columns=C_COLUMNS)
    return pd.concat([out, r, c], axis=1)[COLUMNS]


def write_csv(path: Path, table: pd.DataFrame) -> None:
    write_text_atomic(path, table.to_csv(index=False, float_format="%.6f"))


def _thresholds(run: str | Path, which: str) -> np.ndarray:
    """The decision thresholds to draw: the model's, or the mean over fold models."""
    from train.run import model_dirs, thresholds_of

    return np.mean([thresholds_of(_meta(d, which)) for d in model_dirs(run)], axis=0)


# ----------------------------------------------------------------------------- the job


def predict_videos(
    video: str | Path,
    run: str | Path,
    out: str | Path,
    *,
    which: str = "best",
    device: str = "auto",
    keep_store: str | None = None,
    models_dir: str | None = None,
    visual: dict[str, str | None] | None = None,
    audio: dict[str, str | None] | None = None,
    store: str | None = None,
    progress: bool = True,
) -> VideoSummary:
    """Extract, predict and write DIR/<stem>.csv and .png for a video or a folder of videos."""
    from extract.job.models import ModelCache
    from extract.job.runner import SourcesChanged, run_extraction
    from train.report_figures import timeline
    from train.run import read_run_info

    videos = list_videos(video)
    cfg = extract_config(run, which, device, models_dir, visual, audio, store)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = VideoSummary()
    manifest = video_manifest(videos)
    by_track = dict(zip(manifest["track_id"], videos))
    for _, row in manifest[manifest["status"] != "ok"].iterrows():
        summary.skipped.append(Skipped(by_track[row["track_id"]], str(row["error"])))
        log.error("%s skipped: %s", by_track[row["track_id"]], row["error"])
    usable = manifest[manifest["status"] == "ok"].reset_index(drop=True)
    with tempfile.TemporaryDirectory(prefix="auwild-predict-video-") as tmp:
        target = keep_store or str(Path(tmp) / "features.zarr")
        man_path = (
            Path(str(keep_store).rstrip("/")).with_suffix(".manifest.parquet")
            if keep_store
            else Path(tmp) / "manifest.parquet"
        )
        done: list[str] = []
        if len(usable):
            try:
                job = run_extraction(usable, target, cfg, progress=progress, models=ModelCache(cfg))
            except SourcesChanged as exc:  # only a kept store can hold tracks already
                raise UserError(
                    f"--keep-store {keep_store} holds videos of these names made from other "
                    f"files; use another --keep-store ({exc})"
                ) from exc
            for failure in job.failed:
                v = by_track.get(failure.track, Path(failure.track))
                why = f"extraction failed at {failure.stage}: {failure.error}"
                summary.skipped.append(Skipped(v, why))
            for tid, holder in job.leased:
                summary.skipped.append(Skipped(by_track[tid], f"being written by {holder}"))
            done = [t for t in usable["track_id"] if t in set(job.done) | set(job.skipped)]
        if done:  # the manifest of what the store holds: `auwild-train predict` reads it too
            note = _face_note(store or read_run_info(run).get("store", ""), target, done[0])
            if note:
                log.warning("%s", note)
                summary.notes.append(note)
            from data_manifest.manifest import write_manifest

            write_manifest(usable[usable["track_id"].isin(done)], man_path)
            paths = (target, str(man_path))
            _predict_and_write(run, *paths, done, by_track, out, which, device, summary, timeline)
        if keep_store and done:
            from extract.store.consolidate import consolidate_store

            consolidate_store(target)
            summary.store, summary.manifest = target, str(man_path)
    summary.skipped.sort(key=lambda s: str(s.video))
    return summary


def _predict_and_write(run, store, manifest, done, by_track, out, which, device, summary, draw):
    """Predict the extracted tracks `done` (all at once; one at a time if that fails, so a
    failing video costs only itself) and write each one's CSV and timeline."""
    from train import tracks as T
    from train.predict import predict_split

    try:
        batches = [predict_split(run, SPLIT, store, manifest, which, device, done)]
    except UserError:
        raise
    except Exception as exc:
        log.warning("predicting %d videos at once failed (%s); one at a time", len(done), exc)
        batches = []
        for tid in done:
            try:
                batches.append(predict_split(run, SPLIT, store, manifest, which, device, [tid]))
            except Exception as exc:  # this video only
                summary.skipped.append(Skipped(by_track[tid], f"prediction failed: {exc}"))
    reader = T.open_store(store)
    thresholds = _thresholds(run, which)
    for preds in batches:
        for tid in preds.order:
            video = by_track[tid]
            try:
                summary.written.append(
                    _write_video(out, tid, video, preds, reader, thresholds, draw)
                )
            except OSError as exc:
                summary.skipped.append(Skipped(video, f"could not write its outputs: {exc}"))


def _face_note(run_store: str, store: str, tid: str) -> str | None:
    """face_path_note for a track of RUN's store (its first) and new track `tid` of `store`;
    None when RUN's store cannot be read (it was read for the settings: only if it went away)."""
    from train import tracks as T

    try:
        trained_reader = T.open_store(run_store)
        first = next(iter(trained_reader.tracks()), None)
        trained = _face_track_fields(trained_reader, first)
    except Exception as exc:  # a note is not worth failing the videos for; said at debug level
        log.debug("no face fields of the run's store: %s", exc)
        return None
    return face_path_note(trained, _face_track_fields(T.open_store(store), tid))


def _write_video(out: Path, tid: str, video: Path, preds, reader, thresholds, draw) -> VideoResult:
    face = preds.tracks[tid].face_valid  # (T,) bool
    probs, binary = preds.probs[tid], preds.binary[tid]  # (T, A) each
    times = reader.read(tid, "time")  # (T,) s, container presentation times
    csv_path, png_path = out / f"{tid}.csv", out / f"{tid}.png"
    write_csv(csv_path, openface_frame(times, face, probs, binary))
    write_atomic(png_path, draw(video.name, probs, binary, None, face, thresholds))
    return VideoResult(video, csv_path, png_path, len(times), faceless_ranges(face))
