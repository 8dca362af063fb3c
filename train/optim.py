"""AdamW's parameter groups: weight decay on the weights of matrix multiplications only.

Decoupled weight decay pulls every parameter towards 0 by lr * wd of itself at every step. On
the weights of linear, convolution and attention projections that is the regulariser it is
meant to be. On the other parameters 0 is a particular value, not "small": A_log -> 0 sets
every SSM state to the same decay rate (the S4D spread of time scales is lost), D -> 0 removes
the skip from input to output, LayerNorm gains -> 0 shrink activations, and biases, the dt bias,
embeddings (ROI and query embeddings), learned stand-in vectors and mixing logits drift towards
values they were never meant to take. Over tens of thousands of steps the decay alone gets them
there. mamba exempts A_log and D (a `_no_weight_decay` attribute on the parameter), and
minGPT / nanoGPT decay only the weights of matrix multiplications; so do we.

Rule (one function, `param_groups`): a parameter decays when it has two or more dims, belongs
directly to a Linear, Conv or MultiheadAttention module, and is not marked
`param._no_weight_decay = True`. Everything else is in the no-decay group. There are always two
groups, decay first, so a resumed run's optimizer state lines up with the groups; a state saved
before the groups existed (one group) is moved into them by `load_optimizer_state`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

NO_WEIGHT_DECAY = "_no_weight_decay"  # set to True on a parameter to exempt it, as mamba does
DECAY_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MultiheadAttention)


def no_weight_decay(*params: nn.Parameter) -> None:
    """Mark parameters as exempt from weight decay."""
    for p in params:
        setattr(p, NO_WEIGHT_DECAY, True)


def split_decay(model: nn.Module) -> tuple[list[str], list[str]]:
    """Names of the trainable parameters that decay and of those that do not (shared ones once)."""
    matmul = {
        id(p)
        for module in model.modules()
        if isinstance(module, DECAY_MODULES)
        for p in module.parameters(recurse=False)
        if p.dim() >= 2
    }
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        keep = id(p) in matmul and not getattr(p, NO_WEIGHT_DECAY, False)
        (decay if keep else no_decay).append(name)
    return decay, no_decay


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW's groups: [decay at `weight_decay`, no decay]; each trainable parameter in one."""
    params = dict(model.named_parameters())
    decay, no_decay = split_decay(model)
    return [
        {"params": [params[n] for n in decay], "weight_decay": weight_decay},
        {"params": [params[n] for n in no_decay], "weight_decay": 0.0},
    ]


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, model: nn.Module, saved: dict[str, Any]
) -> None:
    """Load a saved optimizer state into `optimizer` (built by `param_groups`).

    A checkpoint written before the groups existed holds one group over `model.parameters()`
    in order; its moments are moved to the same parameters in the two groups (each group keeps
    its own weight decay), so such a run resumes with its Adam state intact.
    """
    groups = saved["param_groups"]
    if len(groups) == len(optimizer.param_groups):
        optimizer.load_state_dict(saved)
        return
    old_index = {id(p): i for i, p in enumerate(model.parameters())}
    if len(groups) != 1 or len(groups[0]["params"]) != len(old_index):
        raise ValueError(
            f"optimizer state has {len(groups)} parameter group(s) over "
            f"{sum(len(g['params']) for g in groups)} parameters; this model needs "
            f"{len(optimizer.param_groups)} groups over {len(old_index)}"
        )
    hyper = {k: v for k, v in groups[0].items() if k != "params"}
    state, new_groups, k = {}, [], 0
    for group in optimizer.param_groups:
        indices = []
        for p in group["params"]:
            old = old_index[id(p)]
            if old in saved["state"]:
                state[k] = saved["state"][old]
            indices.append(k)
            k += 1
        new_groups.append({**hyper, "weight_decay": group["weight_decay"], "params": indices})
    optimizer.load_state_dict({"state": state, "param_groups": new_groups})
