"""The selective scan: the vectorised and kernel paths against the plain loop, values and grads."""

from __future__ import annotations

import pytest
import torch

from train.models import scan
from train.models.scan import linear_scan, resolve_impl, selective_scan


def _inputs(batch, dim, state, length, groups=None, grouped_c=False, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=dtype) * scale).requires_grad_()

    bc_shape = (batch, groups, state, length) if groups else (batch, state, length)
    c_shape = (batch, groups or 1, state, length) if grouped_c else (batch, state, length)
    return dict(
        u=rnd(batch, dim, length),
        delta=(torch.rand(batch, dim, length, generator=g, dtype=dtype) * 0.5).requires_grad_(),
        A=(-torch.rand(dim, state, generator=g, dtype=dtype) - 0.1).requires_grad_(),
        B=rnd(*bc_shape),
        C=rnd(*c_shape),
        D=rnd(dim),
        z=rnd(batch, dim, length),
        delta_bias=rnd(dim, scale=0.1),
    )


def _run(impl, inp, use, softplus, flip=False):
    kw = {k: v for k, v in inp.items() if k in ("u", "delta", "A", "B", "C") or k in use}
    if flip:  # the reversed-time direction, as bidirectional blocks use it
        kw = {k: (v.flip(-1) if k in ("u", "delta", "B", "C", "z") else v) for k, v in kw.items()}
    out, last = selective_scan(**kw, delta_softplus=softplus, return_last_state=True, impl=impl)
    return out, last


CASES = [
    # (batch, dim, state, length, groups, grouped_c, use, softplus, flip)
    (2, 3, 4, 1, None, False, (), False, False),
    (1, 4, 2, 7, None, False, ("D",), True, False),
    (2, 4, 3, 33, None, False, ("D", "z", "delta_bias"), True, False),
    (2, 4, 3, 33, None, False, ("D", "z", "delta_bias"), True, True),
    (2, 6, 2, 16, 2, False, ("z",), False, False),
    (1, 6, 3, 9, 3, True, ("D", "delta_bias"), True, True),
    (3, 2, 5, 64, None, False, ("z",), False, False),
]


@pytest.mark.parametrize("batch,dim,state,length,groups,grouped_c,use,softplus,flip", CASES)
def test_torch_matches_ref_values_and_grads(
    batch, dim, state, length, groups, grouped_c, use, softplus, flip
):
    inp = _inputs(batch, dim, state, length, groups, grouped_c)
    ref_out, ref_last = _run("ref", inp, use, softplus, flip)
    names = [k for k in inp if k in ("u", "delta", "A", "B", "C") or k in use]
    w = torch.randn_like(ref_out)
    w_last = torch.randn_like(ref_last)
    ref_grads = torch.autograd.grad(
        (ref_out * w).sum() + (ref_last * w_last).sum(), [inp[k] for k in names]
    )
    out, last = _run("torch", inp, use, softplus, flip)
    grads = torch.autograd.grad((out * w).sum() + (last * w_last).sum(), [inp[k] for k in names])
    torch.testing.assert_close(out, ref_out, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(last, ref_last, rtol=1e-9, atol=1e-10)
    for name, g, rg in zip(names, grads, ref_grads):
        torch.testing.assert_close(g, rg, rtol=1e-8, atol=1e-9, msg=f"grad of {name}")


def test_float32_matches_ref():
    inp = _inputs(2, 8, 4, 50, dtype=torch.float32, seed=3)
    ref = _run("ref", inp, ("D", "z"), True)[0]
    out = _run("torch", inp, ("D", "z"), True)[0]
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("length,groups", [(1, None), (5, None), (6, 2)])
def test_torch_gradcheck(length, groups):
    inp = _inputs(1, 2, 2, length, groups, seed=length)

    def f(u, delta, A, B, C, D, z):
        return selective_scan(u, delta, A, B, C, D, z, delta_softplus=True, impl="torch")

    args = [inp[k] for k in ("u", "delta", "A", "B", "C", "D", "z")]
    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-6)


def test_tiling_does_not_change_results(monkeypatch):
    inp = _inputs(2, 7, 3, 12, seed=5)
    full = _run("torch", inp, ("D",), True)[0]
    monkeypatch.setattr(scan, "TILE_ELEMENTS", 1)  # one channel per tile
    tiled = _run("torch", inp, ("D",), True)[0]
    torch.testing.assert_close(tiled, full)


@pytest.mark.parametrize("length", [0, 1, 2, 3, 8, 13])
def test_linear_scan_any_length(length):
    a, b = torch.rand(length, 3, dtype=torch.float64), torch.randn(length, 3, dtype=torch.float64)
    h, expect = torch.zeros(3, dtype=torch.float64), []
    for t in range(length):
        h = a[t] * h + b[t]
        expect.append(h)
    got = linear_scan(a, b)
    assert got.shape == (length, 3)
    if length:
        torch.testing.assert_close(got, torch.stack(expect))


def test_auto_and_env_knob(monkeypatch):
    u = torch.zeros(1, 1, 1)
    monkeypatch.delenv(scan.ENV_IMPL, raising=False)
    # CPU tensor: the fused kernel when it built (tests/train/models/test_scan_fused.py)
    assert resolve_impl("auto", u) == ("fused" if scan.scan_fused.available() else "torch")
    monkeypatch.setenv(scan.ENV_IMPL, "ref")
    assert resolve_impl("auto", u) == "ref"
    assert resolve_impl("torch", u) == "torch"  # an explicit choice wins
    with pytest.raises(ValueError, match="unknown selective_scan impl"):
        resolve_impl("fast", u)


def test_cuda_impl_missing_says_how_to_install(monkeypatch):
    monkeypatch.setattr(scan, "_cuda_kernel", lambda: None)
    inp = _inputs(1, 2, 2, 3)
    with pytest.raises(RuntimeError, match=r"pip install 'auwild\[cuda\]'"):
        _run("cuda", inp, (), False)


@pytest.mark.gpu
def test_cuda_matches_torch():
    if scan._cuda_kernel() is None:
        pytest.skip("mamba-ssm is not installed")
    inp = _inputs(2, 16, 8, 100, dtype=torch.float32, seed=9)
    inp = {k: v.detach().cuda().requires_grad_() for k, v in inp.items()}
    outs, grads = {}, {}
    for impl in ("torch", "cuda"):
        out = _run(impl, inp, ("D", "z", "delta_bias"), True)[0]
        outs[impl] = out
        grads[impl] = torch.autograd.grad(out.square().sum(), [inp["u"], inp["delta"], inp["B"]])
    torch.testing.assert_close(outs["cuda"], outs["torch"], rtol=1e-3, atol=1e-3)
    for g, rg in zip(grads["cuda"], grads["torch"]):
        torch.testing.assert_close(g, rg, rtol=1e-2, atol=1e-2)
