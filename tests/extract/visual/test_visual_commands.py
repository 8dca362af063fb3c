"""`tiny-models` and `draw-regions` through argparse, as the console script runs them."""

from __future__ import annotations

import argparse
import json
import os

import cv2
import numpy as np

from data_manifest.cli_options import run_cli
from extract import visual_commands


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="auwild-extract")
    sub = parser.add_subparsers(dest="command", required=True)
    visual_commands.register(sub)
    return run_cli(parser, argv)


def test_tiny_models_command(tmp_path, capsys):
    assert _run(["tiny-models", "--out", str(tmp_path), "--only", "convnext"]) == 0
    paths = json.loads(capsys.readouterr().out)
    assert set(paths) == {"convnext"}
    assert os.path.isfile(os.path.join(paths["convnext"], "config.json"))
    assert os.path.isfile(os.path.join(paths["convnext"], "preprocessor_config.json"))


def test_draw_regions_default_and_image(tmp_path, capsys):
    out = tmp_path / "regions.png"
    assert _run(["draw-regions", "--out", str(out), "--size", "256"]) == 0
    assert cv2.imread(str(out)) is not None
    face = tmp_path / "00001.jpg"
    cv2.imwrite(str(face), np.full((112, 112, 3), 128, np.uint8))
    out2 = tmp_path / "regions2.png"
    assert _run(["draw-regions", "--out", str(out2), "--image", str(face)]) == 0
    assert cv2.imread(str(out2)) is not None


def test_draw_regions_missing_image_is_a_user_error(tmp_path, capsys):
    code = _run(
        ["draw-regions", "--out", str(tmp_path / "x.png"), "--image", str(tmp_path / "no.jpg")]
    )
    assert code == 2
    assert "image not found" in capsys.readouterr().err
