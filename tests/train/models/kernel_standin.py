"""A CPU stand-in for mamba-ssm's `selective_scan_fn`: the kernel's checks, then our reference.

mamba-ssm's Python wrapper (`SelectiveScanFn`) makes u, delta, B, C, z contiguous in the last
dim when they are not, makes D contiguous and turns a (batch, state, L) B or C into
(batch, 1, state, L); the C++ (`csrc/selective_scan/selective_scan.cpp`, `selective_scan_fwd` /
`selective_scan_bwd`) then checks, with `TORCH_CHECK`, in this order:

- u's dtype (the input type) is float32, float16 or bfloat16; A's (the weight type) is float32
  or complex64;
- delta's dtype is the input type; a time-varying (>= 3-d) B and C have the input type, a
  fixed (dim, state) one the weight type;
- unit stride along the last dim of u and delta (and of B, C, D, delta_bias, z, dout);
- state <= 256; u, delta (batch, dim, L); A (dim, state); B, C (batch, groups, state, L);
- D and delta_bias float32 of shape (dim,); z of the input type and u's shape;
- backward: dout of the input type and u's shape.

A failed `TORCH_CHECK(cond)` raises RuntimeError "Expected cond to be true, but got false.",
and `CHECK_SHAPE` raises "x must have shape (...)"; the stand-in raises the same. The
`is_cuda()` checks are left out (the stand-in runs on the CPU). Outputs take the kernel's
dtypes: out in the input type, the last state in float32; gradients in each input's dtype.
"""

from __future__ import annotations

import torch

from train.models.scan import selective_scan_ref

_INPUT_TYPES = (torch.float32, torch.float16, torch.bfloat16)
_WEIGHT_TYPES = (torch.float32, torch.complex64)


def _check(cond: bool, text: str) -> None:
    if not cond:
        raise RuntimeError(f"Expected {text} to be true, but got false.")


def _check_shape(t: torch.Tensor, name: str, shape: tuple, names: str) -> None:
    if tuple(t.shape) != tuple(shape):
        raise RuntimeError(f"{name} must have shape ({names})")


def _unit_stride(t: torch.Tensor) -> bool:
    return t.stride(-1) == 1 or t.size(-1) == 1


def check_forward(u, delta, A, B, C, D, z, delta_bias) -> None:
    """`selective_scan_fwd`'s checks, with B and C as the wrapper passes them."""
    input_type, weight_type = u.dtype, A.dtype
    _check(input_type in _INPUT_TYPES, "input_type == Float || Half || BFloat16")
    _check(weight_type in _WEIGHT_TYPES, "weight_type == Float || ComplexFloat")
    variable_b, variable_c = B.dim() >= 3, C.dim() >= 3
    _check(delta.dtype == input_type, "delta.scalar_type() == input_type")
    _check(
        B.dtype == (input_type if variable_b else weight_type),
        "B.scalar_type() == (!is_variable_B ? weight_type : input_type)",
    )
    _check(
        C.dtype == (input_type if variable_c else weight_type),
        "C.scalar_type() == (!is_variable_C ? weight_type : input_type)",
    )
    _check(_unit_stride(u), "u.stride(-1) == 1 || u.size(-1) == 1")
    _check(_unit_stride(delta), "delta.stride(-1) == 1 || delta.size(-1) == 1")
    batch, dim, length = u.shape
    state = A.shape[1]
    groups = B.shape[1] if variable_b else 1
    _check(state <= 256, "dstate <= 256")
    _check_shape(u, "u", (batch, dim, length), "batch_size, dim, seqlen")
    _check_shape(delta, "delta", (batch, dim, length), "batch_size, dim, seqlen")
    _check_shape(A, "A", (dim, state), "dim, dstate")
    for name, t, variable in (("B", B, variable_b), ("C", C, variable_c)):
        if variable:
            _check_shape(
                t, name, (batch, groups, state, length), "batch_size, n_groups, dstate, seqlen"
            )
            _check(_unit_stride(t), f"{name}.stride(-1) == 1 || {name}.size(-1) == 1")
        else:
            _check_shape(t, name, (dim, state), "dim, dstate")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None:
            _check(t.dtype == torch.float32, f"{name}.scalar_type() == at::ScalarType::Float")
            _check(_unit_stride(t), f"{name}.stride(-1) == 1 || {name}.size(-1) == 1")
            _check_shape(t, name, (dim,), "dim")
    if z is not None:
        _check(z.dtype == input_type, "z.scalar_type() == input_type")
        _check(_unit_stride(z), "z.stride(-1) == 1 || z.size(-1) == 1")
        _check_shape(z, "z", (batch, dim, length), "batch_size, dim, seqlen")


def check_backward(u, dout) -> None:
    """`selective_scan_bwd`'s checks on the incoming gradient."""
    _check(dout.dtype == u.dtype, "dout.scalar_type() == input_type")
    _check(_unit_stride(dout), "dout.stride(-1) == 1 || dout.size(-1) == 1")
    _check_shape(dout, "dout", tuple(u.shape), "batch_size, dim, seqlen")


class _StandIn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state):
        # What SelectiveScanFn does before calling the C++.
        u = u if u.stride(-1) == 1 else u.contiguous()
        delta = delta if delta.stride(-1) == 1 else delta.contiguous()
        D = None if D is None else D.contiguous()
        B = B if B.stride(-1) == 1 else B.contiguous()
        C = C if C.stride(-1) == 1 else C.contiguous()
        z = z if z is None or z.stride(-1) == 1 else z.contiguous()
        ctx.squeeze_b, ctx.squeeze_c = B.dim() == 3, C.dim() == 3
        B = B[:, None] if B.dim() == 3 else B
        C = C[:, None] if C.dim() == 3 else C
        check_forward(u, delta, A, B, C, D, z, delta_bias)
        inputs = (u, delta, A, B, C, D, z, delta_bias)
        leaves = [None if t is None else t.detach().requires_grad_() for t in inputs]
        with torch.enable_grad(), torch.autocast("cpu", enabled=False):
            out, last = selective_scan_ref(
                *leaves, delta_softplus=delta_softplus, return_last_state=True
            )
        ctx.leaves, ctx.ref_out, ctx.u_meta = leaves, out, u.detach()
        out = out.detach().to(u.dtype)  # the kernel writes out (and out_z) in the input type
        last = last.detach().float()  # ... and the state in the weight type
        ctx.mark_non_differentiable(last)
        return (out, last) if return_last_state else out

    @staticmethod
    def backward(ctx, dout, *_):
        dout = dout if dout.stride(-1) == 1 else dout.contiguous()
        check_backward(ctx.u_meta, dout)
        used = [t for t in ctx.leaves if t is not None]
        grads = iter(torch.autograd.grad(ctx.ref_out, used, dout.to(ctx.ref_out.dtype)))
        out = [None if t is None else next(grads).to(t.dtype) for t in ctx.leaves]
        du, ddelta, dA, dB, dC, dD, dz, ddelta_bias = out
        dB = dB[:, 0] if ctx.squeeze_b else dB
        dC = dC[:, 0] if ctx.squeeze_c else dC
        return du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, None, None


def selective_scan_fn_standin(
    u,
    delta,
    A,
    B,
    C,
    D=None,
    z=None,
    delta_bias=None,
    delta_softplus=False,
    return_last_state=False,
):
    """mamba-ssm's `selective_scan_fn` signature and checks, computed by `selective_scan_ref`."""
    return _StandIn.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
