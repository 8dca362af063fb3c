"""Where the template's AU regions fall on real aligned faces: IoU against detected landmarks.

    python -m bench.bench_regions --mp-python /tmp/mpenv/bin/python [--crop 112]

With aligned crops and `--landmarks template` every frame gets the regions of the
mean shape (MEAN_SHAPE_68 filling the crop). This measures how far those 16 boxes
are from the boxes built from real landmarks on real faces aligned the project's
way:

1. Photos: scikit-image's `astronaut` and matplotlib's `grace_hopper` (in the main
   venv), plus the test and sample photos inside the `face_recognition` 1.3.0 and
   `insightface` 0.7.3 source packages, fetched from PyPI into a temporary folder
   at run time (`pip download --no-deps`); nothing is kept or committed.
2. In a separate venv with MediaPipe 0.10.14..0.10.21 (its wheels need numpy < 2):
   FaceMesh on the photo (and on Haar-cascade face boxes for small faces), mapped
   to 68 points (extract.faces.mediapipe_mesh.mesh_to_68), aligned with
   extract.align.crop_affine to an S x S crop (Aff-Wild2's cropped_aligned are
   112 x 112), then the project's `mediapipe` backend (aligned_input=True) run on
   that crop: the landmarks `--landmarks mediapipe` would give the crop.
3. Here: region boxes from those landmarks (extract.regions) against the
   template's boxes, IoU per region (bench.region_iou). The full-photo landmarks
   mapped into the crop are scored too, as a check on the crop detection.

Writes bench/results/regions.md (table) and docs/regions_template_vs_detected.png.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from data_manifest.shared_files import write_text_atomic

ROOT = Path(__file__).resolve().parent.parent

# (file name in the work folder, where it comes from, licence)
PHOTOS: tuple[tuple[str, str, str], ...] = (
    (
        "astronaut.png",
        "scikit-image `skimage/data/astronaut.png` (Eileen Collins, NASA)",
        "public domain (scikit-image's docstring: no known copyright restrictions)",
    ),
    (
        "grace_hopper.jpg",
        "matplotlib `mpl-data/sample_data/grace_hopper.jpg` (Grace Hopper, US Navy)",
        "US Navy photo, public domain as a US government work (matplotlib states no licence)",
    ),
    (
        "obama.jpg",
        "face_recognition 1.3.0 sdist `tests/test_images/obama.jpg`",
        "no licence stated for the image (package MIT); used at run time only",
    ),
    (
        "obama2.jpg",
        "face_recognition 1.3.0 sdist `tests/test_images/obama2.jpg`",
        "no licence stated for the image (package MIT); used at run time only",
    ),
    (
        "obama3.jpg",
        "face_recognition 1.3.0 sdist `tests/test_images/obama3.jpg`",
        "no licence stated for the image (package MIT); used at run time only",
    ),
    (
        "biden.jpg",
        "face_recognition 1.3.0 sdist `tests/test_images/biden.jpg`",
        "no licence stated for the image (package MIT); used at run time only",
    ),
    (
        "Tom_Hanks_54745.png",
        "insightface 0.7.3 sdist `insightface/data/images/Tom_Hanks_54745.png` (112 px crop)",
        "no licence stated for the image (package MIT); used at run time only",
    ),
    (
        "t1.jpg",
        "insightface 0.7.3 sdist `insightface/data/images/t1.jpg` (group photo)",
        "no licence stated for the image (package MIT); used at run time only",
    ),
)
# The only photos whose crops go into the committed figure: their packages or origin make them free.
FIGURE_PHOTOS = ("astronaut.png#0", "grace_hopper.jpg#0")
# Photos that already are aligned crops (another aligner's geometry): scored as given as well.
ALIGNED_AS_GIVEN = ("Tom_Hanks_54745.png",)
SDISTS = {
    "face_recognition==1.3.0": "face_recognition-1.3.0/tests/test_images/",
    "insightface==0.7.3": "insightface-0.7.3/insightface/data/images/",
}
KEPT = "## What the default is, and why"  # from this heading on, results file is kept by hand
RESULTS = ROOT / "bench" / "results" / "regions.md"
FIGURE = ROOT / "docs" / "regions_template_vs_detected.png"


# -- photos ------------------------------------------------------------------------------------
def gather_photos(folder: Path) -> list[Path]:
    """Copy or fetch the photos of PHOTOS into folder; returns the paths found (says what is not)."""
    import matplotlib
    import skimage

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(skimage.__file__).parent / "data" / "astronaut.png", folder)
    shutil.copy(
        Path(matplotlib.__file__).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg", folder
    )
    wanted = {name for name, _, _ in PHOTOS}
    downloads = folder / "sdists"
    for spec, prefix in SDISTS.items():
        package = spec.split("==")[0]
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", package]
        done = subprocess.run(
            cmd + ["-d", str(downloads), spec], capture_output=True, text=True, timeout=300
        )
        archives = glob.glob(str(downloads / f"{package}-*.tar.gz"))
        if done.returncode != 0 or not archives:
            print(f"skipped {spec}: pip download failed: {done.stderr.strip()[-300:]}")
            continue
        with tarfile.open(archives[0]) as tar:
            for member in tar.getmembers():
                name = os.path.basename(member.name)
                if member.name.startswith(prefix) and name in wanted and member.isfile():
                    (folder / name).write_bytes(tar.extractfile(member).read())
    found = [folder / name for name, _, _ in PHOTOS if (folder / name).is_file()]
    missing = wanted - {p.name for p in found}
    if missing:
        print(f"photos not found, left out: {sorted(missing)}")
    return found


def sample_frames(folders: list[str], limit: int) -> list[Path]:
    """Up to `limit` frames per folder, evenly spaced over its sorted images."""
    from data_manifest.user_error import UserError

    picked: list[Path] = []
    for folder in folders:
        images = sorted(
            p for p in Path(folder).glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")
        )
        if not images:
            raise UserError(f"no .jpg/.png frames in {folder}")
        idx = np.unique(np.linspace(0, len(images) - 1, min(limit, len(images))).round())
        picked += [images[int(i)] for i in idx]
    return picked


# -- landmarks (runs in the MediaPipe venv: numpy < 2, no project dependency beyond numpy/cv2) ----
def _iou_xyxy(a: np.ndarray, b: np.ndarray) -> float:
    lo, hi = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = float(np.prod(np.clip(hi - lo, 0, None)))
    union = float(np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter)
    return inter / union if union > 0 else 0.0


def _photo_faces(image: np.ndarray, mesh, cascade) -> list[np.ndarray]:
    """68-point landmarks (68, 2) in photo pixels for each face FaceMesh finds (RGB image)."""
    import cv2

    from extract.faces.mediapipe_mesh import mesh_to_68

    h, w = image.shape[:2]
    faces = []
    result = mesh.process(np.ascontiguousarray(image))
    for face in result.multi_face_landmarks or []:
        pts = np.array([(p.x, p.y) for p in face.landmark], np.float32) * np.array([w, h])
        faces.append(mesh_to_68(pts))
    # Faces too small for FaceMesh's own detector: run it on each Haar box, enlarged and upscaled.
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    side = max(24, int(0.04 * min(h, w)))
    for x, y, bw, bh in cascade.detectMultiScale(gray, 1.1, 6, minSize=(side, side)):
        box = np.array([x, y, x + bw, y + bh], np.float32)
        if any(_iou_xyxy(box, np.r_[f.min(0), f.max(0)]) > 0.2 for f in faces):
            continue
        out, scale = 384, 384 / (2.2 * bw)
        cx, cy = x + bw / 2, y + bh / 2
        to_crop = np.array([[scale, 0, out / 2 - scale * cx], [0, scale, out / 2 - scale * cy]])
        crop = cv2.warpAffine(image, to_crop, (out, out), flags=cv2.INTER_CUBIC)
        found = mesh.process(np.ascontiguousarray(crop)).multi_face_landmarks or []
        if not found:
            continue
        pts = np.array([(p.x, p.y) for p in found[0].landmark], np.float32) * out
        lm = mesh_to_68(pts)
        faces.append(((lm - to_crop[:, 2]) / scale).astype(np.float32))  # back to photo pixels
    return faces


def detect_main(photos: list[str], as_given: list[str], crop: int, out: str) -> None:
    """Photos -> aligned crops and their landmarks, saved as one .npz for the scoring side."""
    import cv2
    import mediapipe as mp

    from extract.align import crop_affine, map_points, warp_crops
    from extract.faces.mediapipe_mesh import MediaPipeMeshLandmarks

    mesh = mp.solutions.face_mesh.FaceMesh(
        static_image_mode=True, max_num_faces=10, refine_landmarks=False
    )
    cascade = cv2.CascadeClassifier(
        os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
    )
    backend = MediaPipeMeshLandmarks(aligned_input=True)  # what `--landmarks mediapipe` runs
    names, crops, mapped, detected, photo_iod = [], [], [], [], []
    given, given_names = [], []
    for path in photos:
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None:
            print(f"cannot read {path}, left out")
            continue
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        faces = _photo_faces(image, mesh, cascade)
        print(f"{os.path.basename(path)}: {len(faces)} face(s)")
        for k, lm in enumerate(faces):
            affine = crop_affine(lm[None], crop)  # (1, 2, 3)
            aligned = warp_crops(image[None], affine, crop)  # (1, S, S, 3)
            backend.reset()
            batch = backend(aligned)
            names.append(f"{os.path.basename(path)}#{k}")
            crops.append(aligned[0])
            mapped.append(map_points(lm[None], affine)[0])
            detected.append(batch.landmarks[0] if batch.valid[0] else np.full((68, 2), np.nan))
            photo_iod.append(np.linalg.norm(lm[42:48].mean(0) - lm[36:42].mean(0)))
    for path in as_given:  # crops made by another aligner, scored as they are
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None or bgr.shape[0] != bgr.shape[1]:
            print(f"{path}: unreadable or not a square crop, left out")
            continue
        backend.reset()
        batch = backend(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)[None])
        if not batch.valid[0]:
            print(f"{path}: no face found on the crop, left out")
            continue
        given.append(batch.landmarks[0] / bgr.shape[0] * crop)
        given_names.append(os.path.relpath(path, os.path.dirname(os.path.dirname(path))))
    np.savez(
        out,
        names=np.array(names),
        crops=np.array(crops, np.uint8).reshape(-1, crop, crop, 3),
        mapped=np.array(mapped, np.float32).reshape(-1, 68, 2),
        detected=np.array(detected, np.float32).reshape(-1, 68, 2),
        photo_iod=np.array(photo_iod, np.float32),
        given=np.array(given, np.float32).reshape(-1, 68, 2),
        given_names=np.array(given_names),
        mediapipe=np.array(mp.__version__),
    )


# -- scoring (main venv) ---------------------------------------------------------------------------
def template_boxes() -> np.ndarray:
    """(R, 4) the regions every aligned frame gets with `--landmarks template`."""
    from data_manifest.face_shape import MEAN_SHAPE_68
    from extract.regions import region_boxes_unit

    return region_boxes_unit(MEAN_SHAPE_68[None])[0]


def score(landmarks: np.ndarray, crop: int) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks (n, 68, 2) crop pixels -> (IoU (n, R), region boxes (n, R, 4))."""
    from bench.region_iou import region_iou
    from extract.regions import region_boxes

    boxes = region_boxes(landmarks, crop)  # (n, R, 4)
    return region_iou(template_boxes(), boxes), boxes


def region_iou_template(boxes: np.ndarray) -> np.ndarray:
    """(R,) IoU of one face's boxes (R, 4) with the template's."""
    from bench.region_iou import region_iou

    return region_iou(template_boxes(), boxes[None])[0]


def refit_iou(landmarks: np.ndarray, crop: int) -> np.ndarray:
    """(n, R) IoU of each face's boxes with those of the other faces' mean landmarks."""
    from bench.region_iou import box_iou
    from extract.regions import region_boxes

    n = len(landmarks)
    own = region_boxes(landmarks, crop)  # (n, R, 4)
    others = (landmarks.sum(axis=0, keepdims=True) - landmarks) / max(n - 1, 1)  # (n, 68, 2)
    return box_iou(region_boxes(others, crop), own)


def _panel(crop: np.ndarray, boxes: np.ndarray, landmarks_unit: np.ndarray, label: str):
    """One crop (RGB) at 320 px: template boxes white, these boxes (R, 4) in colour, landmarks."""
    import cv2

    from extract.regions import N_REGIONS

    side = 320
    img = cv2.resize(crop, (side, side), interpolation=cv2.INTER_CUBIC)
    template = template_boxes() * side
    for r in range(N_REGIONS):
        x0, y0, x1, y1 = np.round(template[r]).astype(int)
        cv2.rectangle(img, (x0, y0), (x1, y1), (255, 255, 255), 1, cv2.LINE_AA)
        x0, y0, x1, y1 = np.round(boxes[r] * side).astype(int)
        cv2.rectangle(img, (x0, y0), (x1, y1), _colours()[r], 2, cv2.LINE_AA)
    for x, y in landmarks_unit * side:
        cv2.circle(img, (round(x), round(y)), 2, (255, 255, 0), -1, cv2.LINE_AA)
    cv2.putText(img, label, (4, side - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3)
    cv2.putText(img, label, (4, side - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
    return img


def _colours() -> list[tuple[int, int, int]]:
    import cv2

    from extract.regions import N_REGIONS

    hsv = np.uint8([[[int(179 * i / N_REGIONS), 230, 255] for i in range(N_REGIONS)]])
    return [tuple(int(c) for c in rgb) for rgb in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]]


def draw_figure(panels: list[np.ndarray], out: Path) -> None:
    """Panels three to a row, with a legend of the region colours."""
    import cv2

    from extract.regions import REGIONS

    panels = list(panels)
    while len(panels) % 3:
        panels.append(np.zeros_like(panels[0]))
    rows = [np.concatenate(panels[k : k + 3], axis=1) for k in range(0, len(panels), 3)]
    grid = np.concatenate(rows, axis=0)
    legend = np.full((26 * ((len(REGIONS) + 3) // 4), grid.shape[1], 3), 255, np.uint8)
    for r, name in enumerate(REGIONS):
        x, y = 8 + (r % 4) * (grid.shape[1] // 4), 18 + (r // 4) * 26
        cv2.rectangle(legend, (x, y - 10), (x + 18, y), _colours()[r], -1)
        cv2.putText(legend, name, (x + 24, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), cv2.cvtColor(np.concatenate([grid, legend]), cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {out}")


def write_report(data: dict, crop: int, command: str, figure: Path, out: Path) -> str:
    from extract.regions import REGIONS

    det_ok = ~np.isnan(data["detected"]).any(axis=(1, 2))
    iou_det, boxes_det = score(np.nan_to_num(data["detected"]), crop)  # (n, R), (n, R, 4)
    iou_det[~det_ok] = np.nan
    iou_map, _ = score(data["mapped"], crop)
    tmpl = template_boxes()  # (R, 4)
    iou_refit = refit_iou(data["detected"][det_ok], crop)  # (n_ok, R)
    centre_shift = (boxes_det[..., :2] + boxes_det[..., 2:]) / 2 - (tmpl[:, :2] + tmpl[:, 2:]) / 2
    size_ratio = (boxes_det[..., 2:] - boxes_det[..., :2]) / (tmpl[:, 2:] - tmpl[:, :2])
    ok = det_ok
    lines = [
        "## Template regions against detected landmarks on aligned crops",
        "",
        f"`{command}` — {int(ok.sum())} of {len(ok)} faces from {len(PHOTOS)} photos, aligned to "
        f"{crop} x {crop} crops with `extract.align.crop_affine`; landmarks from MediaPipe "
        f"FaceMesh {data['mediapipe']} (the project's `mediapipe` backend, aligned_input=True, "
        "run on the crop). IoU of each region box from those landmarks with the template's box "
        "(the mean shape filling the crop, what `--landmarks template` gives every aligned frame). "
        "Centre shift: detected box centre minus template box centre, in % of the crop (x right, "
        "y down); size: detected / template width and height. `mapped`: the same IoU with the "
        "full-photo landmarks mapped into the crop instead of a second detection on the crop. "
        "`re-fit`: the IoU a constant template would reach if it were the mean of the other "
        "faces' detected landmarks (leave one out): what re-fitting the template could gain; "
        "the rest is identity and expression, which only per-frame landmarks follow.",
        "",
        "| region | mean IoU | min | median | mapped | re-fit | centre shift x, y % | size w, h |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r, name in enumerate(REGIONS):
        v = iou_det[ok, r]
        dx, dy = np.mean(centre_shift[ok, r], axis=0) * 100
        sw, sh = np.mean(size_ratio[ok, r], axis=0)
        lines.append(
            f"| {name} | {v.mean():.2f} | {v.min():.2f} | {np.median(v):.2f} | "
            f"{np.nanmean(iou_map[:, r]):.2f} | {np.nanmean(iou_refit[:, r]):.2f} | "
            f"{dx:+.1f}, {dy:+.1f} | {sw:.2f}, {sh:.2f} |"
        )
    per_face = np.nanmean(iou_det[ok], axis=1)
    lines += [
        f"| **all regions** | **{np.nanmean(iou_det[ok]):.2f}** | {np.nanmin(iou_det[ok]):.2f} | "
        f"{np.nanmedian(iou_det[ok]):.2f} | {np.nanmean(iou_map):.2f} | "
        f"{np.nanmean(iou_refit):.2f} | | |",
        "",
        f"Regions with mean IoU below 0.6: {int((np.nanmean(iou_det[ok], axis=0) < 0.6).sum())} "
        f"of {len(REGIONS)}; per-face mean IoU from {per_face.min():.2f} to {per_face.max():.2f}.",
        "",
        "Per face (mean IoU over the 16 regions; eye distance in the photo, pixels):",
        "",
        "| face | mean IoU | mapped | photo eye distance px |",
        "|---|---:|---:|---:|",
    ]
    for i, name in enumerate(data["names"]):
        det = f"{np.nanmean(iou_det[i]):.2f}" if ok[i] else "no face on crop"
        lines.append(
            f"| {name} | {det} | {np.nanmean(iou_map[i]):.2f} | {data['photo_iod'][i]:.0f} |"
        )
    if len(data["given"]):
        iou_given, boxes_given = score(data["given"], crop)  # (g, R), (g, R, 4)
        shift = (boxes_given[..., :2] + boxes_given[..., 2:]) / 2 - (tmpl[:, :2] + tmpl[:, 2:]) / 2
        lines += [
            "",
            f"Aligned crops made by another aligner, scored as they are ({len(iou_given)}: "
            + ", ".join(f"`{n}`" for n in data["given_names"][:5])
            + (" ..." if len(iou_given) > 5 else "")
            + "): the template holds only if that aligner's geometry is the mean shape's.",
            "",
            "| region | mean IoU as given | centre shift x, y % |",
            "|---|---:|---:|",
        ]
        for r, name in enumerate(REGIONS):
            dx, dy = shift[:, r].mean(axis=0) * 100
            lines.append(f"| {name} | {np.nanmean(iou_given[:, r]):.2f} | {dx:+.1f}, {dy:+.1f} |")
        lines.append(f"| **all regions** | **{np.nanmean(iou_given):.2f}** | |")
    lines += [
        "",
        "Figure: template boxes white, boxes from the detected landmarks (yellow dots) in colour; "
        "the last panel draws the boxes of the mean detected shape on the drawn mean face.",
        "",
        f"![template (white) vs detected (colour) regions]({os.path.relpath(figure, out.parent)})",
        "",
        "Photos (fetched or copied at run time, not in the repository; only the first two are drawn "
        "in the figure, the others have no stated licence):",
        "",
    ]
    lines += [f"- `{name}`: {src}; {lic}" for name, src, lic in PHOTOS]
    # Figure: the public-domain crops, then the boxes of the mean detected shape on the drawn mean
    # face (the systematic part of the difference). Other photos are scored, never drawn.
    from extract.regions import mean_face_image, region_boxes_unit

    panels = [
        _panel(
            data["crops"][i],
            boxes_det[i],
            data["detected"][i] / crop,
            f"{data['names'][i]}  mean IoU {np.nanmean(iou_det[i]):.2f}",
        )
        for i in range(len(ok))
        if ok[i] and data["names"][i] in FIGURE_PHOTOS
    ]
    mean_lm = data["detected"][ok].mean(axis=0) / crop  # (68, 2) unit
    mean_boxes = region_boxes_unit(mean_lm[None])[0]
    mean_iou = np.nanmean(region_iou_template(mean_boxes))
    face, _ = mean_face_image(crop)
    panels.append(
        _panel(face, mean_boxes, mean_lm, f"mean of {int(ok.sum())} faces  IoU {mean_iou:.2f}")
    )
    draw_figure(panels, figure)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode")
    det = sub.add_parser("detect", help="(MediaPipe venv) photos -> aligned crops + landmarks .npz")
    det.add_argument("--crop", type=int, default=112)
    det.add_argument("--out", required=True)
    det.add_argument("--as-given", nargs="*", default=[], help="aligned crops to score as they are")
    det.add_argument("photos", nargs="+")
    parser.add_argument(
        "--mp-python", default="/tmp/mpenv/bin/python", help="MediaPipe venv python"
    )
    parser.add_argument("--crop", type=int, default=112, help="aligned crop side (Aff-Wild2: 112)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--figure", type=Path, default=FIGURE)
    parser.add_argument(
        "--aligned-frames",
        nargs="*",
        default=[],
        metavar="DIR",
        help="folders of aligned crops (e.g. Aff-Wild2 cropped_aligned/VIDEO) to score as they are",
    )
    parser.add_argument("--limit", type=int, default=50, help="frames per --aligned-frames folder")
    args = parser.parse_args(argv)
    if args.mode == "detect":
        detect_main(args.photos, args.as_given, args.crop, args.out)
        return 0
    if not os.path.isfile(args.mp_python):
        print(
            f"no MediaPipe python at {args.mp_python}; build one: python3.11 -m venv /tmp/mpenv && "
            '/tmp/mpenv/bin/pip install "mediapipe>=0.10.14,<=0.10.21" "numpy<2"'
        )
        return 2
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        photos = gather_photos(Path(tmp) / "photos")
        as_given = [p for p in photos if p.name in ALIGNED_AS_GIVEN]
        as_given += sample_frames(args.aligned_frames, args.limit)
        npz = Path(tmp) / "landmarks.npz"
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        cmd = [args.mp_python, "-m", "bench.bench_regions", "detect", "--crop", str(args.crop)]
        subprocess.run(
            cmd
            + ["--out", str(npz), "--as-given"]
            + [str(p) for p in as_given]
            + ["--"]
            + [str(p) for p in photos],
            check=True,
            env=env,
            cwd=ROOT,
            timeout=600,
        )
        with np.load(npz) as z:
            data = {k: z[k] for k in z.files}
    command = "python -m bench.bench_regions --mp-python /tmp/mpenv/bin/python"
    if args.crop != 112:
        command += f" --crop {args.crop}"
    if args.aligned_frames:
        command += f" --aligned-frames {' '.join(args.aligned_frames)} --limit {args.limit}"
    text = write_report(data, args.crop, command, args.figure, args.out)
    if args.out.is_file() and KEPT in (old := args.out.read_text()):
        text += "\n" + old[old.index(KEPT) :]  # the hand-written conclusions stay
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, text)
    print(text)
    print(f"wrote {args.out} and {args.figure} in {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
