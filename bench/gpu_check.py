"""GPU check: one command for a GPU session, every section guarded, one report.

    python -m bench.gpu_check            # on a CUDA machine, < 8 minutes
    python -m bench.gpu_check --smoke    # every section at tiny sizes on the CPU (the test)
    python -m bench.gpu_check --only scan,ddp --out /tmp/gpu

Writes OUT/gpu.md and OUT/gpu.json (OUT defaults to bench/results). Sections:

- scan:       mamba-ssm's kernel against our `torch` and `ref` scans, float32 and bf16 inputs,
              forward and backward: error against a float64 reference, and speed;
- train_step: one bf16-autocast training step (forward, backward, AdamW) of every registered
              system at real sizes (16x16x768 patch tokens, 768-d audio, 64-frame windows):
              step time and peak memory;
- encoders:   DINOv2-B/14 and WavLM-base-plus (random weights, real sizes) forward throughput,
              FLOPs per item (torch.utils.flop_counter) and the fraction of the bf16 dense peak;
- extract:    `auwild-extract bench` with those models: encoder-only against end-to-end;
- ddp:        a 1-GPU NCCL DistributedDataParallel step (in-process, 127.0.0.1);
- loader:     bench/bench_loader.py as a subprocess, with a timeout, its output recorded.

Each section runs in its own subprocess with a time limit, so a crash, a CUDA error or a hang
costs that section only: it is recorded with its error and the rest still run. Parts that need
CUDA (the mamba kernel, NCCL, peak memory) say "skipped: no CUDA" without one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# Seconds per section (real run; the whole check stays under TOTAL_BUDGET_S).
LIMITS_S = {
    "scan": 80,
    "train_step": 100,
    "encoders": 75,
    "extract": 110,
    "ddp": 40,
    "loader": 65,
}
SMOKE_LIMIT_S = 240
TOTAL_BUDGET_S = 470
SECTION_TITLES = {
    "scan": "a. Selective scan: mamba-ssm kernel against `torch` and `ref`",
    "train_step": "b. One bf16-autocast training step per system, real sizes",
    "encoders": "c. DINOv2-B/14 and WavLM-base-plus forward throughput",
    "extract": "d. Extraction bench: encoder-only against end-to-end",
    "ddp": "e. 1-GPU NCCL DDP step",
    "loader": "f. Loader benchmark (bench/bench_loader.py)",
}

# Dense bf16 tensor-core peak, TFLOP/s, by device name (most specific first).
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("GH200", 989.0),
    ("H200", 989.0),
    ("H100", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
)

NO_CUDA = "skipped: no CUDA"
QUICK = False  # smoke run: every timing is one call after the warm-up


class Skip(Exception):
    """A section (or part) that cannot run here; the message says why."""


# ------------------------------------------------------------------ shared helpers


def _device():
    import torch

    return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timeit(fn: Callable[[], Any], device, min_iters: int = 3, min_seconds: float = 0.5) -> float:
    """Median seconds per call of fn, after one warm-up call."""
    if QUICK:
        min_iters, min_seconds = 1, 0.0
    fn()
    _sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_iters or (time.perf_counter() - start < min_seconds and len(times) < 50):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_tflops(device_name: str) -> float | None:
    for key, value in PEAK_BF16_TFLOPS:
        if key in device_name:
            return value
    return None


def _rel_err(a, b) -> float:
    """max |a - b| / max |b|, in float64."""
    a, b = a.double(), b.double()
    scale = b.abs().max().item()
    return (a - b).abs().max().item() / (scale if scale > 0 else 1.0)


def _part(rows: list[dict], label: str, fn: Callable[[], dict]) -> None:
    """Run one part of a section; a failure becomes a row with its error."""
    try:
        rows.append({"case": label, **fn()})
    except Skip as e:
        rows.append({"case": label, "status": f"skipped: {e}"})
    except Exception as e:  # recorded, the section goes on
        rows.append({"case": label, "status": "fail", "error": f"{type(e).__name__}: {e}"})
        traceback.print_exc()


def _real_dims(smoke: bool) -> dict[str, Any]:
    try:
        from extract.regions import N_REGIONS
    except Exception:
        N_REGIONS = 16
    if smoke:
        return {"cls": 16, "patch": 8, "grid": (4, 4), "audio": 6, "n_rois": N_REGIONS, "n_aus": 12}
    return {
        "cls": 768,
        "patch": 768,
        "grid": (16, 16),
        "audio": 768,
        "n_rois": N_REGIONS,
        "n_aus": 12,
    }


def _batch(dims: dict[str, Any], b: int, t: int, device, seed: int = 0) -> dict:
    """A training batch as the loader hands it over (float features, bool masks)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    h, w = dims["grid"]
    lo = torch.rand(b, t, dims["n_rois"], 2, generator=g) * 0.6
    size = torch.rand(b, t, dims["n_rois"], 2, generator=g) * 0.3 + 0.05
    batch = {
        "cls": torch.randn(b, t, dims["cls"], generator=g),
        "patch": torch.randn(b, t, h, w, dims["patch"], generator=g),
        "rois": torch.cat([lo, lo + size], dim=-1),
        "audio": torch.randn(b, t, dims["audio"], generator=g),
        "audio_valid": torch.rand(b, t, generator=g) > 0.1,
        "face_valid": torch.rand(b, t, generator=g) > 0.05,
        "mask": torch.ones(b, t, dtype=torch.bool),
        "labels": (torch.rand(b, t, dims["n_aus"], generator=g) > 0.7).float(),
    }
    batch["mask"][-1, t // 2 :] = False
    return {k: v.to(device) for k, v in batch.items()}


# Smoke run: smaller widths, same code paths.
SMOKE_MODEL_KW = {
    "frame_mlp": {"hidden": 16},
    "hga_mlp": {"d_model": 16, "heads": 2, "hidden": 16},
    "hga_agssm": {"d_model": 16, "heads": 2, "d_state": 4, "hidden": 16},
    "fusion_tcn": {"d_model": 16, "heads": 2, "tcn_channels": (16,), "hidden": 16},
}


def _model_specs(smoke: bool = False) -> dict[str, dict[str, Any]]:
    """Every registered system, with the model settings of the recipe that uses it (else the
    defaults); smaller widths for the smoke run."""
    from train.models import MODEL_REGISTRY, _import_all
    from train.recipes import RECIPES

    _import_all()
    specs = {name: {"name": name} for name in sorted(MODEL_REGISTRY)}
    for recipe in RECIPES.values():
        model = dict(recipe.get("model", {}))
        if model.get("name") in specs and len(specs[model["name"]]) == 1:
            specs[model["name"]] = model
    if smoke:
        specs = {n: {**spec, **SMOKE_MODEL_KW.get(n, {})} for n, spec in specs.items()}
    return specs


def _train_step(model, opt, batch, device):
    import torch
    import torch.nn.functional as F

    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        logits = model(batch)  # (B, T, A)
    keep = batch["mask"][..., None].float()
    loss = (
        F.binary_cross_entropy_with_logits(logits.float(), batch["labels"], reduction="none") * keep
    ).sum() / keep.sum()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss


# ------------------------------------------------------------------ a. selective scan


def section_scan(smoke: bool, device, work: Path) -> dict:
    import torch

    from train.models import scan

    sizes = [(2, 16, 4, 32)] if smoke else [(16, 256, 16, 64), (8, 256, 16, 512)]
    kernel = scan._cuda_kernel() if device.type == "cuda" else None
    notes = []
    if device.type != "cuda":
        notes.append(f"mamba-ssm kernel: {NO_CUDA}; our scans timed on the CPU")
    elif kernel is None:
        notes.append("mamba-ssm is not installed (or does not import): kernel rows are missing")
    else:
        notes.append(f"mamba-ssm {_version('mamba-ssm') or _version('mamba_ssm')}")
    notes.append(
        "err: max |x - oracle| / max |oracle|, oracle = `ref` in float64 on the same inputs; "
        "grad err: the worst over u, delta, A, B, C, D, z (and delta_bias). "
        "fp32 case: float32 inputs, softplus and delta_bias in the call. "
        "bf16 case: u, B, C, z in bf16 and delta in float32, as autocast leaves them in AG-SSM; "
        "`cuda` goes through our dtype rule (all float32), `kernel bf16` calls mamba's kernel "
        "directly with delta rounded to bf16 (the rule we did not take)."
    )
    rows: list[dict] = []
    act = ("u", "delta", "B", "C", "z")
    for batch, dim, state, length in sizes:
        g = torch.Generator().manual_seed(0)
        base = dict(
            u=torch.randn(batch, dim, length, generator=g),
            delta=torch.rand(batch, dim, length, generator=g) * 0.1 + 1e-3,
            A=-torch.arange(1, state + 1, dtype=torch.float32).repeat(dim, 1),
            B=torch.randn(batch, state, length, generator=g),
            C=torch.randn(batch, state, length, generator=g),
            D=torch.ones(dim),
            z=torch.randn(batch, dim, length, generator=g),
            delta_bias=torch.randn(dim, generator=g) * 0.1,
        )
        w = torch.randn(batch, dim, length, generator=g, dtype=torch.float64).to(device)
        for case in ("fp32", "bf16"):
            if case == "fp32":
                inp = {k: v.to(device) for k, v in base.items()}
                softplus = True
            else:
                inp = {
                    k: v.to(device, torch.bfloat16 if k in act and k != "delta" else torch.float32)
                    for k, v in base.items()
                    if k != "delta_bias"
                }
                softplus = False
            oracle_in = {k: v.double().requires_grad_() for k, v in inp.items()}
            with torch.autocast(device.type, enabled=False):
                oracle = scan.selective_scan_ref(**oracle_in, delta_softplus=softplus)
            oracle_grads = torch.autograd.grad((oracle * w).sum(), list(oracle_in.values()))
            impls = ["ref", "torch", "cuda"]
            if case == "bf16":
                impls.append("kernel bf16")
            for impl in impls:
                label = f"{case} {batch}x{dim}x{state}x{length} {impl}"

                def run(
                    impl=impl,
                    inp=inp,
                    softplus=softplus,
                    oracle=oracle,
                    og=oracle_grads,
                    w=w,
                    case=case,
                    length=length,
                ):
                    if impl in ("cuda", "kernel bf16"):
                        if device.type != "cuda":
                            raise Skip("no CUDA")
                        if kernel is None:
                            raise Skip("mamba-ssm not installed")
                    leaves = {k: v.detach().clone().requires_grad_() for k, v in inp.items()}

                    def call():
                        if impl == "kernel bf16":
                            a = {k: v for k, v in leaves.items()}
                            a["delta"] = a["delta"].to(torch.bfloat16)
                            return kernel(
                                a["u"],
                                a["delta"],
                                a["A"],
                                a["B"],
                                a["C"],
                                a["D"],
                                a["z"],
                                None,
                                softplus,
                                False,
                            )
                        return scan.selective_scan(**leaves, delta_softplus=softplus, impl=impl)

                    out = call()
                    grads = torch.autograd.grad((out.double() * w).sum(), list(leaves.values()))
                    row = {
                        "status": "pass",
                        "out dtype": str(out.dtype).replace("torch.", ""),
                        "err": _rel_err(out, oracle),
                        "grad err": max(_rel_err(a, b) for a, b in zip(grads, og)),
                    }
                    reps = 1 if impl == "ref" and length > 128 else 3

                    def fwd():
                        with torch.no_grad():
                            call()

                    def fwd_bwd():
                        torch.autograd.grad(
                            (call().float() * w.float()).sum(), list(leaves.values())
                        )

                    row["fwd ms"] = 1e3 * timeit(fwd, device, min_iters=reps, min_seconds=0.3)
                    row["fwd+bwd ms"] = 1e3 * timeit(
                        fwd_bwd, device, min_iters=reps, min_seconds=0.3
                    )
                    # float32: the scan's own error; bf16: the output and the gradients of
                    # the bf16 inputs are rounded to bf16 (2**-8 relative) on the way out
                    limit, grad_limit = (1e-3, 1e-2) if case == "fp32" else (1.6e-2, 3e-2)
                    if not (row["err"] < limit and row["grad err"] < grad_limit):
                        row["status"] = "fail"
                        row["error"] = f"error above {limit:g} (grads {grad_limit:g})"
                    if impl == "kernel bf16":
                        row["status"] = "info"  # the figure behind the dtype rule, not a check
                    return row

                _part(rows, label, run)
    return {"rows": rows, "notes": notes}


# ------------------------------------------------------------------ b. training step


def section_train_step(smoke: bool, device, work: Path) -> dict:
    import torch

    from train.models import build_model, scan
    from train.optim import param_groups

    dims = _real_dims(smoke)
    b, t = (2, 8) if smoke else (16, 64)
    batch = _batch(dims, b, t, device)
    probe = torch.zeros(1, device=device)
    notes = [
        f"batch {b} windows x {t} frames; dims {json.dumps(dims)}; AdamW with param_groups, "
        "grad clip 1; bf16 autocast",
        f"selective scan impl picked by auto: {scan.resolve_impl('auto', probe)}",
    ]
    rows: list[dict] = []
    for name, spec in _model_specs(smoke).items():

        def run(spec=spec):
            torch.manual_seed(0)
            model = build_model(spec, dims).to(device).train()
            opt = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-4)
            n_params = sum(p.numel() for p in model.parameters())
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            loss = _train_step(model, opt, batch, device)
            if not torch.isfinite(loss):
                raise RuntimeError(f"loss is {loss.item()}")
            bad = [
                n
                for n, p in model.named_parameters()
                if p.grad is not None and not torch.isfinite(p.grad).all()
            ]
            if bad:
                raise RuntimeError(f"non-finite gradients: {bad[:3]}")
            sec = timeit(
                lambda: _train_step(model, opt, batch, device), device, min_iters=3, min_seconds=1.0
            )
            row = {
                "status": "pass",
                "spec": json.dumps(spec),
                "params M": n_params / 1e6,
                "step ms": 1e3 * sec,
                "windows/s": b / sec,
                "loss": loss.item(),
            }
            if device.type == "cuda":
                row["peak GiB"] = torch.cuda.max_memory_allocated(device) / 2**30
            else:
                row["peak GiB"] = NO_CUDA
            return row

        _part(rows, name, run)
    return {"rows": rows, "notes": notes}


# ------------------------------------------------------------------ c. encoders


def real_size_models(work: Path, smoke: bool) -> tuple[dict[str, str], str]:
    """Folders of DINOv2 and WavLM (random weights): real sizes, or tiny ones for the smoke run.

    Real sizes come from `write_tiny_models(size="base")`: the published DINOv2-base and
    WavLM-base-plus architectures and preprocessor configs, with random weights."""
    out = work / ("models_tiny" if smoke else "models_base")
    done = out / "done.json"
    if done.exists():
        info = json.loads(done.read_text())
        return info["paths"], info["how"]
    from extract import tiny_models

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if smoke:
        paths = tiny_models.write_tiny_models(out, ("dinov2", "wavlm"), size="test")
        how = "tiny test models (extract.tiny_models, size test)"
    else:
        paths = tiny_models.write_tiny_models(out, ("dinov2", "wavlm"), size="base")
        how = "extract.tiny_models size base"
    done.write_text(json.dumps({"paths": paths, "how": how}))
    return paths, how


def _flops(fn: Callable[[], Any]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def section_encoders(smoke: bool, device, work: Path) -> dict:
    import torch
    from transformers import Dinov2Model, WavLMModel

    paths, how = real_size_models(work, smoke)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    peak = peak_tflops(name) if device.type == "cuda" else None
    notes = [
        f"models: {how}",
        f"bf16 dense peak for {name or 'this device'}: "
        + (f"{peak:g} TFLOP/s" if peak else "unknown"),
        "FLOPs per item counted by torch.utils.flop_counter on one item (a multiply-add is 2)",
    ]
    rows: list[dict] = []

    def measure(model, make_input, items_per_call: float, unit: str) -> dict:
        model = model.to(device).eval()
        x = make_input()
        one = make_input(1)

        def fwd(inp=x):
            with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
                return model(inp)

        def plain():  # counted in float32 without inference_mode: same FLOPs, and
            with torch.no_grad():  # weight-norm parametrisations fail under the counter there
                return model(one)

        flops = _flops(plain) / (1 if unit == "frames" else one.shape[-1] / 16000)
        sec = timeit(fwd, device, min_iters=3, min_seconds=1.0)
        rate = items_per_call / sec
        achieved = flops * rate / 1e12
        return {
            "status": "pass",
            f"{unit}/s": rate,
            "GFLOP per item": flops / 1e9,
            "TFLOP/s": achieved,
            "of peak": (achieved / peak) if peak else "unknown",
            "batch": x.shape[0],
        }

    side = 56 if smoke else 224
    n_img = 2 if smoke else 128
    _part(
        rows,
        "DINOv2 frames (224 px)" if not smoke else "DINOv2 tiny frames",
        lambda: measure(
            Dinov2Model.from_pretrained(paths["dinov2"]),
            lambda n=n_img: torch.randn(n, 3, side, side, device=device),
            n_img,
            "frames",
        ),
    )
    seconds, n_clip = (1.0, 1) if smoke else (10.0, 16)
    _part(
        rows,
        "WavLM audio (s of audio)" if not smoke else "WavLM tiny audio",
        lambda: measure(
            WavLMModel.from_pretrained(paths["wavlm"]),
            lambda n=n_clip: torch.randn(n, int(seconds * 16000), device=device),
            n_clip * seconds,
            "seconds",
        ),
    )
    return {"rows": rows, "notes": notes}


# ------------------------------------------------------------------ d. extraction bench


def section_extract(smoke: bool, device, work: Path) -> dict:
    py = sys.executable
    paths, how = real_size_models(work, smoke)
    data = work / "extract_data"
    frames = 10 if smoke else 150
    deadline = time.monotonic() + (SMOKE_LIMIT_S if smoke else LIMITS_S["extract"]) - 10

    def sh(cmd: list[str]) -> str:
        left = max(5.0, deadline - time.monotonic())
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=left, cwd=ROOT)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[2:5])} exited {res.returncode}: {res.stderr[-800:]}")
        return res.stdout

    if not (data / "m.parquet").exists():
        sh(
            [
                py,
                "-m",
                "data_manifest",
                "synth",
                "--out",
                str(data / "synth"),
                "--tracks",
                "1",
                "--frames",
                str(frames),
                "--seed",
                "0",
                "--overwrite",
            ]
        )
        sh(
            [
                py,
                "-m",
                "data_manifest",
                "affwild2",
                "--root",
                str(data / "synth"),
                "--out",
                str(data / "m.parquet"),
            ]
        )
    setups = {"video, DINOv2 + WavLM": []}
    if not smoke:
        setups["video, DINOv2 + WavLM, detector every 5 frames"] = ["--detect-every", "5"]
    rows: list[dict] = []
    for label, extra in setups.items():

        def run(extra=extra):
            out = sh(
                [
                    py,
                    "-m",
                    "extract",
                    "bench",
                    "--manifest",
                    str(data / "m.parquet"),
                    "--json",
                    "--device",
                    device.type,
                    "--batch-size",
                    "32",
                    "--visual",
                    f"dinov2={paths['dinov2']}",
                    "--audio",
                    f"wavlm={paths['wavlm']}",
                    "--visual-input",
                    "video",
                    *extra,
                ]
            )
            r = json.loads(out)
            return {
                "status": "pass",
                "frames": r["frames"],
                "end-to-end fps": r["end_to_end_fps"],
                "encoder-only fps": r["encoder_only_fps"],
                "ratio": r["ratio"],
            }

        _part(rows, label, run)
    notes = [
        f"models: {how}; one synthetic track of {frames} frames (data_manifest synth)",
        "ratio = end-to-end fps / encoder-only fps; the goal on a GPU at real sizes is >= 0.7",
    ]
    return {"rows": rows, "notes": notes}


# ------------------------------------------------------------------ e. DDP


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def section_ddp(smoke: bool, device, work: Path) -> dict:
    import torch
    import torch.distributed as dist

    from train.models import build_model
    from train.optim import param_groups

    backend = "nccl" if device.type == "cuda" else "gloo"
    notes = [f"backend {backend}, world size 1, tcp://127.0.0.1 on a free port"]
    if device.type != "cuda":
        notes.append(f"NCCL: {NO_CUDA}; the same step runs on gloo on the CPU")
    rows: list[dict] = []

    def run():
        if device.type == "cuda":
            torch.cuda.set_device(device)
            os.environ.setdefault("NCCL_SOCKET_IFNAME", "lo")  # one process: loopback is enough
        dist.init_process_group(
            backend,
            init_method=f"tcp://127.0.0.1:{_free_port()}",
            rank=0,
            world_size=1,
            timeout=dt.timedelta(seconds=60),
        )
        try:
            dims = _real_dims(smoke)
            b, t = (2, 8) if smoke else (8, 64)
            batch = _batch(dims, b, t, device)
            torch.manual_seed(0)
            model = build_model(_model_specs(smoke)["hga_agssm"], dims).to(device).train()
            ddp = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index or 0] if device.type == "cuda" else None
            )
            opt = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-4)
            loss = _train_step(ddp, opt, batch, device)
            probe = torch.full((4,), 3.0, device=device)
            dist.all_reduce(probe)
            if not torch.equal(probe.cpu(), torch.full((4,), 3.0)):
                raise RuntimeError(f"all_reduce over one process changed the tensor: {probe}")
            sec = timeit(lambda: _train_step(ddp, opt, batch, device), device, min_iters=3)
            return {"status": "pass", "loss": loss.item(), "step ms": 1e3 * sec, "backend": backend}
        finally:
            dist.destroy_process_group()

    _part(rows, "hga_agssm DDP step", run)
    return {"rows": rows, "notes": notes}


# ------------------------------------------------------------------ f. loader


def section_loader(smoke: bool, device, work: Path) -> dict:
    out = work / "loader.md"
    # The smoke run only checks that the benchmark starts (its own timings take a while).
    cmd = [sys.executable, "-m", "bench.bench_loader"]
    # --quick: the real feature sizes in about a minute; the JSON keeps every figure
    cmd += (
        ["--help"] if smoke else ["--quick", "--json", str(work / "loader.json"), "--out", str(out)]
    )
    limit = (SMOKE_LIMIT_S if smoke else LIMITS_S["loader"]) - 10
    rows: list[dict] = []

    def run():
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, cwd=ROOT)
        except subprocess.TimeoutExpired as e:
            tail = (e.stdout or b"")[-1500:]
            tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
            raise RuntimeError(f"timed out after {limit} s; output so far: {tail}") from None
        row = {
            "status": "pass" if res.returncode == 0 else "fail",
            "exit": res.returncode,
            "output": (res.stdout[-3000:] + ("\n" + res.stderr[-1500:] if res.returncode else "")),
        }
        if out.exists():
            row["report"] = out.read_text()[-4000:]
        if res.returncode:
            row["error"] = f"exited {res.returncode}"
        return row

    _part(rows, "bench_loader " + " ".join(cmd[3:]), run)
    notes = ["run as a subprocess; its printed output is kept"]
    if smoke:
        notes.append("smoke run: only `--help`, to check that the benchmark starts")
    return {"rows": rows, "notes": notes}


SECTIONS: dict[str, Callable[[bool, Any, Path], dict]] = {
    "scan": section_scan,
    "train_step": section_train_step,
    "encoders": section_encoders,
    "extract": section_extract,
    "ddp": section_ddp,
    "loader": section_loader,
}


# ------------------------------------------------------------------ driver


def _version(dist_name: str) -> str | None:
    try:
        return importlib.metadata.version(dist_name)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    import torch

    env: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "torch": torch.__version__,
        "cuda (torch built with)": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "transformers": _version("transformers"),
        "mamba-ssm": _version("mamba-ssm") or _version("mamba_ssm"),
        "device": "cpu",
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env["device"] = torch.cuda.get_device_name(0)
        env["device memory GiB"] = round(props.total_memory / 2**30, 1)
        env["compute capability"] = f"{props.major}.{props.minor}"
        env["bf16 dense peak TFLOP/s"] = peak_tflops(env["device"]) or "unknown"
        try:
            env["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout.strip()
        except Exception as e:
            env["driver"] = f"unknown ({type(e).__name__})"
    return env


def run_section(name: str, smoke: bool, work: Path) -> dict:
    """Run one section here (in the child process); never raises."""
    global QUICK
    QUICK = smoke
    t0 = time.perf_counter()
    try:
        result = SECTIONS[name](smoke, _device(), work)
        statuses = [r.get("status", "pass") for r in result.get("rows", [])]
        if any(s == "fail" for s in statuses):
            status = "fail"
        elif statuses and all(str(s).startswith("skipped") for s in statuses):
            status = statuses[0]
        else:
            status = "pass"
        result["status"] = status
    except Skip as e:
        result = {"status": f"skipped: {e}", "rows": [], "notes": []}
    except Exception as e:
        result = {
            "status": "fail",
            "rows": [],
            "notes": [],
            "error": f"{type(e).__name__}: {e}\n{traceback.format_exc()[-2000:]}",
        }
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def _spawn(name: str, smoke: bool, work: Path, limit: float) -> dict:
    """Run a section in a subprocess with a time limit; its crash or hang is its result."""
    result_path = work / f"{name}.result.json"
    cmd = [
        sys.executable,
        "-m",
        "bench.gpu_check",
        "--section",
        name,
        "--work",
        str(work),
        "--result",
        str(result_path),
    ]
    if smoke:
        cmd.append("--smoke")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    t0 = time.perf_counter()
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, cwd=ROOT, env=env)
        rc, stderr = res.returncode, res.stderr
    except subprocess.TimeoutExpired as e:
        stderr = (
            e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        )
        return {
            "status": "fail",
            "rows": [],
            "notes": [],
            "error": f"timed out after {limit:.0f} s\n{stderr[-1500:]}",
            "seconds": round(time.perf_counter() - t0, 1),
        }
    if result_path.exists():
        result = json.loads(result_path.read_text())
        if stderr.strip() and result.get("status") == "fail":
            result["stderr"] = stderr[-2000:]
        return result
    return {
        "status": "fail",
        "rows": [],
        "notes": [],
        "error": f"the section's process exited {rc} without a result\n{stderr[-2000:]}",
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        if v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e5):
            return f"{v:.2e}"
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v).replace("|", "/").replace("\n", " ")


def render(report: dict[str, Any]) -> str:
    lines = ["# GPU check", "", f"Command: `{report['command']}`", ""]
    lines += [f"- {k}: {v}" for k, v in report["environment"].items()]
    lines += ["", "| section | status | seconds |", "|---|---|---|"]
    for name, sec in report["sections"].items():
        lines.append(f"| {SECTION_TITLES[name]} | {sec['status']} | {sec.get('seconds', '')} |")
    for name, sec in report["sections"].items():
        lines += ["", f"## {SECTION_TITLES[name]}", "", f"Status: **{sec['status']}**", ""]
        lines += [f"- {n}" for n in sec.get("notes", [])]
        rows = sec.get("rows", [])
        long_keys = ("output", "report", "error")
        table_rows = [{k: v for k, v in r.items() if k not in long_keys} for r in rows]
        cols: list[str] = []
        for r in table_rows:
            cols += [k for k in r if k not in cols]
        if cols:
            lines += ["", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            for r in table_rows:
                lines.append("| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |")
        for r in rows:
            for k in long_keys:
                if r.get(k):
                    lines += ["", f"{r['case']}, {k}:", "", "```", str(r[k]).rstrip(), "```"]
        if sec.get("error"):
            lines += ["", "Error:", "", "```", sec["error"].rstrip(), "```"]
        if sec.get("stderr"):
            lines += ["", "stderr (tail):", "", "```", sec["stderr"].rstrip(), "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="every section at tiny sizes on the CPU")
    ap.add_argument("--out", default=str(HERE / "results"), help="folder for gpu.md and gpu.json")
    ap.add_argument("--only", default="", help="comma-separated sections (default: all)")
    ap.add_argument("--section", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.section:  # the child: one section, its result as JSON
        if args.smoke:
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
        result = run_section(args.section, args.smoke, Path(args.work))
        Path(args.result).write_text(json.dumps(result, default=str))
        return 0

    from data_manifest.shared_files import write_text_atomic

    names = [n for n in args.only.split(",") if n] or list(SECTIONS)
    unknown = set(names) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown section(s) {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    if args.smoke:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    argv_s = " ".join(argv if argv is not None else sys.argv[1:])
    report: dict[str, Any] = {
        "command": f"python -m bench.gpu_check {argv_s}".strip(),
        "mode": "smoke" if args.smoke else "real",
        "environment": environment(),
        "sections": {},
    }
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="auwild-gpu-check-") as work:
        for name in names:
            left = TOTAL_BUDGET_S - (time.monotonic() - start)
            limit = SMOKE_LIMIT_S if args.smoke else min(LIMITS_S[name], left)
            if not args.smoke and limit < 10:
                report["sections"][name] = {
                    "status": "skipped: the check's time budget is spent",
                    "rows": [],
                    "notes": [],
                }
                continue
            print(f"[gpu_check] {name} (limit {limit:.0f} s)", flush=True)
            report["sections"][name] = _spawn(name, args.smoke, Path(work), limit)
            print(f"[gpu_check] {name}: {report['sections'][name]['status']}", flush=True)
            # each completed section is on disk at once, in case the session ends early
            write_text_atomic(out / "gpu.json", json.dumps(report, indent=1, default=str) + "\n")
            write_text_atomic(out / "gpu.md", render(report))
    report["seconds"] = round(time.monotonic() - start, 1)
    write_text_atomic(out / "gpu.json", json.dumps(report, indent=1, default=str) + "\n")
    write_text_atomic(out / "gpu.md", render(report))
    print(f"[gpu_check] wrote {out / 'gpu.md'} in {report['seconds']} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
