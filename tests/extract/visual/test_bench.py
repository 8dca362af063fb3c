"""`auwild-extract bench`: three rates, their ratios and the stage times, from crops and from video."""

from __future__ import annotations

import json

import pytest

from extract.cli import main as extract_main
from extract.job.bench import STAGES
from tests.extract.visual.conftest import synth_manifest


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_models):
    base = tmp_path_factory.mktemp("bench")
    manifest = synth_manifest(base, tracks=2, frames=10, seed=0)
    return {"base": base, "manifest": manifest, "models": tiny_models}


@pytest.mark.parametrize(
    "source, extra",
    [("frames", []), ("video", ["--detect-every", "3"])],
)
def test_bench_reports_three_rates_and_where_the_time_goes(world, tmp_path, source, extra):
    out = tmp_path / "bench.json"
    args = [
        "bench",
        "--manifest",
        str(world["manifest"]),
        "--visual",
        f"dinov2={world['models']['dinov2']}",
        "--audio",
        "logmel",
        "--visual-input",
        source,
        "--batch-size",
        "4",
        "--crop-size",
        "56",
        "--json",
        str(out),
        *extra,
    ]
    assert extract_main(args) == 0
    r = json.loads(out.read_text())
    assert r["frames"] == 10 and r["visual_input"] == source
    for key in ("end_to_end_fps", "encoder_only_fps", "writer_only_fps"):
        assert r[key] > 0
    assert r["ratio"] == pytest.approx(r["end_to_end_fps"] / r["encoder_only_fps"], rel=1e-2)
    assert r["ratios"]["end_to_end/writer_only"] == pytest.approx(
        r["end_to_end_fps"] / r["writer_only_fps"], rel=1e-2
    )
    assert set(r["stages_s"]) == set(STAGES) and r["stages_s"]["write"] > 0
    assert r["stages_s"]["encode_visual"] > 0 and r["stages_s"]["decode"] > 0
    assert sum(r["stages_share"].values()) == pytest.approx(1.0, abs=0.01)
    assert r["goal_ratio"] == {"frames": 0.7, "video": 0.5}[source]
    assert 0 < r["face_rate"] <= 1
    if source == "video":
        assert r["detect_every"] == 3 and r["frame_size"] == [256, 192]
        assert r["stages_s"]["detect"] > 0


def test_bench_json_to_stdout_and_user_errors(world, capsys):
    import pandas as pd

    from data_manifest.user_error import UserError
    from extract.job.bench import run_bench
    from extract.job.config import ExtractConfig

    with pytest.raises(UserError, match="not in the manifest"):
        run_bench(
            pd.read_parquet(world["manifest"]), ExtractConfig(audio={"logmel": None}), track="x"
        )
    args = ["bench", "--manifest", str(world["manifest"]), "--audio", "logmel", "--json"]
    assert extract_main(args) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["encoder_only_fps"] > 0 and r["stages_s"]["encode_audio"] > 0
    assert extract_main([*args[:-1], "--landmarks", "template:nope"]) == 2  # one line
    assert "unknown face detector 'nope'" in capsys.readouterr().err
