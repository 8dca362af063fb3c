"""Selective scan benchmark: the vectorised `torch` impl against the `ref` loop on CPU.

    python -m bench.bench_scan [--threads 2 --repeats 3 --sizes 8x256x16x512,2x64x16x128]

Times forward and forward+backward (min over repeats) for float32 inputs with D, z, delta_bias
and softplus (the AG-SSM call), checks the two agree, and writes a markdown table to stdout and
to bench/results/scan.md. Sizes are batch x dim x state x length.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import torch

from train.models.scan import selective_scan

DEFAULT_SIZES = "8x256x16x512,8x256x16x128,2x64x16x512,2x64x16x64"


def _inputs(batch: int, dim: int, state: int, length: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)

    def leaf(t: torch.Tensor) -> torch.Tensor:
        return t.requires_grad_()

    return dict(
        u=leaf(torch.randn(batch, dim, length, generator=g)),
        delta=leaf(torch.randn(batch, dim, length, generator=g) * 0.5),
        A=leaf(-torch.arange(1, state + 1, dtype=torch.float32).repeat(dim, 1)),
        B=leaf(torch.randn(batch, state, length, generator=g)),
        C=leaf(torch.randn(batch, state, length, generator=g)),
        D=leaf(torch.ones(dim)),
        z=leaf(torch.randn(batch, dim, length, generator=g)),
        delta_bias=leaf(torch.randn(dim, generator=g) * 0.1),
    )


def _time(impl: str, inp: dict, repeats: int) -> tuple[float, float, torch.Tensor]:
    """(forward s, forward+backward s, output), each the minimum over repeats."""
    fwd, total, out = float("inf"), float("inf"), None
    for _ in range(repeats):
        for t in inp.values():
            t.grad = None
        t0 = time.perf_counter()
        out = selective_scan(**inp, delta_softplus=True, impl=impl)
        t1 = time.perf_counter()
        out.square().mean().backward()
        t2 = time.perf_counter()
        fwd, total = min(fwd, t1 - t0), min(total, t2 - t0)
    return fwd, total, out.detach()


def run(sizes: list[tuple[int, int, int, int]], repeats: int, ref_repeats: int) -> list[dict]:
    rows = []
    for batch, dim, state, length in sizes:
        inp = _inputs(batch, dim, state, length)
        _time("torch", inp, 1)  # warm-up
        t_fwd, t_all, t_out = _time("torch", inp, repeats)
        t_grad = inp["u"].grad.clone()
        r_fwd, r_all, r_out = _time("ref", inp, ref_repeats)
        rows.append(
            dict(
                size=f"{batch}x{dim}x{state}x{length}",
                torch_fwd=t_fwd,
                torch_all=t_all,
                ref_fwd=r_fwd,
                ref_all=r_all,
                out_diff=(t_out - r_out).abs().max().item(),
                grad_diff=(t_grad - inp["u"].grad).abs().max().item(),
            )
        )
        print(f"done {rows[-1]['size']}", file=sys.stderr, flush=True)
    return rows


def to_markdown(rows: list[dict], command: str, threads: int) -> str:
    lines = [
        "## Selective scan (CPU)",
        "",
        f"`{command}` — torch {torch.__version__}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, {threads} torch threads; float32, with D, z, delta_bias, "
        "softplus; min over repeats. Size = batch x dim x state x length. "
        f"Load average at the end: {os.getloadavg()[0]:.1f} (shared machine: ratios are "
        "the figure to read, absolute times move with the load).",
        "",
        "| size | ref fwd ms | torch fwd ms | fwd x | ref fwd+bwd ms | torch fwd+bwd ms "
        "| fwd+bwd x | max abs diff out / grad u |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['ref_fwd'] * 1e3:.1f} | {r['torch_fwd'] * 1e3:.1f} "
            f"| {r['ref_fwd'] / r['torch_fwd']:.1f} | {r['ref_all'] * 1e3:.1f} "
            f"| {r['torch_all'] * 1e3:.1f} | {r['ref_all'] / r['torch_all']:.1f} "
            f"| {r['out_diff']:.1e} / {r['grad_diff']:.1e} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of the torch impl")
    parser.add_argument("--ref-repeats", type=int, default=2, help="timed runs of the ref loop")
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="comma list of BxDxNxL")
    parser.add_argument("--out", default="bench/results/scan.md", help="markdown output")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    rows = run(sizes, args.repeats, args.ref_repeats)
    command = "python -m bench.bench_scan" + (
        " " + " ".join(argv if argv is not None else sys.argv[1:])
        if (argv if argv is not None else sys.argv[1:])
        else ""
    )
    text = to_markdown(rows, command, args.threads)
    print(text)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
