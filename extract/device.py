"""The torch device a command runs on: `auto`, `cpu`, `cuda` or `cuda:N`, resolved in one place.

`auto` (the default of `auwild-extract` and `auwild-train`) takes the GPU when torch sees one,
so a job on a GPU node never runs DINOv2 on the CPU because a flag was forgotten. Asking for
the CPU while a GPU is there is allowed and said in one line; asking for a GPU that is not
there is a user mistake (one line, no traceback). Extraction and training both resolve here.
"""

from __future__ import annotations

import logging
import re

from data_manifest.user_error import UserError

log = logging.getLogger(__name__)

DEVICE_HELP = "auto (the GPU when there is one, else the CPU), cpu, cuda or cuda:N"
_DEVICE = re.compile(r"(auto|cpu|cuda)(?::(\d+))?")


def resolve_device(preference: str | None = "auto", *, local_rank: int | None = None) -> str:
    """`auto` / `cpu` / `cuda` / `cuda:N` -> "cpu", "cuda" or "cuda:N" (a string torch accepts).

    `local_rank`: under torchrun, plain `cuda` (and `auto` on a GPU node) means this process's
    GPU, `cuda:<local_rank>`. Raises UserError for an unknown name, or a GPU that is not there.
    """
    import torch

    text = (preference or "auto").strip().lower()
    match = _DEVICE.fullmatch(text)
    if match is None or (match.group(2) is not None and match.group(1) != "cuda"):
        raise UserError(f"unknown device {preference!r}: use {DEVICE_HELP}")
    kind, index = match.group(1), match.group(2)
    has_cuda = torch.cuda.is_available()
    if kind == "auto":
        kind = "cuda" if has_cuda else "cpu"
    if kind == "cpu":
        if has_cuda:
            log.warning("running on the CPU as asked (--device cpu) although a GPU is present")
        return "cpu"
    if not has_cuda:
        raise UserError(f"device {text!r} asked for, but torch sees no CUDA GPU on this machine")
    count = torch.cuda.device_count()
    if index is None:
        if local_rank is None:
            return "cuda"
        index = str(local_rank)
    if int(index) >= count:
        raise UserError(f"device cuda:{index} asked for, but this machine has {count} GPU(s)")
    return f"cuda:{index}"
