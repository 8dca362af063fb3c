"""A small real feature store and manifest with a learnable AU signal, written in tests.

Each track has a hidden per-frame AU state z (T, 12), smoothed over time; labels are z > 0 and
the CLS features are a fixed linear map of z plus noise, so a frame-wise MLP can learn them.
The classical group (FHOG "cls", "regions", "geometry") and log-mel audio are noisier maps of
the same z, drawn from a second generator so the other arrays do not depend on them.
Some frames have no face (features zero, face/valid False) and some labels are -1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data_manifest.aus import ABAW_HEADER, N_AUS
from data_manifest.manifest import make_manifest, write_manifest
from extract.store import StoreWriter, TokenStorage

D_CLS, D_AUDIO, GRID, D_PATCH, N_ROIS = 16, 8, 2, 8, 4
D_HOG, N_HOG_REGIONS, D_HOG_REGION, D_GEOMETRY = 24, 3, 5, 10


def make_dataset(
    root: Path,
    n_train: int = 4,
    n_val: int = 2,
    n_test: int = 2,
    frames: int = 60,
    seed: int = 0,
    pair_videos: bool = True,
    patch_kind: str = "fp16",
    audio_gaps: bool = False,
) -> tuple[Path, Path]:
    """Write root/features.zarr and root/manifest.parquet; returns (store, manifest).

    audio_gaps: about a third of the frames have no audio (audio/valid False, audio zero)."""
    rng = np.random.default_rng(seed)
    w_cls = rng.normal(size=(N_AUS, D_CLS)).astype(np.float32)
    rng_classical = np.random.default_rng(seed + 1000)
    w_hog = rng_classical.normal(size=(N_AUS, D_HOG)).astype(np.float32)
    offsets = np.linspace(-0.8, 0.6, N_AUS)  # AUs from rare to common
    store = root / "features.zarr"
    writer = StoreWriter(str(store), create=True)
    writer.register_group("face", {"backend": "test"})
    writer.register_group("visual/dinov2", {"model": "tiny", "grid": GRID, "tokens": patch_kind})
    writer.register_group("audio/wavlm", {"model": "tiny"})
    writer.register_group("visual/classical", {"encoder": "classical", "hog": "test"})
    writer.register_group("audio/logmel", {"encoder": "logmel"})
    writer.register_group("audio", {"rule": "test"})
    ann_dir = root / "annotations"
    ann_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    splits = ["train"] * n_train + ["val"] * n_val + ["test"] * n_test
    for i, split in enumerate(splits):
        video = f"vid{i // 2}" if pair_videos else f"vid{i}"
        side = ("left", "right")[i % 2] if pair_videos else "none"
        tid = f"{video}_{side}" if pair_videos else video
        n = frames + 7 * (i % 3)
        z = rng.normal(size=(n, N_AUS))
        kernel = np.ones(5) / 5
        z = np.stack([np.convolve(z[:, a], kernel, mode="same") for a in range(N_AUS)], 1)
        z = z * 2 + offsets
        labels = (z > 0).astype(np.int8)
        labels[: 3 + i % 2, :3] = -1
        face = rng.random(n) > 0.1
        cls = z.astype(np.float32) @ w_cls + 0.3 * rng.normal(size=(n, D_CLS)).astype(np.float32)
        cls[~face] = 0
        audio = rng.normal(size=(n, D_AUDIO)).astype(np.float32)
        patch = rng.normal(size=(n, GRID, GRID, D_PATCH)).astype(np.float32)
        rois = np.tile(np.array([0.1, 0.1, 0.6, 0.6], np.float32), (n, N_ROIS, 1))
        with writer.open_track(tid, n_frames=n, attrs={"fps": 30.0}) as tw:
            tw.create_array("time", (n,), "float64")
            tw.write("time", 0, np.arange(n) / 30.0)
            for key, shape in (("box", (4,)), ("landmarks", (68, 2)), ("align", (2, 3))):
                tw.create_array(f"face/{key}", (n, *shape), "float32")  # the schema's face group
                tw.write(f"face/{key}", 0, np.zeros((n, *shape), np.float32))
            tw.create_array("face/valid", (n,), "bool")
            tw.write("face/valid", 0, face)
            tw.create_array("face/rois", (n, N_ROIS, 4), "float32")
            tw.write("face/rois", 0, rois)
            tw.finish_group("face")
            tw.create_array("visual/dinov2/cls", (n, D_CLS), "float16")
            tw.write("visual/dinov2/cls", 0, cls)
            tw.create_array(
                "visual/dinov2/patch",
                (n, GRID, GRID, D_PATCH),
                "float16",
                storage=TokenStorage(kind=patch_kind),
            )
            tw.write("visual/dinov2/patch", 0, patch)
            tw.finish_group("visual/dinov2")
            has_audio = np.ones(n, bool)
            if audio_gaps:
                has_audio = rng_classical.random(n) > 0.33
                audio[~has_audio] = 0
            tw.create_array("audio/wavlm", (n, D_AUDIO), "float16")
            tw.write("audio/wavlm", 0, audio)
            tw.finish_group("audio/wavlm")
            hog = z.astype(np.float32) @ w_hog
            hog += rng_classical.normal(size=(n, D_HOG)).astype(np.float32)
            hog[~face] = 0
            classical = {
                "cls": hog,
                "regions": rng_classical.normal(size=(n, N_HOG_REGIONS, D_HOG_REGION)),
                "geometry": rng_classical.normal(size=(n, D_GEOMETRY)),
            }
            for key, values in classical.items():
                tw.create_array(f"visual/classical/{key}", values.shape, "float16")
                tw.write(f"visual/classical/{key}", 0, values.astype(np.float32))
            tw.finish_group("visual/classical")
            tw.create_array("audio/logmel", (n, D_AUDIO), "float16")
            tw.write("audio/logmel", 0, rng_classical.normal(size=(n, D_AUDIO)).astype(np.float32))
            tw.finish_group("audio/logmel")
            tw.create_array("audio/valid", (n,), "bool")
            tw.write("audio/valid", 0, has_audio)
            tw.finish_group("audio")
        label_path = ""
        if split != "test":
            label_path = str(ann_dir / f"{tid}.txt")
            # annotation one line longer than the video: the extra line is dropped
            lines = (
                [ABAW_HEADER] + [",".join(map(str, r)) for r in labels] + [",".join(["0"] * N_AUS)]
            )
            Path(label_path).write_text("\n".join(lines) + "\n")
        rows.append(
            {
                "track_id": tid,
                "video_id": video,
                "split": split,
                "side": side,
                "labels": label_path,
                "n_annotated": int((labels >= 0).any(1).sum()),
                "n_frames": n,
                "fps": 30.0,
            }
        )
    manifest = write_manifest(make_manifest(rows), root / "manifest.parquet")
    return store, manifest
