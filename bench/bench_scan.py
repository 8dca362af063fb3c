"""Selective scan benchmark on the CPU: the `ref` loop, the vectorised `torch` scan and the
`fused` C++ kernel, timed in one run, with the memory and exp floor of the fused kernel.

    python -m bench.bench_scan [--threads 2 --repeats 3 --sizes 8x256x16x512,2x64x16x128]

Times forward and forward+backward (min over repeats) for float32 inputs with D, z, delta_bias
and softplus (the AG-SSM call), checks each against `ref`, and for the first size measures the
floor: the bytes the kernel must move and the exps it must compute each way, against this
machine's copy bandwidth and exp rate measured in the same run. Writes a markdown report to
stdout and to bench/results/scan.md; any text in that file below the KEEP marker line is kept.
Sizes are batch x dim x state x length.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import torch

from train.models import scan_fused
from train.models.scan import selective_scan

DEFAULT_SIZES = "8x256x16x512,8x256x16x128,2x64x16x512,2x64x16x64"
IMPLS = ("ref", "torch", "fused")
KEEP = "<!-- kept by hand below this line: bench_scan leaves it as it is -->"
MIB = 1 << 20


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


def _time(impl: str, inp: dict, repeats: int) -> tuple[float, float, torch.Tensor, torch.Tensor]:
    """(forward s, forward+backward s, output, grad of u), times the minimum over repeats."""
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
    return fwd, total, out.detach(), inp["u"].grad.clone()


def _best(fn, repeats: int) -> tuple[float, float]:
    """(wall s, CPU s of all threads of this process), each the minimum over repeats. On a
    loaded machine CPU time is the steadier figure: it does not count time spent waiting."""
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return wall, cpu


def run(sizes, repeats: int, ref_repeats: int) -> list[dict]:
    rows = []
    for batch, dim, state, length in sizes:
        inp = _inputs(batch, dim, state, length)
        row = dict(size=f"{batch}x{dim}x{state}x{length}")
        for impl in IMPLS:
            n = ref_repeats if impl == "ref" else repeats
            if impl != "ref":
                _time(impl, inp, 1)  # warm-up (and the fused kernel's build or load)
            row[f"{impl}_fwd"], row[f"{impl}_all"], row[f"{impl}_out"], row[f"{impl}_gu"] = _time(
                impl, inp, n
            )
        for impl in ("torch", "fused"):
            row[f"{impl}_diff"] = (
                (row[f"{impl}_out"] - row["ref_out"]).abs().max().item(),
                (row[f"{impl}_gu"] - row["ref_gu"]).abs().max().item(),
            )
        rows.append(row)
        print(f"done {row['size']}", file=sys.stderr, flush=True)
    return rows


def floor(batch: int, dim: int, state: int, length: int, repeats: int) -> dict:
    """What the fused kernel cannot avoid at this size, and what this machine does per second.

    Bytes: the kernel's own reads and writes (float32). Forward reads u, delta (batch, dim, L)
    and B, C (batch, state, L), writes y and the last state. Backward reads u, delta, grad_y,
    B, C, writes grad u, grad delta, and the per-row/per-chunk dA, dB, dC. The per-channel
    (L, state) buffers of decays and states stay in cache. Exps: one per (batch, dim, state, L)
    element each way (the backward recomputes the decays instead of storing them).
    The torch path's (L, batch, dim, state) work tensor is given for scale: one elementwise
    pass over it reads and writes it once.
    """
    f = 4
    act, bc = batch * dim * length * f, batch * state * length * f
    chunks = scan_fused._chunks(batch, dim, torch.get_num_threads())
    fwd_bytes = 2 * act + 2 * bc + act + batch * dim * state * f
    bwd_bytes = 3 * act + 2 * bc + 2 * act + batch * dim * state * f + 2 * chunks * bc
    exps = batch * dim * state * length
    work = exps * f

    big = torch.rand(work // f)
    dst = torch.empty_like(big)
    t_pass = _best(lambda: dst.copy_(big), repeats)  # one read + one write of the work tensor
    small = torch.rand(1 << 18)  # 1 MiB, cache-resident: the exp rate without the memory
    small_out = torch.empty_like(small)
    reps = max(1, exps // small.numel())
    t_exp = _best(lambda: [torch.exp(small, out=small_out) for _ in range(reps)], repeats)

    inp = _inputs(batch, dim, state, length)
    u, delta = (inp[k].detach().contiguous() for k in ("u", "delta"))
    A = inp["A"].detach().contiguous()
    B, C = (inp[k].detach()[:, None].transpose(-1, -2).contiguous() for k in ("B", "C"))
    with torch.enable_grad():
        leaves = [t.requires_grad_() for t in (u, delta, A, B, C)]
        y, last = scan_fused.FusedScanFn.apply(*leaves)
    grad_y = torch.randn_like(y)
    t_kfwd = _best(lambda: scan_fused.FusedScanFn.apply(u, delta, A, B, C), repeats)
    t_kbwd = _best(lambda: torch.autograd.grad(y, leaves, grad_y, retain_graph=True), repeats)
    return dict(
        fwd_bytes=fwd_bytes,
        bwd_bytes=bwd_bytes,
        exps=exps,
        reps_exps=reps * small.numel(),
        work=work,
        t_pass=t_pass,
        t_exp=t_exp,
        t_kfwd=t_kfwd,
        t_kbwd=t_kbwd,
    )


def to_markdown(rows: list[dict], fl: dict, command: str, threads: int, load: str) -> str:
    lines = [
        "## Selective scan (CPU)",
        "",
        f"`{command}` — torch {torch.__version__}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, {threads} torch threads; float32, with D, z, delta_bias, "
        "softplus; min over repeats; all three in one run. Size = batch x dim x state x length. "
        f"Load (`uptime`) at the end: {load} — a shared machine: the ratios are the figure to "
        "read, absolute times move with the load. `fused` is the C++ kernel "
        "(`train/models/scan_fused.py`), `x` is ref time / impl time.",
        "",
        "| size | ref fwd ms | torch fwd ms | fused fwd ms | ref fwd+bwd ms | torch fwd+bwd ms "
        "| fused fwd+bwd ms | torch x (fwd / fwd+bwd) | fused x (fwd / fwd+bwd) "
        "| max abs diff to ref, out / grad u: torch; fused |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = {i: (r["ref_fwd"] / r[f"{i}_fwd"], r["ref_all"] / r[f"{i}_all"]) for i in IMPLS}
        lines.append(
            f"| {r['size']} | {r['ref_fwd'] * 1e3:.1f} | {r['torch_fwd'] * 1e3:.1f} "
            f"| {r['fused_fwd'] * 1e3:.1f} | {r['ref_all'] * 1e3:.1f} "
            f"| {r['torch_all'] * 1e3:.1f} | {r['fused_all'] * 1e3:.1f} "
            f"| {ratio['torch'][0]:.1f} / {ratio['torch'][1]:.1f} "
            f"| {ratio['fused'][0]:.1f} / {ratio['fused'][1]:.1f} "
            f"| {r['torch_diff'][0]:.1e} / {r['torch_diff'][1]:.1e}; "
            f"{r['fused_diff'][0]:.1e} / {r['fused_diff'][1]:.1e} |"
        )
    if fl:
        # Floors in wall and in CPU seconds: bytes over this run's copy rate, exps over its
        # exp rate; the kernel is compared with the larger of the two, in the same unit.
        def floor_of(nbytes, k):
            mem = nbytes / (2 * fl["work"]) * fl["t_pass"][k]
            exp = fl["exps"] / (fl["reps_exps"]) * fl["t_exp"][k]
            return mem, exp

        lines += [
            "",
            f"### Floor of the fused kernel at {rows[0]['size']} (same run)",
            "",
            "Wall ms / CPU ms (CPU = all threads of the process, min over repeats; on a loaded "
            "machine the CPU figure is the steadier one).",
            "",
            f"- One pass over memory here: copying the torch path's (L, batch, dim, state) "
            f"work tensor ({fl['work'] / MIB:.0f} MiB read + {fl['work'] / MIB:.0f} MiB "
            f"written) takes {fl['t_pass'][0] * 1e3:.1f} / {fl['t_pass'][1] * 1e3:.1f} ms "
            f"({2 * fl['work'] / fl['t_pass'][0] / 1e9:.1f} GB/s wall).",
            f"- exp (torch.exp, vectorised, cache-resident): {fl['reps_exps'] / 1e6:.1f} M exps "
            f"in {fl['t_exp'][0] * 1e3:.1f} / {fl['t_exp'][1] * 1e3:.1f} ms.",
        ]
        for name, nbytes, t_k in (
            ("Forward", fl["fwd_bytes"], fl["t_kfwd"]),
            ("Backward", fl["bwd_bytes"], fl["t_kbwd"]),
        ):
            (mw, ew), (mc, ec) = floor_of(nbytes, 0), floor_of(nbytes, 1)
            lines.append(
                f"- {name}: {nbytes / MIB:.1f} MiB moved, {fl['exps'] / 1e6:.1f} M exps -> "
                f"floor max(memory {mw * 1e3:.1f} / {mc * 1e3:.1f} ms, "
                f"exp {ew * 1e3:.1f} / {ec * 1e3:.1f} ms); kernel "
                f"{t_k[0] * 1e3:.1f} / {t_k[1] * 1e3:.1f} ms: "
                f"{t_k[0] / max(mw, ew):.1f}x / {t_k[1] / max(mc, ec):.1f}x the floor."
            )
        lines.append(
            "- The rest of a fused fwd+bwd call is the elementwise work around the kernel "
            "(bias, softplus, D, silu(z), B and C to time-major, and their gradients): passes "
            "over (batch, dim, L) tensors, each 1/state the size of the work tensor."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of torch and fused")
    parser.add_argument("--ref-repeats", type=int, default=2, help="timed runs of the ref loop")
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="comma list of BxDxNxL")
    parser.add_argument("--out", default="bench/results/scan.md", help="markdown output")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not scan_fused.available():
        print("the fused scan kernel did not build; see the warning above", file=sys.stderr)
        return 1
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    rows = run(sizes, args.repeats, args.ref_repeats)
    fl = floor(*sizes[0], repeats=max(3, args.repeats))
    load = os.popen("uptime").read().strip() or f"load average {os.getloadavg()[0]:.1f}"
    cli = argv if argv is not None else sys.argv[1:]
    command = "python -m bench.bench_scan" + (" " + " ".join(cli) if cli else "")
    text = to_markdown(rows, fl, command, args.threads, load)
    print(text)
    kept = ""
    if os.path.exists(args.out):
        old = open(args.out).read()
        if KEEP in old:
            kept = "\n" + old[old.index(KEEP) :]
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text + kept)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
