"""The kernel path under CUDA autocast, on the CPU: every model that scans, forward and backward,
with mamba-ssm's checks (a stand-in kernel) and CUDA's bf16 autocast rules (simulated)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.train.models.cuda_autocast import cuda_autocast
from tests.train.models.kernel_standin import check_backward, selective_scan_fn_standin
from tests.train.models.test_models import DIMS, TINY, fake_batch
from train.models import MODEL_REGISTRY, _import_all, build_model, scan
from train.models.ag_ssm import AGSSMBlock
from train.models.scan import selective_scan

_import_all()


@pytest.fixture
def kernel_calls(monkeypatch):
    """The stand-in in place of mamba-ssm's kernel, picked by `auto` for CPU tensors."""
    calls = []

    def kernel(*args):
        calls.append(tuple(a.dtype if isinstance(a, torch.Tensor) else a for a in args[:8]))
        return selective_scan_fn_standin(*args)

    monkeypatch.setattr(scan, "_cuda_kernel", lambda: kernel)
    monkeypatch.setattr(scan, "KERNEL_DEVICES", frozenset({"cpu", "cuda"}))
    monkeypatch.delenv(scan.ENV_IMPL, raising=False)
    return calls


def _scan_inputs(dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    b, d, n, length = 2, 4, 3, 9
    return dict(
        u=torch.randn(b, d, length, generator=g).to(dtype),
        delta=torch.rand(b, d, length, generator=g).to(dtype),
        A=-torch.rand(d, n, generator=g) - 0.1,
        B=torch.randn(b, n, length, generator=g).to(dtype),
        C=torch.randn(b, n, length, generator=g).to(dtype),
        D=torch.randn(d, generator=g),
        z=torch.randn(b, d, length, generator=g).to(dtype),
    )


def test_standin_agrees_with_ref_and_refuses_what_the_kernel_refuses():
    inp = {k: v.requires_grad_() for k, v in _scan_inputs().items()}
    out = selective_scan_fn_standin(**inp, delta_softplus=True)
    ref = scan.selective_scan_ref(**inp, delta_softplus=True)
    torch.testing.assert_close(out, ref)
    grads = torch.autograd.grad(out.square().sum(), list(inp.values()))
    ref_grads = torch.autograd.grad(ref.square().sum(), list(inp.values()))
    for g, rg in zip(grads, ref_grads):
        torch.testing.assert_close(g, rg)

    bf = _scan_inputs(torch.bfloat16)
    assert selective_scan_fn_standin(**bf).dtype == torch.bfloat16  # one input type: fine
    bad = [
        ({"delta": bf["delta"].float()}, "delta.scalar_type"),
        ({"z": bf["z"].float()}, "z.scalar_type"),
        ({"B": bf["B"].float()}, "B.scalar_type"),
        ({"D": bf["D"].bfloat16()}, "D.scalar_type"),
        ({"A": bf["A"].bfloat16()}, "weight_type"),
        ({"u": bf["u"].double(), "delta": bf["delta"].double()}, "input_type"),
        ({"delta": bf["delta"][:, :2]}, r"delta must have shape"),
    ]
    for change, message in bad:
        with pytest.raises(RuntimeError, match=message):
            selective_scan_fn_standin(**{**bf, **change})
    # The backward's check (autograd hands the backward a gradient in out's dtype, so a graph
    # never trips it; called directly it refuses as the C++ does).
    check_backward(bf["u"], bf["u"].bfloat16())
    with pytest.raises(RuntimeError, match="dout.scalar_type"):
        check_backward(bf["u"], bf["u"].float())


def test_simulated_cuda_autocast_follows_cuda_rules():
    x = torch.randn(3, 8)
    lin, norm = torch.nn.Linear(8, 8), torch.nn.LayerNorm(8)
    with cuda_autocast():
        h = lin(x)
        assert h.dtype == torch.bfloat16  # lowered, as on CUDA
        assert F.softplus(h).dtype == torch.float32  # CUDA: float32; CPU autocast: bf16
        assert torch.exp(h).dtype == torch.float32
        assert norm(h).dtype == torch.float32
        assert F.softmax(h, -1).dtype == torch.float32
        assert F.silu(h).dtype == torch.bfloat16  # not on any list: input dtype
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the rules are gone afterwards
        assert F.softplus(lin(x)).dtype == torch.bfloat16


def test_scan_casts_once_for_every_implementation(kernel_calls):
    """Mixed inputs as autocast leaves them: bf16 u, z, B, C and a float32 delta."""
    inp = _scan_inputs(torch.bfloat16)
    inp["delta"] = inp["delta"].float()
    outs = {}
    for impl in ("cuda", "torch", "ref"):
        outs[impl] = selective_scan(**inp, delta_softplus=True, impl=impl)
        assert outs[impl].dtype == torch.bfloat16
    assert kernel_calls and all(dt == torch.float32 for dt in kernel_calls[0][:5])
    torch.testing.assert_close(outs["cuda"], outs["ref"])
    torch.testing.assert_close(outs["torch"], outs["ref"])


CASES = [(name, kw) for name in sorted(MODEL_REGISTRY) for kw in TINY.get(name, [{}])]


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_every_model_trains_on_the_kernel_under_cuda_autocast(kernel_calls, name, kwargs):
    torch.manual_seed(0)
    model = build_model({"name": name, **kwargs}, DIMS)
    full = fake_batch()
    batch = {
        k: v for k, v in full.items() if k in model.required_inputs or k.endswith(("valid", "mask"))
    }
    model.train()
    with cuda_autocast():
        logits = model(batch)  # (B, T, A)
    loss = logits.float().square().mean()
    loss.backward()
    assert torch.isfinite(loss)
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    scans = any(isinstance(m, AGSSMBlock) for m in model.modules())
    assert bool(kernel_calls) == scans  # every model that scans went through the kernel

    if scans:  # the kernel and the torch scan give the same model output
        model.eval()
        with torch.no_grad(), cuda_autocast():
            on_kernel = model(batch).float()
            for layer in model.modules():
                if isinstance(layer, AGSSMBlock):
                    layer.scan_impl = "torch"
            on_torch = model(batch).float()
        torch.testing.assert_close(on_kernel, on_torch, rtol=2e-2, atol=2e-2)


@pytest.mark.gpu
def test_every_scanning_model_under_real_cuda_autocast_with_the_kernel():
    if scan._cuda_kernel() is None:
        pytest.skip("mamba-ssm is not installed")
    for kwargs in TINY["hga_agssm"]:
        torch.manual_seed(0)
        model = build_model({"name": "hga_agssm", **kwargs}, DIMS).cuda().train()
        full = fake_batch()
        batch = {
            k: v.cuda()
            for k, v in full.items()
            if k in model.required_inputs or k.endswith(("valid", "mask"))
        }
        assert scan.resolve_impl("auto", batch["cls"]) == "cuda"
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(batch)
        logits.float().square().mean().backward()
        for pname, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        model.eval()
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            on_kernel = model(batch).float()
            for layer in model.modules():
                if isinstance(layer, AGSSMBlock):
                    layer.scan_impl = "torch"
            on_torch = model(batch).float()
        torch.testing.assert_close(on_kernel, on_torch, rtol=2e-2, atol=2e-2)
