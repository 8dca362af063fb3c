"""`--device auto` for extract and train: one resolution, with and without a (pretended) GPU."""

from __future__ import annotations

import logging

import pytest
import torch

from data_manifest.user_error import UserError
from extract.device import resolve_device
from extract.job.commands import _add_job_options
from extract.job.config import ExtractConfig
from extract.job.config import config_from_args as _config
from train.distributed import DistInfo, pick_device


@pytest.fixture
def gpus(monkeypatch):
    """Pretend torch sees `n` CUDA GPUs."""

    def set_count(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)

    return set_count


def test_auto_takes_the_gpu_when_there_is_one(gpus):
    gpus(2)
    assert resolve_device("auto") == "cuda"
    assert resolve_device(None) == "cuda"
    assert resolve_device("auto", local_rank=1) == "cuda:1"
    assert resolve_device("cuda:1") == "cuda:1"
    assert resolve_device(" CUDA ") == "cuda"


def test_auto_falls_back_to_the_cpu_without_one(gpus, caplog):
    gpus(0)
    with caplog.at_level(logging.WARNING, logger="extract.device"):
        assert resolve_device("auto") == "cpu"
        assert resolve_device("cpu") == "cpu"
    assert not caplog.records  # nothing to warn about on a CPU machine


def test_cpu_on_a_gpu_node_is_said_in_one_line(gpus, caplog):
    gpus(1)
    with caplog.at_level(logging.WARNING, logger="extract.device"):
        assert resolve_device("cpu") == "cpu"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "GPU is present" in lines[0] and "\n" not in lines[0]


@pytest.mark.parametrize("asked", ["cuda", "cuda:0", "cuda:3"])
def test_a_gpu_that_is_not_there_is_a_user_error(gpus, asked):
    gpus(0)
    with pytest.raises(UserError, match="no CUDA GPU") as info:
        resolve_device(asked)
    assert "\n" not in str(info.value)


def test_a_gpu_index_past_the_count_is_a_user_error(gpus):
    gpus(2)
    with pytest.raises(UserError, match=r"cuda:2 .* 2 GPU"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("asked", ["nvidia", "cpu:0", "auto:1", "cuda:x", "mps", ""])
def test_unknown_names_are_a_user_error(gpus, asked):
    gpus(1)
    if asked == "":  # empty means the default
        assert resolve_device(asked) == "cuda"
        return
    with pytest.raises(UserError, match="unknown device"):
        resolve_device(asked)


def _parse(argv):
    import argparse

    p = argparse.ArgumentParser()
    _add_job_options(p)
    return p.parse_args(["--manifest", "m.parquet", "--visual", "dinov2=x", *argv])


def test_extract_run_defaults_to_auto(gpus):
    gpus(1)
    assert _parse([]).device == "auto"
    assert _config(_parse([])).device == "cuda"
    assert _config(_parse(["--device", "cpu"])).device == "cpu"
    gpus(0)
    assert _config(_parse([])).device == "cpu"
    with pytest.raises(UserError):
        _config(_parse(["--device", "cuda"]))


def test_extract_config_resolves_its_device(gpus):
    gpus(0)
    assert ExtractConfig().device == "cpu"
    assert ExtractConfig().to_dict()["device"] == "cpu"  # the store records the real device
    gpus(1)
    assert ExtractConfig().device == "cuda"


def test_train_keeps_its_resolution(gpus):
    """auto -> this process's GPU (cuda:<local_rank> under torchrun), else the CPU."""
    single, ddp = DistInfo(), DistInfo(rank=1, world=2, local_rank=1)
    gpus(0)
    assert pick_device("auto", single) == torch.device("cpu")
    assert pick_device("auto", ddp) == torch.device("cpu")
    assert pick_device("cpu", single) == torch.device("cpu")
    with pytest.raises(UserError):
        pick_device("cuda", single)
    gpus(2)
    assert pick_device("auto", single) == torch.device("cuda")
    assert pick_device("auto", ddp) == torch.device("cuda:1")
    assert pick_device("cuda", ddp) == torch.device("cuda:1")
    assert pick_device("cuda:0", ddp) == torch.device("cuda:0")
    assert pick_device("cpu", ddp) == torch.device("cpu")


def test_extract_run_without_the_asked_gpu_prints_one_line(gpus, capsys):
    from extract.cli import main

    gpus(0)
    code = main(["run", "--manifest", "m.parquet", "--store", "s.zarr", "--visual", "dinov2=x",
                 "--device", "cuda:1"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert err == "error: device 'cuda:1' asked for, but torch sees no CUDA GPU on this machine"
