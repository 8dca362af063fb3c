"""The fused CPU scan kernel against the plain loop (values and every gradient), its build
cache, its fallback, and how `resolve_impl` picks it.

The kernel is built once per test session, into torch's extension folder under the test-wide
temporary cache (tests/conftest.py points XDG_CACHE_HOME there); the build and fallback tests
below never run the compiler again.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest
import torch

from train.models import scan, scan_fused
from train.models.scan import resolve_impl, selective_scan

needs_kernel = pytest.mark.skipif(
    not scan_fused.available(), reason="the fused scan kernel did not build (no C++ compiler?)"
)

INPUTS = ("u", "delta", "A", "B", "C")


def _inputs(batch, dim, state, length, groups_b, groups_c, dtype, seed=0):
    """Random inputs; groups None means B (or C) is (batch, state, L), shared by all channels."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=dtype) * scale).requires_grad_()

    def bc(groups):
        return rnd(batch, groups, state, length) if groups else rnd(batch, state, length)

    return dict(
        u=rnd(batch, dim, length),
        delta=(torch.rand(batch, dim, length, generator=g, dtype=dtype) * 0.5).requires_grad_(),
        A=(-torch.rand(dim, state, generator=g, dtype=dtype) - 0.1).requires_grad_(),
        B=bc(groups_b),
        C=bc(groups_c),
        D=rnd(dim),
        z=rnd(batch, dim, length),
        delta_bias=rnd(dim, scale=0.1),
    )


def _values_and_grads(impl, inp, use, softplus, last_state, flip=False):
    """Outputs and the gradients of a random weighting of them, for every input used."""
    kw = {k: v for k, v in inp.items() if k in INPUTS or k in use}
    if flip:  # the reversed-time direction, as bidirectional blocks use it
        kw = {k: (v.flip(-1) if k in ("u", "delta", "B", "C", "z") else v) for k, v in kw.items()}
    res = selective_scan(**kw, delta_softplus=softplus, return_last_state=last_state, impl=impl)
    outs = res if last_state else (res,)
    g = torch.Generator().manual_seed(1)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in outs)
    names = [k for k in inp if k in INPUTS or k in use]
    grads = torch.autograd.grad(loss, [inp[k] for k in names]) if outs[0].numel() else ()
    return outs, dict(zip(names, grads))


TOL = {torch.float64: dict(rtol=1e-9, atol=1e-10), torch.float32: dict(rtol=2e-4, atol=2e-5)}

CASES = [
    # (batch, dim, state, length, groups_b, groups_c, use, softplus, last_state, flip)
    (2, 3, 4, 1, None, None, (), False, True, False),
    (1, 4, 2, 7, None, None, ("D",), True, False, False),
    (2, 4, 3, 33, None, None, ("D", "z", "delta_bias"), True, True, False),
    (2, 4, 3, 33, None, None, ("D", "z", "delta_bias"), True, True, True),
    (2, 6, 2, 16, 2, None, ("z",), False, True, False),
    (1, 6, 3, 9, 3, 3, ("D", "delta_bias"), True, True, True),
    (2, 6, 4, 20, 2, 3, ("D", "z", "delta_bias"), True, True, False),
    (3, 4, 5, 64, None, 4, ("z",), False, False, False),
    (2, 5, 16, 100, None, None, ("D", "z", "delta_bias"), True, True, False),
]


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(
    "batch,dim,state,length,groups_b,groups_c,use,softplus,last_state,flip", CASES
)
def test_fused_matches_ref_values_and_grads(
    dtype, batch, dim, state, length, groups_b, groups_c, use, softplus, last_state, flip
):
    inp = _inputs(batch, dim, state, length, groups_b, groups_c, dtype)
    ref_outs, ref_grads = _values_and_grads("ref", inp, use, softplus, last_state, flip)
    outs, grads = _values_and_grads("fused", inp, use, softplus, last_state, flip)
    for o, r in zip(outs, ref_outs):
        assert o.dtype == dtype
        torch.testing.assert_close(o, r, **TOL[dtype])
    assert grads.keys() == ref_grads.keys()
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], **TOL[dtype], msg=f"grad of {name}")


@needs_kernel
@pytest.mark.parametrize("groups_b,groups_c", [(None, None), (2, 3)])
def test_fused_split_over_threads_matches_ref(groups_b, groups_c):
    """One batch row on four threads: channels are split into chunks whose dB, dC are summed."""
    inp = _inputs(1, 6, 3, 25, groups_b, groups_c, torch.float64, seed=4)
    use = ("D", "z", "delta_bias")
    ref_outs, ref_grads = _values_and_grads("ref", inp, use, True, True)
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        assert scan_fused._chunks(1, 6, torch.get_num_threads()) == 4
        outs, grads = _values_and_grads("fused", inp, use, True, True)
    finally:
        torch.set_num_threads(before)
    for o, r in zip(outs, ref_outs):
        torch.testing.assert_close(o, r, **TOL[torch.float64])
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], **TOL[torch.float64], msg=f"grad of {name}")


@needs_kernel
def test_fused_gradcheck():
    inp = _inputs(2, 3, 2, 6, 3, None, torch.float64, seed=2)

    def f(u, delta, A, B, C, D, z, delta_bias):
        out, last = selective_scan(
            u, delta, A, B, C, D, z, delta_bias, True, return_last_state=True, impl="fused"
        )
        return out, last

    args = [inp[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")]
    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-7)


@needs_kernel
def test_fused_empty_length():
    inp = _inputs(2, 3, 4, 0, None, None, torch.float32)
    out, last = selective_scan(
        inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], return_last_state=True, impl="fused"
    )
    assert out.shape == (2, 3, 0)
    assert last.shape == (2, 3, 4) and not last.any()


@needs_kernel
def test_fused_under_cpu_autocast_returns_input_dtype():
    inp = _inputs(2, 4, 3, 10, None, None, torch.float32, seed=6)
    kw = {k: v.detach() for k, v in inp.items()}
    ref = selective_scan(**kw, delta_softplus=True, impl="ref")
    kw["u"] = kw["u"].bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = selective_scan(**kw, delta_softplus=True, impl="fused")
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-2)


# ---------------------------------------------------------------- picking it, building it


def test_auto_picks_fused_on_cpu_only_when_it_loaded(monkeypatch):
    u = torch.zeros(1, 1, 1)
    monkeypatch.delenv(scan.ENV_IMPL, raising=False)
    expected = "fused" if scan_fused.available() else "torch"
    assert resolve_impl("auto", u) == expected
    monkeypatch.setattr(scan_fused, "library", lambda: None)
    assert resolve_impl("auto", u) == "torch"
    with pytest.raises(RuntimeError, match="did not build.*use impl='torch'"):
        selective_scan(u, u, torch.zeros(1, 1), u, u, impl="fused")


def test_env_knob_selects_either_path(monkeypatch):
    u = torch.zeros(1, 1, 1)
    for name in ("torch", "fused", "ref"):
        monkeypatch.setenv(scan.ENV_IMPL, name)
        assert resolve_impl("auto", u) == name
    assert resolve_impl("torch", u) == "torch"  # an explicit choice wins over the knob


def test_failed_build_logs_one_line_and_falls_back(monkeypatch, caplog):
    def no_build():
        raise RuntimeError("no C++ compiler ('c++' not on PATH)")

    monkeypatch.setattr(scan_fused, "build", no_build)
    scan_fused.library.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger=scan_fused.__name__):
            assert scan_fused.library() is None
            assert scan_fused.library() is None  # decided once: no second attempt, no second line
            assert resolve_impl("auto", torch.zeros(1, 1, 1)) == "torch"
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 1
        assert "not built" in lines[0] and "no C++ compiler" in lines[0] and "torch" in lines[0]
    finally:
        scan_fused.library.cache_clear()  # the next call loads the session's build from disk


def test_build_without_compiler_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        scan_fused.build(str(tmp_path))
    assert not any(tmp_path.rglob("*.so"))


def test_build_with_failing_compiler_leaves_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", "false")  # a "compiler" that exits 1 at once
    with pytest.raises(RuntimeError, match="failed"):
        scan_fused.build(str(tmp_path))
    assert not any(tmp_path.rglob("*.so"))
    assert not any(p.name.startswith(".build-") for p in tmp_path.rglob("*"))


@needs_kernel
def test_build_is_cached_outside_the_repo(monkeypatch):
    """A built library is found again without running the compiler; it lives in torch's
    extension folder (here the test session's temporary cache), not in the repository."""
    from torch.utils.cpp_extension import get_default_build_root

    path = scan_fused.build()
    assert path.exists()
    assert path.is_relative_to(Path(get_default_build_root()))
    assert not path.is_relative_to(Path(scan.__file__).resolve().parents[2])

    def no_compile(*args, **kwargs):
        raise AssertionError(f"compiler run again: {args}")

    monkeypatch.setattr(subprocess, "run", no_compile)
    assert scan_fused.build() == path


def test_build_dir_changes_with_the_source(monkeypatch, tmp_path):
    first = scan_fused.build_dir(str(tmp_path))
    assert first.parent == tmp_path
    changed = tmp_path / "scan_cpu.cpp"
    changed.write_text(scan_fused.SOURCE.read_text() + "\n// changed\n")
    monkeypatch.setattr(scan_fused, "SOURCE", changed)
    assert scan_fused.build_dir(str(tmp_path)) != first


@needs_kernel
def test_loading_the_kernel_keeps_denormals():
    """The kernel is compiled with fast math but linked without it, so loading it does not
    switch the process to flushing denormals to zero."""
    scan_fused.library()
    tiny = torch.tensor([1e-40], dtype=torch.float32)  # a float32 denormal
    assert (tiny * 1.0).item() != 0.0
