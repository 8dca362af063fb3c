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
groups, decay first, so a resumed run's optimizer state lines up with the groups.
"""

from __future__ import annotations

from typing import Any

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
