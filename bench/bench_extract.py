"""Extraction speed: end-to-end frames/s against encoder-only frames/s on one synthetic track.

    python -m bench.bench_extract [--frames 300] [--device cpu]

On CPU with tiny models the encoders are cheap, so the ratio shows what decoding, faces,
alignment and writing cost; on a GPU with real model sizes (DINOv2-B + WavLM-base-plus,
720p) the goal is a ratio of at least 0.7.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args(argv)
    py = sys.executable
    rows = []
    with tempfile.TemporaryDirectory(prefix="auwild-bench-extract-") as tmp:
        tmp = Path(tmp)
        subprocess.run(
            [
                py,
                "-m",
                "data_manifest",
                "synth",
                "--out",
                str(tmp / "data"),
                "--tracks",
                "2",
                "--frames",
                str(args.frames),
                "--seed",
                "0",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run(
            [
                py,
                "-m",
                "data_manifest",
                "affwild2",
                "--root",
                str(tmp / "data"),
                "--out",
                str(tmp / "m.parquet"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run(
            [py, "-m", "extract", "tiny-models", "--out", str(tmp / "models")],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        m = tmp / "models"
        video = [
            "--visual",
            f"dinov2={m / 'dinov2'}",
            "--audio",
            f"wavlm={m / 'wavlm'}",
            "--visual-input",
            "video",
        ]
        setups = {
            "frames folder, template, tiny DINOv2 + WavLM + log-mel": [
                "--visual",
                f"dinov2={m / 'dinov2'}",
                "--audio",
                f"wavlm={m / 'wavlm'},logmel",
                "--visual-input",
                "frames",
            ],
            "video decode, template, tiny DINOv2 + WavLM": video,
            "video decode, template, detector every 5 frames": [*video, "--detect-every", "5"],
        }
        for label, extra in setups.items():
            cmd = [
                py,
                "-m",
                "extract",
                "bench",
                "--manifest",
                str(tmp / "m.parquet"),
                "--json",
                "--device",
                args.device,
                "--batch-size",
                str(args.batch_size),
                *extra,
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            result = json.loads(out)
            rows.append((label, result))
            print(label, json.dumps(result))
    lines = [
        "## Extraction: end-to-end against encoder-only (`auwild-extract bench`)",
        "",
        f"Command: `python -m bench.bench_extract --frames {args.frames} --device {args.device}`"
        " (2 synthetic tracks, tiny random models).",
        "",
        "| setup | frames | end-to-end fps | encoder-only fps | ratio |",
        "|---|---|---|---|---|",
    ]
    for label, r in rows:
        lines.append(
            f"| {label} | {r['frames']} | {r['end_to_end_fps']} | "
            f"{r['encoder_only_fps']} | {r['ratio']} |"
        )
    lines += [
        "",
        "On CPU with tiny encoders the encoders are nearly free, so the ratio shows the rest of",
        "the pipeline. From a frames folder (aligned crops) decoding JPEGs and writing dominate;",
        "from video, OpenCV's face detector on every full frame dominates, and running it every",
        "k frames with tracking in between (`--detect-every`) is the lever. The encoder-only",
        "ceiling encodes only frames with a face, as the job does.",
    ]
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "extract.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
