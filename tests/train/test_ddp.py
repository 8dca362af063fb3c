"""DDP through the same environment torchrun sets, on CPU with gloo and 2 processes."""

import json
import os
import socket

import pytest
import torch.multiprocessing as mp

from tests.train.masked_bce import build_test_loss
from tests.train.store_factory import make_dataset


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, store: str, manifest: str, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        OMP_NUM_THREADS="1",
    )
    from train.loop import fit
    from train.recipes import resolve

    cfg = resolve(
        "baseline",
        [
            "optim.epochs=2",
            "model.hidden=8",
            "optim.batch_size=2",
            "data.window=10",
            "data.stride=10",
            "optim.device=cpu",
        ],
    )
    result = fit(cfg, store, manifest, out, loss_factory=build_test_loss, progress=False)
    with open(f"{out}.rank{rank}.json", "w") as f:
        json.dump(result, f)


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    store, manifest = make_dataset(tmp_path, n_train=2, n_val=1, n_test=0, frames=40)
    out = str(tmp_path / "run")
    mp.start_processes(
        _worker,
        args=(2, _free_port(), str(store), str(manifest), out),
        nprocs=2,
        join=True,
        start_method="spawn",
    )
    r0 = json.loads(open(f"{out}.rank0.json").read())
    r1 = json.loads(open(f"{out}.rank1.json").read())
    assert r0["param_sum"] == r1["param_sum"]  # gradients were averaged: same weights everywhere
    # windows: tracks of 40 and 47 frames, window 10 stride 10 -> 4 + 5 = 9; 4 per rank; 2 steps
    assert r0["step"] == r1["step"] == 2 * 2
    history = (tmp_path / "run" / "history.jsonl").read_text().splitlines()
    assert len(history) == 2 and (tmp_path / "run" / "last.pt").exists()
