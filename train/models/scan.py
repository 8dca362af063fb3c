"""The selective scan of Mamba, three ways behind one signature.

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t      (per channel d, state n)
    y_t = <C_t, h_t> + D * u_t,   out_t = y_t * silu(z_t)

Shapes follow mamba-ssm's `selective_scan_fn`:

    u, delta, z : (batch, dim, L)
    A           : (dim, state)           real (negative for a decaying state)
    B, C        : (batch, state, L) or (batch, groups, state, L), time-varying
    D, delta_bias : (dim,)

Implementations, picked in `resolve_impl` (the one place that decides):

- ``ref``: a plain loop over time. Slow, obviously right: the oracle the tests hold the others to.
- ``torch``: vectorised PyTorch. The linear recurrence h_t = a_t h_{t-1} + b_t is associative, so
  it is solved by a work-efficient parallel scan (pairs are combined, the half-length problem is
  solved recursively, the other half filled in), any length, with a hand-written backward: the
  gradient of a linear recurrence is the same recurrence run backwards in time.
- ``cuda``: mamba-ssm's fused kernel when installed (`pip install 'auwild[cuda]'`).
- ``auto``: ``cuda`` for CUDA tensors when mamba-ssm imports, else ``torch``. The environment
  variable ``AUWILD_SCAN_IMPL`` overrides what ``auto`` picks (tests and benchmarks use it).

Dtype rule (applied in `scan_inputs`, the one place, for every implementation): the scan runs in
float32 with autocast off. u, delta, z, B and C are cast to float32 (float64 stays float64 for
``ref`` and ``torch``), A, D and delta_bias are float32, all contiguous in their last dim; the
output comes back in u's dtype. Why not cast delta down to u's bf16 instead, which would also
satisfy the kernel's check that u, delta, z (and a time-varying B, C) share one dtype? Under
autocast on CUDA, softplus runs in float32, and delta sets the decay exp(delta * A) that is
multiplied in at every step: rounding it to bf16 (8 significant bits, relative error up to
2**-9, about 0.2 %) changes each step's log-decay delta * A by that fraction, and the state
after T steps carries the sum of T such errors. mamba itself keeps A in float32, applies the
bias and softplus to delta inside the kernel in float32 and runs the recurrence in float32. Our scan tensors are (batch, 2*d_model, window) with windows of tens of
frames, small next to the per-frame HGA over patch tokens, so float32 costs little. It also
means the three implementations see the same numbers, and the ``torch`` path's einsums are not
silently lowered to bf16 by autocast inside the scan.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable

import torch
import torch.nn.functional as F

ENV_IMPL = "AUWILD_SCAN_IMPL"
_CUDA_INSTALL = "pip install 'auwild[cuda]'"


def _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    """Shared input handling: compute dtype, delta bias and softplus, checks on shapes."""
    if A.is_complex():
        raise TypeError("selective_scan: complex A is not supported; pass a real (dim, state) A")
    batch, dim, length = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"selective_scan: delta {tuple(delta.shape)} != u {tuple(u.shape)}")
    if A.shape[0] != dim:
        raise ValueError(f"selective_scan: A {tuple(A.shape)} does not match dim {dim}")
    for name, t in (("B", B), ("C", C)):
        if t.dim() not in (3, 4) or t.shape[0] != batch or t.shape[-1] != length:
            raise ValueError(
                f"selective_scan: {name} {tuple(t.shape)} must be (batch, state, L) or "
                f"(batch, groups, state, L) with batch={batch}, L={length}"
            )
        if t.dim() == 4 and dim % t.shape[1] != 0:
            raise ValueError(f"selective_scan: {name} groups {t.shape[1]} do not divide dim {dim}")
    dtype = torch.float64 if u.dtype == torch.float64 else torch.float32
    delta = delta.to(dtype)
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[:, None]  # (batch, dim, L)
    if delta_softplus:
        delta = F.softplus(delta)
    return u.to(dtype), delta, A.to(dtype), B.to(dtype), C.to(dtype), dtype


def _finish(y, u, D, z, out_dtype):
    """out = (y + D * u) * silu(z), returned in the input's dtype."""
    if D is not None:
        y = y + u * D.to(y.dtype)[:, None]  # (batch, dim, L)
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y.to(out_dtype)


def _expand_groups(t: torch.Tensor, dim: int) -> torch.Tensor:
    """(batch, groups, state, L) -> (batch, dim, state, L): each group serves dim/groups channels."""
    return t.repeat_interleave(dim // t.shape[1], dim=1)


def selective_scan_ref(
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
    """The reference: one step per time index, written as the recurrence reads."""
    out_dtype = u.dtype
    u, delta, A, B, C, _ = _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    batch, dim, length = u.shape
    grouped_b, grouped_c = B.dim() == 4, C.dim() == 4
    if grouped_b:
        B = _expand_groups(B, dim)  # (batch, dim, state, L)
    if grouped_c:
        C = _expand_groups(C, dim)  # (batch, dim, state, L)
    h = u.new_zeros(batch, dim, A.shape[1])  # (batch, dim, state)
    ys = []
    for t in range(length):
        a_t = torch.exp(delta[:, :, t, None] * A)  # (batch, dim, state)
        b_t = B[..., t] if grouped_b else B[:, None, :, t]  # (batch, dim|1, state)
        h = a_t * h + (delta[:, :, t] * u[:, :, t])[..., None] * b_t
        c_t = C[..., t] if grouped_c else C[:, None, :, t]  # (batch, dim|1, state)
        ys.append((h * c_t).sum(-1))  # (batch, dim)
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(batch, dim, 0)  # (batch, dim, L)
    out = _finish(y, u, D, z, out_dtype)
    return (out, h.to(out_dtype)) if return_last_state else out


# ---------------------------------------------------------------- parallel linear recurrence


def linear_scan(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Solve h_t = a_t * h_{t-1} + b_t (h_{-1} = 0) along dim 0, without building a graph.

    A work-efficient parallel scan: neighbours (2i, 2i+1) are combined into one step
    (a_{2i+1} a_{2i}, a_{2i+1} b_{2i} + b_{2i+1}), the half-length recurrence gives every odd
    h, and each even h is one step from the odd h before it. Depth log2(L), total work O(L),
    every operation a whole-tensor one over the other dims. Any L >= 0 works.
    a, b: (L, ...) -> h: (L, ...), written into `out` when given.
    """
    length = a.shape[0]
    h = torch.empty_like(b) if out is None else out  # (L, ...)
    if length == 0:
        return h
    h[0] = b[0]
    if length == 1:
        return h
    n_pairs = length // 2
    a_even, a_odd = a[0 : 2 * n_pairs : 2], a[1 : 2 * n_pairs : 2]  # (L//2, ...)
    b_even, b_odd = b[0 : 2 * n_pairs : 2], b[1 : 2 * n_pairs : 2]
    h_odd = h[1::2]  # h_1, h_3, ... solved as a half-length recurrence, in place
    linear_scan(a_odd * a_even, torch.addcmul(b_odd, a_odd, b_even), out=h_odd)
    n_even_rest = (length - 1) // 2  # even indices 2, 4, ... whose previous h is odd
    if n_even_rest:
        torch.addcmul(b[2::2], a[2::2], h_odd[:n_even_rest], out=h[2::2])
    return h


def _reverse_linear_scan(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Solve r_t = a_{t+1} * r_{t+1} + g_t (r_L = 0) along dim 0: the adjoint of `linear_scan`."""
    a_rev = torch.empty_like(a)  # a_rev[k] multiplies r_{L-k} into r_{L-1-k}
    a_rev[0] = 0
    a_rev[1:] = a[1:].flip(0)
    return linear_scan(a_rev, g.flip(0)).flip(0)


def _group_index(groups: int, dim: int, device: torch.device) -> torch.Tensor:
    """Which B/C group serves each channel: (dim,) long."""
    return torch.arange(dim, device=device) // (dim // groups)


def _channels(t: torch.Tensor, gidx: torch.Tensor, s: int, e: int) -> torch.Tensor:
    """B or C (L, batch, groups, state) for channels s:e: (L, batch, e-s | 1, state)."""
    return t if t.shape[2] == 1 else t.index_select(2, gidx[s:e])


def _contract(big: torch.Tensor, t: torch.Tensor, gidx: torch.Tensor, s: int, e: int):
    """sum_n big[l, b, d, n] * t[l, b, group(d), n] -> (L, batch, e-s)."""
    if t.shape[2] == 1:
        return torch.einsum("lbdn,lbn->lbd", big, t[:, :, 0])
    return (big * t.index_select(2, gidx[s:e])).sum(-1)


def _accumulate(grad: torch.Tensor, big, small, gidx: torch.Tensor, s: int, e: int) -> None:
    """grad[l, b, group(d), n] += big[l, b, d, n] * small[l, b, d], summed over d in s:e."""
    if grad.shape[2] == 1:
        grad[:, :, 0] += torch.einsum("lbdn,lbd->lbn", big, small)
    else:
        grad.index_add_(2, gidx[s:e], big * small[..., None])


class _SelectiveScanFn(torch.autograd.Function):
    """The scan core, y_t = <C_t, h_t> with h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t.

    Time-major inputs: u, delta (L, batch, dim); A (dim, state); B, C (L, batch, groups, state)
    (groups = 1 when shared by all channels). Channels are processed in tiles so the
    (L, batch, tile, state) work tensors stay in cache. The backward is written by hand; with
    g = dL/dh (from y and the last state) it is one reverse scan of the same recurrence:
        dL/db_t = g_t + a_{t+1} dL/db_{t+1},   dL/d(delta_t A) = dL/db_t * h_{t-1} * a_t,
    then the chain rule through b_t = delta_t u_t B_t and the contraction with C.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, tile: int):
        length, batch, dim = u.shape
        gidx_b, gidx_c = (_group_index(t.shape[2], dim, u.device) for t in (B, C))
        y = u.new_empty(length, batch, dim)
        last = u.new_empty(batch, dim, A.shape[1])
        h_tiles = []  # (L, batch, dt, state) per tile, kept for the backward
        for s in range(0, dim, tile):
            e = min(s + tile, dim)
            dl = delta[:, :, s:e]  # (L, batch, dt)
            a = torch.exp(dl[..., None] * A[s:e])  # (L, batch, dt, state)
            b = (dl * u[:, :, s:e])[..., None] * _channels(B, gidx_b, s, e)  # (L, batch, dt, state)
            h = linear_scan(a, b)  # (L, batch, dt, state)
            h_tiles.append(h)
            last[:, s:e] = h[-1]
            y[:, :, s:e] = _contract(h, C, gidx_c, s, e)
        ctx.save_for_backward(u, delta, A, B, C, *h_tiles)
        ctx.tile = tile
        return y, last

    @staticmethod
    def backward(ctx, grad_y, grad_last):
        u, delta, A, B, C, *h_tiles = ctx.saved_tensors
        length, batch, dim = u.shape
        gidx_b, gidx_c = (_group_index(t.shape[2], dim, u.device) for t in (B, C))
        grad_u, grad_delta = torch.empty_like(u), torch.empty_like(delta)
        grad_A, grad_B, grad_C = torch.empty_like(A), torch.zeros_like(B), torch.zeros_like(C)
        if grad_y is None:
            grad_y = torch.zeros_like(u)
        for s, h in zip(range(0, dim, ctx.tile), h_tiles):
            e = min(s + ctx.tile, dim)
            dl, ut, gy = delta[:, :, s:e], u[:, :, s:e], grad_y[:, :, s:e]  # (L, batch, dt)
            a = torch.exp(dl[..., None] * A[s:e])  # (L, batch, dt, state)
            gh = gy[..., None] * _channels(C, gidx_c, s, e)  # (L, batch, dt, state)
            if grad_last is not None:
                gh[-1] += grad_last[:, s:e]
            _accumulate(grad_C, h, gy, gidx_c, s, e)
            gb = _reverse_linear_scan(a, gh)  # dL/db (L, batch, dt, state)
            gx = gb[1:] * h[:-1]  # dL/d(delta A) for t >= 1 (zero at t = 0)
            gx *= a[1:]
            du = dl * ut  # (L, batch, dt)
            g_du = _contract(gb, B, gidx_b, s, e)  # (L, batch, dt)
            _accumulate(grad_B, gb, du, gidx_b, s, e)
            grad_A[s:e] = (gx * dl[1:, :, :, None]).sum((0, 1))  # (dt, state)
            g_dl = g_du * ut  # (L, batch, dt)
            g_dl[1:] += (gx * A[s:e]).sum(-1)
            grad_delta[:, :, s:e] = g_dl
            grad_u[:, :, s:e] = g_du * dl
        return grad_u, grad_delta, grad_A, grad_B, grad_C, None


# Work tensors of about this many elements per channel tile (~512 KB in float32: stays in cache).
TILE_ELEMENTS = 1 << 17
# On a GPU, cache tiles only multiply kernel launches: one tile up to ~64 MB per work tensor.
TILE_ELEMENTS_CUDA = 1 << 24


def selective_scan_torch(
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
    """Vectorised selective scan: time-major tensors, a parallel scan and a hand-written backward."""
    out_dtype = u.dtype
    u, delta, A, B, C, _ = _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    batch, dim, length = u.shape
    state = A.shape[1]
    if length == 0:
        out = _finish(u.new_zeros(batch, dim, 0), u, D, z, out_dtype)
        last = u.new_zeros(batch, dim, state, dtype=out_dtype)
        return (out, last) if return_last_state else out

    def time_major(t: torch.Tensor) -> torch.Tensor:  # -> (L, batch, groups, state)
        t = t.permute(2, 0, 1)[:, :, None] if t.dim() == 3 else t.permute(3, 0, 1, 2)
        return t.contiguous()

    budget = TILE_ELEMENTS_CUDA if u.is_cuda else TILE_ELEMENTS
    tile = max(1, budget // max(1, length * batch * state))
    y, last = _SelectiveScanFn.apply(
        u.permute(2, 0, 1).contiguous(),  # (L, batch, dim)
        delta.permute(2, 0, 1).contiguous(),
        A,
        time_major(B),
        time_major(C),
        tile,
    )
    out = _finish(y.permute(1, 2, 0), u, D, z, out_dtype)  # (batch, dim, L)
    return (out, last.to(out_dtype)) if return_last_state else out


def selective_scan_cuda(
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
    """mamba-ssm's fused CUDA kernel (forward and backward)."""
    fn = _cuda_kernel()
    if fn is None:
        raise RuntimeError(
            "selective_scan impl 'cuda' needs mamba-ssm "
            "(mamba_ssm.ops.selective_scan_interface), which is not importable; "
            f"install it with: {_CUDA_INSTALL}  (or use impl='torch')"
        )
    if u.device.type not in KERNEL_DEVICES:
        raise RuntimeError("selective_scan impl 'cuda' needs CUDA tensors; use impl='torch' on CPU")
    if u.dtype == torch.float64:
        raise ValueError(
            "selective_scan impl 'cuda' runs in float32 (mamba-ssm has no float64 path); "
            "pass float32 inputs or use impl='torch'"
        )
    return fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)


# Device types the kernel runs on. Tests add "cpu" together with a stand-in kernel.
KERNEL_DEVICES = frozenset({"cuda"})


@functools.lru_cache(maxsize=1)
def _cuda_kernel() -> Callable | None:
    """mamba-ssm's `selective_scan_fn`, or None when it is not installed (looked up once)."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except ImportError:
        return None
    return selective_scan_fn


SCAN_IMPLS: dict[str, Callable] = {
    "ref": selective_scan_ref,
    "torch": selective_scan_torch,
    "cuda": selective_scan_cuda,
}


def cuda_available() -> bool:
    """True when the mamba-ssm kernel imports and a CUDA device is present."""
    return torch.cuda.is_available() and _cuda_kernel() is not None


def resolve_impl(impl: str, u: torch.Tensor) -> str:
    """The one place that turns "auto" (or the AUWILD_SCAN_IMPL override) into an impl name."""
    if impl == "auto":
        impl = os.environ.get(ENV_IMPL, "auto") or "auto"
    if impl == "auto":
        on_kernel_device = u.device.type in KERNEL_DEVICES
        return "cuda" if (on_kernel_device and _cuda_kernel() is not None) else "torch"
    if impl not in SCAN_IMPLS:
        raise ValueError(f"unknown selective_scan impl {impl!r}; known: auto, {sorted(SCAN_IMPLS)}")
    return impl


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    impl: str = "auto",
):
    """Selective scan with mamba-ssm's `selective_scan_fn` semantics (see the module docstring).

    Returns out (batch, dim, L) in u's dtype, and with `return_last_state` also the final
    state (batch, dim, state), also in u's dtype. Inputs are cast by the dtype rule of the
    module docstring (`scan_inputs`), and the scan runs with autocast off.
    """
    name = resolve_impl(impl, u)
    out_dtype = u.dtype
    args = scan_inputs(name, u, delta, A, B, C, D, z, delta_bias)
    with _no_autocast(u.device):
        res = SCAN_IMPLS[name](*args, delta_softplus, return_last_state)
    if return_last_state:
        out, last = res
        return out.to(out_dtype), last.to(out_dtype)
    return res.to(out_dtype)


def scan_dtype(impl: str, u: torch.Tensor) -> torch.dtype:
    """The dtype every implementation scans in: float32, or float64 for float64 input (which
    the kernel refuses with a clear error: it has no float64 path)."""
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def scan_inputs(impl, u, delta, A, B, C, D=None, z=None, delta_bias=None) -> tuple:
    """The dtype rule, in one place: activations (u, delta, z, B, C) in `scan_dtype`, parameters
    (A, D, delta_bias) in float32 (float64 with float64 input), all contiguous in the last dim,
    as mamba-ssm's kernel checks (u, delta, z, variable B and C share one dtype; A, D and
    delta_bias float32; unit stride along the last dim)."""
    act = scan_dtype(impl, u)
    par = torch.float64 if act == torch.float64 else torch.float32

    def cast(t, dtype):
        return None if t is None else t.to(dtype).contiguous()

    return (
        cast(u, act),
        cast(delta, act),
        cast(A, par),
        cast(B, act),
        cast(C, act),
        cast(D, par),
        cast(z, act),
        cast(delta_bias, par),
    )


def _no_autocast(device: torch.device):
    """Autocast off for the scan: its inputs are already in the dtype the rule chose."""
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()
