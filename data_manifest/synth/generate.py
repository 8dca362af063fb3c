"""Write the synthetic dataset in the Aff-Wild2 layout, deterministically from one seed.

DIR/videos/batch1/<video>.mp4                 25 fps video with an AAC audio stream
DIR/cropped_aligned/<track>/%05d.jpg          square aligned crops, 1-based, with gaps
DIR/ABAW_Annotations/AU_Detection_Challenge/{Train_Set,Validation_Set}/<track>.txt
DIR/test_tracks.txt                           test tracks (no annotation files)
DIR/synth_truth.json                          seed, parameters, splits, counts, gaps
DIR/synth_truth/<track>.npz                   clean labels, intensities, landmarks, boxes

With `SynthConfig.long_range` set, some AUs follow slow episodes seen only in bursts
(`long_range.py`); synth_truth.json then records each track's episodes and subject levels
under "long_range", and each npz also holds `visible` (the intensities the face shows) and
`long_range_state` (the hidden episode state). Without it the output is exactly as before.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from data_manifest.annotations import write_annotation_file
from data_manifest.aus import AU_INDEX, AUS
from data_manifest.synth.au_process import face_activity, sample_utterances
from data_manifest.synth.audio import synthesize_audio
from data_manifest.synth.config import SynthConfig
from data_manifest.synth.face_render import AU_REGIONS, Occluder, random_identity, render_face
from data_manifest.synth.long_range import long_range_au, truth_of
from data_manifest.synth.nuisance import apply_camera, camera_timeline, face_timeline

log = logging.getLogger(__name__)

ANNOTATION_DIR = Path("ABAW_Annotations") / "AU_Detection_Challenge"
SPLIT_DIRS = {"train": "Train_Set", "val": "Validation_Set"}
RENDER_SIZE = 128  # side of the canvas a face is drawn in before it is placed in the video
_OUTPUTS = (
    "videos",
    "cropped_aligned",
    "ABAW_Annotations",
    "synth_truth",
    "test_tracks.txt",
    "synth_truth.json",
)


@dataclass
class VideoPlan:
    """One video of the dataset and the tracks (faces) in it."""

    index: int  # position in the dataset, also the seed stream
    name: str  # file stem
    tracks: list[str]  # track ids, left to right in the image
    sides: list[str]  # "left" / "right" / "none"
    split: str = "train"  # shared by all its tracks


def plan_videos(cfg: SynthConfig) -> list[VideoPlan]:
    """Videos, tracks and splits (video-level, so a _left/_right pair never straddles splits)."""
    if cfg.tracks < 1:
        raise ValueError("tracks must be >= 1")
    pair = cfg.pair and cfg.tracks >= 4
    n_videos = cfg.tracks - 1 if pair else cfg.tracks
    plans = []
    for k in range(n_videos):
        name = f"video{k:03d}"
        if pair and k == 1:
            plans.append(VideoPlan(k, name, [f"{name}_left", f"{name}_right"], ["left", "right"]))
        else:
            plans.append(VideoPlan(k, name, [name], ["none"]))
    n = cfg.tracks
    n_test = max(1, round(n * cfg.test_fraction)) if n >= 3 and cfg.test_fraction > 0 else 0
    n_val = max(1, round(n * cfg.val_fraction)) if n >= 2 and cfg.val_fraction > 0 else 0
    singles = [p for p in plans if len(p.tracks) == 1]
    order = np.random.default_rng([cfg.seed, 7]).permutation(len(singles))
    # Validation then test from the single-face videos; the rest (and the pair) train.
    counts = {"val": n_val, "test": n_test}
    for j in order[::-1]:
        for split in ("val", "test"):
            if counts[split] > 0:
                singles[j].split = split
                counts[split] -= 1
                break
    if not any(p.split == "train" for p in plans):
        plans[0].split = "train"
    return plans


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A room-like background (H, W, 3) float32: a colour gradient and a few soft shapes."""
    import cv2

    c0, c1 = rng.uniform(30, 220, 3), rng.uniform(30, 220, 3)
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = (c0 * (1 - y) + c1 * y) * np.ones((h, w, 3), np.float32)
    for _ in range(int(rng.integers(3, 7))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(20, h // 2))
        cv2.rectangle(img, (x0, y0), (x1, y1), tuple(float(v) for v in rng.uniform(20, 235, 3)), -1)
    return cv2.GaussianBlur(img.astype(np.float32), (0, 0), 2.0)


def _rot(deg: float) -> np.ndarray:
    r = np.deg2rad(deg)
    return np.array([[np.cos(r), -np.sin(r)], [np.sin(r), np.cos(r)]], np.float64)


def _unit_to_frame(center: np.ndarray, size: float, deg: float) -> np.ndarray:
    """2x3 affine taking unit-square face coordinates to frame pixels."""
    a = size * _rot(deg)
    return np.concatenate([a, (center - a @ np.array([0.5, 0.5]))[:, None]], 1)


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def _invert(m: np.ndarray) -> np.ndarray:
    a_inv = np.linalg.inv(m[:, :2])
    return np.concatenate([a_inv, (-a_inv @ m[:, 2])[:, None]], 1)


def _missing_frames(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames (0-based) with no face image: (a stretch where the face is hidden, a few singles)."""
    gap = max(2, int(0.06 * n))
    start = int(rng.integers(n // 5, max(n // 5 + 1, n - gap - 1)))
    stretch = np.arange(start, min(n, start + gap))
    singles = rng.choice(n, size=max(1, int(0.015 * n)), replace=False)
    return stretch, np.setdiff1d(singles, stretch)


def _unlabelled_rows(rng: np.random.Generator, n: int, fraction: float) -> np.ndarray:
    """Frames (0-based) written as -1 rows: one or two stretches, `fraction` of the track."""
    total = int(round(fraction * n))
    if total <= 0:
        return np.zeros(0, np.int64)
    parts = [total] if total < 4 or rng.random() < 0.5 else [total // 2, total - total // 2]
    rows = [
        np.arange(s, min(n, s + p)) for p in parts for s in [int(rng.integers(0, max(1, n - p)))]
    ]
    return np.unique(np.concatenate(rows))


class _VideoWriter:
    """Streams RGB frames into an mp4 with PyAV, then adds the audio track when closed."""

    def __init__(self, path: Path, cfg: SynthConfig):
        import av

        path.parent.mkdir(parents=True, exist_ok=True)
        self.cfg = cfg
        self.container = av.open(str(path), "w")
        vs = self.container.add_stream(cfg.codec, rate=int(round(cfg.fps)))
        vs.width, vs.height, vs.pix_fmt = cfg.video_width, cfg.video_height, "yuv420p"
        if cfg.codec in ("libx264", "h264"):
            vs.options = {"crf": "18", "preset": "veryfast", "threads": "1"}
        else:
            vs.bit_rate = 1_500_000
            vs.codec_context.thread_count = 1
        self.video = vs
        self.audio = self.container.add_stream("aac", rate=cfg.sample_rate, layout="mono")
        self.n = 0

    def write(self, frame: np.ndarray) -> None:
        """One (H, W, 3) uint8 RGB frame."""
        import av

        vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
        vf.pts = self.n
        self.n += 1
        self.container.mux(self.video.encode(vf))

    def close(self, audio: np.ndarray) -> None:
        """Flush the video, write the mono float audio (S,), close the file."""
        import av

        self.container.mux(self.video.encode(None))
        af = av.AudioFrame.from_ndarray(
            audio[None, :].astype(np.float32), format="flt", layout="mono"
        )
        af.sample_rate, af.pts = self.cfg.sample_rate, 0
        self.container.mux(self.audio.encode(af))
        self.container.mux(self.audio.encode(None))
        self.container.close()


def _render_video(
    plan: VideoPlan,
    cfg: SynthConfig,
    out: Path,
    missing_face: set[str],
    seed: np.random.SeedSequence,
) -> dict:
    """Render, encode and write one video with its crops; returns per-track truth."""
    import cv2

    rng = np.random.default_rng(seed)
    n, w, h, c = cfg.frames, cfg.video_width, cfg.video_height, cfg.crop_size
    n_faces = len(plan.tracks)
    utts = sample_utterances(rng, cfg, n, n_faces)
    base_f0 = rng.permutation([rng.uniform(100, 140), rng.uniform(180, 230)])[:n_faces]
    for u in utts:
        u.f0 = float(base_f0[u.owner] * rng.uniform(0.92, 1.08))
    slow = [{} for _ in range(n_faces)]
    if cfg.long_range is not None:
        # A stream of its own, so that everything else stays as without the option.
        own = np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, 1_000))
        lr_rng = np.random.default_rng(own)
        slow = [
            {au: long_range_au(lr_rng, cfg.long_range, n, cfg.fps) for au in cfg.long_range.aus}
            for _ in range(n_faces)
        ]
    acts = [face_activity(rng, cfg, n, utts, k, slow[k] or None) for k in range(n_faces)]
    people = [random_identity(rng) for _ in range(n_faces)]
    faces = [face_timeline(rng, cfg, n) for _ in range(n_faces)]
    cam = camera_timeline(rng, cfg, n)
    bg = _background(rng, w, h)
    audio = synthesize_audio(rng, utts, n, cfg.fps, cfg.sample_rate)
    if n_faces == 1:
        sizes = [0.62 * h]
        centers = [
            np.array([w / 2 + rng.uniform(-0.08, 0.08) * w, h / 2 + rng.uniform(-0.04, 0.04) * h])
        ]
    else:
        sizes = [0.5 * h, 0.5 * h]
        centers = [np.array([0.27 * w, 0.5 * h]), np.array([0.73 * w, 0.5 * h])]
    missing = {}
    for k, tid in enumerate(plan.tracks):
        missing[tid] = set()
        if tid in missing_face:
            stretch, singles = _missing_frames(rng, n)
            missing[tid] = set(stretch.tolist()) | set(singles.tolist())
            color = tuple(float(v) for v in rng.uniform(40, 200, 3))
            hide = Occluder("object", (0.5, 0.55), (0.5, 0.55), color)  # the face is gone
            for t in stretch:
                faces[k].occluders[int(t)] = faces[k].occluders[int(t)] + (hide,)
    lm_crop = np.zeros((n_faces, n, 68, 2), np.float32)
    lm_video = np.zeros((n_faces, n, 68, 2), np.float32)
    boxes = np.zeros((n_faces, n, 4), np.float32)
    crops_dirs = [out / "cropped_aligned" / tid for tid in plan.tracks]
    for d in crops_dirs:
        d.mkdir(parents=True, exist_ok=True)
    corner = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float64)
    video_path = out / "videos" / "batch1" / f"{plan.name}.mp4"
    writer = _VideoWriter(video_path, cfg)
    for t in range(n):
        frame = bg.copy()
        true_maps = []
        for k in range(n_faces):
            ft = faces[k]
            shown = acts[k].intensity if acts[k].visible is None else acts[k].visible
            img, alpha, lm = render_face(
                people[k],
                shown[t] * cfg.effect_scale,
                RENDER_SIZE,
                lighting=(float(ft.light[t, 0]), float(ft.light[t, 1])),
                occluders=ft.occluders[t],
                gaze=(float(ft.gaze[t, 0]), float(ft.gaze[t, 1])),
            )
            size = sizes[k] * float(ft.scale[t])
            m = _unit_to_frame(centers[k] + ft.shift[t] * sizes[k], size, float(ft.angle[t]))
            m_canvas = m.copy()
            m_canvas[:, :2] /= RENDER_SIZE
            warped = cv2.warpAffine(
                img.astype(np.float32), m_canvas, (w, h), flags=cv2.INTER_LINEAR
            )
            a = cv2.warpAffine(alpha, m_canvas, (w, h), flags=cv2.INTER_LINEAR)[..., None]
            frame = frame * (1 - a) + warped * a
            true_maps.append(m)
            lm_video[k, t] = _apply(m, lm.astype(np.float64))
            quad = _apply(m, corner)
            boxes[k, t] = (*quad.min(0), *quad.max(0))
        frame = apply_camera(frame.astype(np.float32), cam, t, rng)
        writer.write(frame)
        for k in range(n_faces):
            ft, m = faces[k], true_maps[k]
            dx, dy, dang, dscale = (float(v) for v in ft.align_err[t])
            size = sizes[k] * float(ft.scale[t]) * (1 + dscale)
            center = centers[k] + ft.shift[t] * sizes[k] + np.array([dx, dy]) * sizes[k]
            m_al = _unit_to_frame(center, size, float(ft.angle[t]) + dang)
            lm_crop[k, t] = _apply(_invert(m_al), lm_video[k, t].astype(np.float64))
            if t in missing[plan.tracks[k]]:
                continue
            m_crop = m_al.copy()
            m_crop[:, :2] /= c
            crop = cv2.warpAffine(
                frame, m_crop, (c, c), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
            )
            cv2.imwrite(
                str(crops_dirs[k] / f"{t + 1:05d}.jpg"),
                crop[..., ::-1],
                [cv2.IMWRITE_JPEG_QUALITY, 92],
            )
    writer.close(audio)
    truth = {}
    for k, tid in enumerate(plan.tracks):
        act = acts[k]
        annotated = None
        n_annotated = 0
        if plan.split in SPLIT_DIRS:
            ann = act.labels.copy()
            ann[_unlabelled_rows(rng, n, cfg.unlabelled_fraction)] = -1
            annotated = ANNOTATION_DIR / SPLIT_DIRS[plan.split] / f"{tid}.txt"
            write_annotation_file(out / annotated, ann)
            n_annotated = int((ann != -1).any(1).sum())
        extra = {}
        if slow[k]:
            state = np.zeros(act.labels.shape, bool)  # (T, 12)
            for au, lr in slow[k].items():
                state[:, AU_INDEX[au]] = lr.state
            extra = {"visible": act.visible, "long_range_state": state}
        np.savez_compressed(
            out / "synth_truth" / f"{tid}.npz",
            **extra,
            labels=act.labels,
            intensity=act.intensity,
            speaking=act.speaking,
            mouth_hidden=faces[k].mouth_hidden,
            corrupted=np.array([bool(x) for x in cam.corruption]),
            occluded=np.array([len(o) > 0 for o in faces[k].occluders]),
            landmarks_crop=lm_crop[k],
            landmarks_video=lm_video[k],
            box_video=boxes[k],
        )
        truth[tid] = {
            "split": plan.split,
            "video": str(video_path.relative_to(out)),
            "video_id": plan.name,
            "side": plan.sides[k],
            "n_frames": n,
            "n_valid": int(n - len(missing[tid])),
            "n_annotated": n_annotated,
            "labels": str(annotated) if annotated else None,
            "missing_frames": sorted(int(t) + 1 for t in missing[tid]),
            "positive_rate": {au: float(r) for au, r in zip(AUS, act.labels.mean(0))},
            "speaking_rate": float(act.speaking.mean()),
        }
        if slow[k]:
            truth[tid]["long_range"] = {
                au: truth_of(lr, act.labels[:, AU_INDEX[au]]) for au, lr in slow[k].items()
            }
    return truth


def generate_synthetic(
    out_dir: str | Path,
    cfg: SynthConfig | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Write the dataset to `out_dir` and return the truth that is also written to synth_truth.json."""
    cfg = cfg or SynthConfig()
    if cfg.long_range is not None:
        unknown = [au for au in cfg.long_range.aus if au not in AU_INDEX]
        if unknown:
            raise ValueError(f"long_range.aus: unknown AU(s) {unknown}; known: {list(AUS)}")
    out = Path(out_dir).resolve()
    existing = [name for name in _OUTPUTS if (out / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{out}: already holds {existing}; pass overwrite=True (--overwrite) to replace"
        )
    for name in existing:
        target = out / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    (out / "synth_truth").mkdir(parents=True, exist_ok=True)
    plans = plan_videos(cfg)
    seeds = np.random.SeedSequence(cfg.seed).spawn(len(plans))
    all_tracks = [(p, tid) for p in plans for tid in p.tracks]
    # Frames go missing preferably in training tracks (single-face ones first).
    rank = {"train": 0, "val": 1, "test": 2}
    pool = [
        tid for p, tid in sorted(all_tracks, key=lambda x: (rank[x[0].split], len(x[0].tracks)))
    ]
    missing_face = set(pool[: max(0, cfg.missing_face_tracks)])
    tracks: dict[str, dict] = {}
    iterator = plans
    if progress:
        from tqdm import tqdm

        iterator = tqdm(plans, desc="synth videos", unit="video")
    for plan, seed in zip(iterator, seeds):
        tracks.update(_render_video(plan, cfg, out, missing_face, seed))
    test = sorted(tid for tid, info in tracks.items() if info["split"] == "test")
    (out / "test_tracks.txt").write_text("".join(f"{tid}\n" for tid in test), encoding="utf-8")
    splits = {}
    for split in ("train", "val", "test"):
        part = [info for info in tracks.values() if info["split"] == split]
        splits[split] = {
            "tracks": len(part),
            "frames": sum(i["n_frames"] for i in part),
            "valid_frames": sum(i["n_valid"] for i in part),
            "annotated_frames": sum(i["n_annotated"] for i in part),
        }
    params = asdict(cfg)
    if cfg.long_range is None:
        del params["long_range"]  # off: the truth file reads as it did before the option
    truth = {
        "generator": "auwild synthetic Aff-Wild2 layout",
        "seed": cfg.seed,
        "params": params,
        "au_regions": {au: [list(b) for b in boxes] for au, boxes in AU_REGIONS.items()},
        "videos": {p.name: {"tracks": p.tracks, "split": p.split} for p in plans},
        "tracks": tracks,
        "splits": splits,
        "missing_frames_tracks": sorted(t for t, i in tracks.items() if i["missing_frames"]),
        "test_list": "test_tracks.txt",
    }
    (out / "synth_truth.json").write_text(json.dumps(truth, indent=1), encoding="utf-8")
    log.info("wrote %d tracks in %d videos to %s", len(tracks), len(plans), out)
    return truth
