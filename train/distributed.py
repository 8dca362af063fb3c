"""Several processes through `torchrun` and DDP; a single process needs none of it.

`torchrun --nproc-per-node N -m train fit ...` sets RANK / WORLD_SIZE / LOCAL_RANK; each
process trains on its share of the windows, gradients are averaged by DDP, and rank 0 alone
validates and writes checkpoints (the others wait at a barrier). NCCL on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def pick_device(preference: str, info: DistInfo) -> torch.device:
    """ "auto": this process's GPU when there is one, else the CPU (see extract.device)."""
    from extract.device import resolve_device

    local_rank = info.local_rank if info.enabled else None
    return torch.device(resolve_device(preference, local_rank=local_rank))


def init_distributed(device_preference: str = "auto") -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        info = DistInfo()
        return info, pick_device(device_preference, info)
    info = DistInfo(
        rank=int(os.environ["RANK"]),
        world=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )
    device = pick_device(device_preference, info)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info, device


def barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()


def mean_across(value: float, info: DistInfo, device: torch.device) -> float:
    """Average a float over processes (e.g. the epoch's training loss)."""
    if not (info.enabled and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / info.world


def broadcast_flag(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """Rank 0's decision for everyone (e.g. stop now)."""
    if not (info.enabled and dist.is_initialized()):
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.broadcast(t, 0)
    return bool(t.item())


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
