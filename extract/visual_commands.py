"""`auwild-extract tiny-models` and `auwild-extract draw-regions`: thin wrappers over the library."""

from __future__ import annotations

import argparse
import json
import os

from data_manifest.cli_options import add_command, add_out
from data_manifest.user_error import UserError


def _tiny_models(args: argparse.Namespace) -> int:
    from extract.tiny_models import TINY_NAMES, write_tiny_models

    names = tuple(args.only) if args.only else TINY_NAMES
    paths = write_tiny_models(args.out, names, size=args.size)
    print(json.dumps(paths, indent=2))
    return 0


def _draw_regions(args: argparse.Namespace) -> int:
    from extract.regions import draw_regions, mean_face_image

    if args.image is None:
        image, landmarks = mean_face_image(args.size)
    else:
        image, landmarks = _aligned_image(args.image, args.size)
    print(draw_regions(image, landmarks, args.out))
    return 0


def _aligned_image(path: str, size: int):
    """An aligned face image (e.g. a cropped_aligned frame): landmarks from the template shape."""
    import cv2
    import numpy as np

    from data_manifest.face_shape import MEAN_SHAPE_68

    if not os.path.isfile(path):
        raise UserError(f"image not found: {path}")
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise UserError(f"cannot read image {path}")
    rgb = cv2.cvtColor(
        cv2.resize(bgr, (size, size), interpolation=cv2.INTER_CUBIC), cv2.COLOR_BGR2RGB
    )
    return rgb, (MEAN_SHAPE_68 * size).astype(np.float32)


def register(subparsers) -> None:
    from extract.tiny_models import SIZES, TINY_NAMES  # names only; no torch at import

    p = add_command(
        subparsers,
        "tiny-models",
        "write random-weight DINOv2/ConvNeXt/WavLM/Whisper folders (demo, tests, sizing)",
        description="Write tiny random models loadable by from_pretrained; prints name -> folder.",
    )
    add_out(p, "folder to write the model folders into")
    p.add_argument(
        "--only",
        nargs="+",
        choices=TINY_NAMES,
        metavar="NAME",
        help=f"write only these models: {', '.join(TINY_NAMES)} (default: all)",
    )
    p.add_argument(
        "--size",
        default="test",
        choices=SIZES,
        help=(
            "test: smallest; demo: finer DINOv2 patch grid (8 x 8 on 112 px crops); "
            "base: the published base models' sizes and configs (DINOv2-B/14, "
            "WavLM-base-plus, ConvNeXt-base, Whisper-base), random weights, about 350 MB each"
        ),
    )
    p.set_defaults(func=_tiny_models)

    p = add_command(
        subparsers,
        "draw-regions",
        "draw the AU regions on a face to a PNG",
        description=(
            "Draw the AU region boxes, their AUs and the landmarks on an aligned face image "
            "(default: a drawn mean-shape face)."
        ),
    )
    add_out(p, "PNG file to write")
    p.add_argument(
        "--image",
        default=None,
        help="an aligned face crop, e.g. cropped_aligned/x/00001.jpg (default: a drawn mean face)",
    )
    p.add_argument("--size", type=int, default=512, help="drawing size in pixels")
    p.set_defaults(func=_draw_regions)
