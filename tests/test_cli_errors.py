"""Common user mistakes: one line on stderr naming the thing and the fix, exit 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import extract.cli
import train.cli
from data_manifest.user_error import UserError

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["optim.batch_size=4", "data.window=16", "data.stride=8", "model.hidden=16"]


def one_line(capsys) -> str:
    """The single stderr line of a failed command (asserts there is exactly one)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def train_data(tmp_path_factory):
    """A labelled store of DINOv2/WavLM-named arrays: 3 videos in train+val, 1 in test."""
    from tests.train.store_factory import make_dataset

    root = tmp_path_factory.mktemp("cli_train")
    store, manifest = make_dataset(root, n_train=4, n_val=2, n_test=2, frames=40)
    return root, str(store), str(manifest)


def _fit(train_data, out: str, *extra: str) -> list[str]:
    root, store, manifest = train_data
    return ["fit", "--store", store, "--manifest", manifest, "--out", str(root / out),
            "--no-progress", "--device", "cpu", *extra]  # fmt: skip


# -- extraction ---------------------------------------------------------------------------------


def test_mistyped_encoder(capsys):
    argv = ["run", "--manifest", "m.parquet", "--store", "s.zarr", "--visual", "dino="]
    assert extract.cli.main(argv) == 2
    line = one_line(capsys)
    assert "unknown encoder 'dino'" in line and "did you mean 'dinov2'" in line


def test_traceback_shows_the_rest():
    argv = ["run", "--manifest", "m", "--store", "s", "--visual", "dino=", "--traceback"]
    with pytest.raises(UserError, match="dino"):
        extract.cli.main(argv)


def test_encoder_without_its_model(capsys):
    assert extract.cli.main(["run", "--manifest", "m", "--store", "s", "--audio", "wavlm"]) == 2
    assert "wavlm=HUB_ID_OR_FOLDER" in one_line(capsys)


def test_misspelled_choice_says_did_you_mean(capsys):
    argv = ["run", "--manifest", "m", "--store", "s", "--audio", "logmel", "--landmarks", "fam"]
    assert extract.cli.main(argv) == 2
    line = one_line(capsys)
    assert "unknown landmark backend 'fam'" in line and "did you mean 'fan'" in line
    assert extract.cli.main([*argv[:-1], "template:s3df"]) == 2
    assert "unknown face detector 's3df'; did you mean 's3fd'" in one_line(capsys)


def test_misspelled_plain_choice_says_did_you_mean(capsys):
    argv = ["run", "--manifest", "m", "--store", "s", "--audio", "logmel", "--token-dtype", "int9"]
    assert extract.cli.main(argv) == 2
    line = one_line(capsys)
    assert "--token-dtype" in line and "did you mean 'int8'" in line


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """One synthetic track extracted at crop size 56 (faces, tiny DINOv2, log-mel audio)."""
    from data_manifest.manifest import read_manifest
    from tests.extract.job.job_world import args_for, make_world

    world = make_world(tmp_path_factory.mktemp("cli_extract"))
    first = str(read_manifest(world["manifest"])["track_id"].iloc[0])
    store = world["base"] / "features.zarr"
    assert extract.cli.main(args_for(world, store, "--tracks", first)) == 0
    return world, store, first


def test_store_with_another_crop_size(extracted, capsys):
    from tests.extract.job.job_world import args_for

    world, store, first = extracted
    argv = args_for(world, store, "--tracks", first)
    argv[argv.index("--crop-size") + 1] = "64"
    capsys.readouterr()
    assert extract.cli.main(argv) == 2
    line = one_line(capsys)
    assert "crop_size" in line and "56" in line and "64" in line and "--store" in line


def test_inspect_into_a_closed_pipe_is_quiet(extracted):
    """`auwild-extract inspect STORE | head -0`: the reader is gone before the output."""
    _, store, _ = extracted
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "extract", "inspect", str(store)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    proc.stdout.close()  # long before the command prints (its imports take a while)
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert code == 141  # like a command stopped by SIGPIPE


# -- training -----------------------------------------------------------------------------------


def test_set_value_of_the_wrong_type(train_data, capsys):
    assert train.cli.main(_fit(train_data, "r_type", "--set", "optim.epochs=two")) == 2
    line = one_line(capsys)
    assert "optim.epochs expects an integer, got 'two'" in line


def test_unknown_config_key_says_did_you_mean(train_data, capsys):
    assert train.cli.main(_fit(train_data, "r_key", "--set", "optim.epoch=2")) == 2
    line = one_line(capsys)
    assert "unknown config key 'optim.epoch';" in line
    assert "did you mean 'optim.epochs'?" in line


def test_misspelled_model_key_names_the_models_fields(train_data, capsys):
    argv = _fit(train_data, "r_mkey", "--recipe", "abaw10", "--set", "model.d_modle=16")
    assert train.cli.main(argv) == 2
    line = one_line(capsys)
    assert "unknown config key 'model.d_modle'; did you mean 'model.d_model'?" in line
    assert "known in model hga_agssm:" in line


def test_loss_value_of_the_wrong_type(train_data, capsys):
    argv = _fit(train_data, "r_ltype", "--recipe", "abaw10", "--set", "loss.gamma_neg=x")
    assert train.cli.main(argv) == 2
    assert "loss.gamma_neg expects a number, got 'x'" in one_line(capsys)


def test_ablate_with_a_misspelled_model_key(train_data, capsys):
    root, store, manifest = train_data
    argv = ["ablate", "--recipe", "abaw10", "--store", store, "--manifest", manifest,
            "--out", str(root / "r_ablate"), "--no-progress", "--set", "model.d_modle=16"]  # fmt: skip
    assert train.cli.main(argv) == 2
    assert "did you mean 'model.d_model'?" in one_line(capsys)
    assert not (root / "r_ablate" / "0_baseline").exists()  # nothing trained


def test_override_that_is_not_key_value(train_data, capsys):
    assert train.cli.main(_fit(train_data, "r_kv", "--set", "optim.epochs")) == 2
    assert "not key=value" in one_line(capsys)


def test_misspelled_recipe(train_data, capsys):
    assert train.cli.main(_fit(train_data, "r_recipe", "--recipe", "abaw1")) == 2
    assert "did you mean 'abaw10'" in one_line(capsys)
    assert train.cli.main(["recipes", "abaw1"]) == 2
    assert "did you mean 'abaw10'" in one_line(capsys)


def test_abaw8_folds_on_too_few_videos(train_data, capsys):
    assert train.cli.main(_fit(train_data, "r_folds", "--recipe", "abaw8")) == 2
    line = one_line(capsys)
    assert "3 videos cannot fill 6 folds" in line and "--folds 3" in line


def test_abaw8_on_a_dinov2_store_names_the_missing_arrays(train_data, capsys):
    argv = _fit(train_data, "r_abaw8", "--recipe", "abaw8", "--set", "folds.k=0")
    assert train.cli.main(argv) == 2
    line = one_line(capsys)
    assert "visual/convnext/cls" in line


def test_resume_with_more_epochs(train_data, capsys):
    first = _fit(train_data, "r_resume", "--set", *SMALL, "optim.epochs=1")
    assert train.cli.main(first) == 0
    capsys.readouterr()
    more = _fit(train_data, "r_resume", "--set", *SMALL, "optim.epochs=2")
    code = train.cli.main(more)
    if code != 0:
        assert code == 2
        assert "optim.epochs" in one_line(capsys)


def test_missing_required_option_is_one_line(capsys):
    assert train.cli.main(["fit", "--manifest", "m", "--out", "o"]) == 2
    line = one_line(capsys)
    assert "--store" in line and "--help" in line


def test_store_given_neither_way_or_twice(capsys):
    assert extract.cli.main(["inspect"]) == 2
    line = one_line(capsys)
    assert line.startswith("auwild-extract inspect: error: give the store: --store STORE")
    assert extract.cli.main(["verify", "a.zarr", "--store", "b.zarr"]) == 2
    assert "two stores given" in one_line(capsys)
