"""CUDA autocast's dtype rules, reproduced on the CPU: `with cuda_autocast(): ...`.

Autocast on the CPU and on CUDA lower the same matrix ops to bf16 (linear, conv, matmul, mm,
bmm, addmm, baddbmm, scaled dot-product attention; einsum reaches bmm), but CUDA also runs a
list of ops in float32 that the CPU leaves in the input's dtype: softplus, exp, log, layer and
group norm, softmax, sums... So a model can pass on the CPU and break on a GPU (a float32 delta
from softplus next to a bf16 u). This context manager turns on CPU autocast in bf16 and
registers, for the duration, kernels on the AutocastCPU dispatch key for CUDA's float32 ops
(inputs cast to float32, output float32) and CUDA's "promote" ops (inputs cast to the widest
float dtype among them), as `aten/src/ATen/autocast_mode.cpp` lists them for CUDA.

How faithful: the casts happen where real autocast does them (the Autocast key, above
autograd, so the casts are recorded and the backward sees the same dtypes a GPU run would);
the float32 and promote lists cover the ops of CUDA's lists our models can reach, not all of
them; ops CUDA lowers and the CPU does not (addmv, addr, mv, chain_matmul, RNN cells) are not
lowered here; the weight-cast cache and the numerics of CUDA's kernels are not reproduced (only
dtypes are). fp16 autocast is not simulated.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
from torch.utils._pytree import tree_map

_LOW = (torch.bfloat16, torch.float16)
_AUTOCAST_CPU = torch._C.DispatchKeySet(torch._C.DispatchKey.AutocastCPU)

# CUDA's "fp32" and "fp32_set_opt_dtype" ops (that our models can reach), overload names.
FP32_OPS = (
    "softplus",
    "exp",
    "expm1",
    "log",
    "log1p",
    "log2",
    "log10",
    "reciprocal",
    "rsqrt",
    "pow.Tensor_Scalar",
    "pow.Tensor_Tensor",
    "layer_norm",
    "group_norm",
    "cosine_similarity",
    "logsumexp",
    "softmax.int",
    "log_softmax.int",
    "sum",
    "sum.dim_IntList",
    "cumsum",
    "prod",
    "binary_cross_entropy_with_logits",
    "mse_loss",
    "l1_loss",
)
# CUDA's "promote" ops: run in the widest float dtype of their inputs.
PROMOTE_OPS = ("grid_sampler", "addcmul", "addcdiv", "index_put", "scatter_add", "cat", "stack")


def _op(name: str):
    base, _, overload = name.partition(".")
    return getattr(getattr(torch.ops.aten, base), overload or "default")


def _fp32_kernel(op):
    def kernel(*args, **kwargs):
        def cast(t):
            return t.float() if isinstance(t, torch.Tensor) and t.dtype in _LOW else t

        with torch._C._ExcludeDispatchKeyGuard(_AUTOCAST_CPU):
            return op(*tree_map(cast, args), **tree_map(cast, kwargs))

    return kernel


def _promote_kernel(op):
    def kernel(*args, **kwargs):
        floats = []
        tree_map(
            lambda t: (
                floats.append(t.dtype)
                if isinstance(t, torch.Tensor) and t.is_floating_point()
                else None
            ),
            (args, kwargs),
        )
        widest = max(floats, key=lambda d: torch.finfo(d).bits, default=None)

        def cast(t):
            if widest is None or not isinstance(t, torch.Tensor) or not t.is_floating_point():
                return t
            return t.to(widest)

        with torch._C._ExcludeDispatchKeyGuard(_AUTOCAST_CPU):
            return op(*tree_map(cast, args), **tree_map(cast, kwargs))

    return kernel


@contextlib.contextmanager
def cuda_autocast(dtype: torch.dtype = torch.bfloat16):
    """CPU autocast in `dtype` with CUDA's float32 and promote rules on top (see module doc)."""
    lib = torch.library.Library("aten", "IMPL")
    try:
        warnings.filterwarnings("ignore", "(?s).*Overriding a previously registered kernel")
        for name in FP32_OPS:
            lib.impl(name, _fp32_kernel(_op(name)), "AutocastCPU")
        for name in PROMOTE_OPS:
            lib.impl(name, _promote_kernel(_op(name)), "AutocastCPU")
        with torch.autocast("cpu", dtype=dtype):
            yield
    finally:
        lib._destroy()
