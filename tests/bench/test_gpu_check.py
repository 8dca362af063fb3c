"""The GPU check's smoke run: every section at tiny sizes on the CPU, so the script does not rot
between GPU sessions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import gpu_check

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_smoke_run_reports_every_section(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
        env=env,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads((tmp_path / "gpu.json").read_text())
    assert report["mode"] == "smoke"
    assert list(report["sections"]) == list(gpu_check.SECTIONS)
    for name, section in report["sections"].items():
        assert section["status"] == "pass", (name, section)
        assert section["rows"], name
    md = (tmp_path / "gpu.md").read_text()
    for title in gpu_check.SECTION_TITLES.values():
        assert f"## {title}" in md
    scan_rows = {r["case"]: r for r in report["sections"]["scan"]["rows"]}
    assert any(
        k.endswith(" cuda") and v["status"] == gpu_check.NO_CUDA for k, v in scan_rows.items()
    )
    assert all(v["status"] != "fail" for v in scan_rows.values())
    steps = {r["case"] for r in report["sections"]["train_step"]["rows"]}
    assert {"hga_agssm", "fusion_tcn", "hga_mlp", "frame_mlp"} <= steps


def test_peak_table_and_render():
    assert gpu_check.peak_tflops("NVIDIA H200") == 989.0
    assert gpu_check.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert gpu_check.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert gpu_check.peak_tflops("Tesla T4") is None
    report = {
        "command": "python -m bench.gpu_check",
        "environment": {"device": "x"},
        "sections": {
            "scan": {
                "status": "fail",
                "seconds": 1.0,
                "notes": ["n"],
                "rows": [{"case": "a", "status": "fail", "err": 0.5, "error": "boom"}],
            },
            "ddp": {"status": "fail", "rows": [], "error": "timed out after 45 s"},
        },
    }
    md = gpu_check.render(report)
    assert "| a | fail | 0.5 |" in md and "boom" in md and "timed out after 45 s" in md
