"""The selective scan fused on the CPU: a small C++ kernel run along time, built at first use.

The unfused ``torch`` path makes several elementwise passes over an (L, batch, dim, state) work
tensor each way, so memory bandwidth bounds it. This kernel instead walks the recurrence along
L for one channel at a time, keeping only that channel's (state,) vector: the forward reads u,
delta, B, C once and writes y; the backward recomputes the channel's decays and states into an
(L, state) buffer that stays in cache, then runs the reverse recurrence (the same one,
backwards in time). Channels are split over threads (batch x channel chunks).

Build: `scan_cpu.cpp` beside this file is compiled with the C++ compiler (``$CXX``, else
``c++``) into torch's extension folder (`torch.utils.cpp_extension.get_default_build_root`,
under the user cache; ``TORCH_EXTENSIONS_DIR`` moves it) in a folder named by a hash of the
source, flags, compiler and CPU, so a changed source or another machine builds afresh and an
unchanged one loads in milliseconds. The library is plain C entry points loaded with ctypes (no
torch headers: the build takes seconds). It is built and loaded at most once per process; if
the build fails, one warning line says why and `library()` returns None, so ``auto`` keeps the
``torch`` path.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("scan_cpu.cpp")
ABI_VERSION = 1
# Compile with fast math (vectorised exp from glibc's libmvec) but link without it: with
# -shared, gcc before 13 would link crtfastmath.o, which flushes denormals for the whole process.
# -fopenmp: the kernel runs on the OpenMP pool torch already loaded (see scan_cpu.cpp).
COMPILE_FLAGS = ["-O3", "-march=native", "-ffast-math", "-fPIC", "-std=c++17", "-fopenmp"]
LINK_FLAGS = ["-shared", "-pthread", "-fopenmp"]
BUILD_TIMEOUT_S = 120


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "c++"))


def _cpu_name() -> str:
    """The CPU model (``-march=native`` code runs only where it was built)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def build_dir(root: str | None = None) -> Path:
    """Where this source's library lives: <root>/auwild_scan_cpu_<hash of source, flags, CPU>."""
    if root is None:
        from torch.utils.cpp_extension import get_default_build_root

        root = get_default_build_root()
    cxx = _compiler() or "none"
    key = "\n".join(
        [SOURCE.read_text(), *COMPILE_FLAGS, *LINK_FLAGS, cxx, _cpu_name(), platform.machine()]
    )
    return Path(root) / f"auwild_scan_cpu_{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def build(root: str | None = None) -> Path:
    """The built library's path, compiling it first when it is not there yet.

    Compiles into a temporary name in the same folder and renames it into place, so processes
    building at once never load a half-written file. Raises RuntimeError when it cannot build.
    """
    target = build_dir(root) / "scan_cpu.so"
    if target.exists():
        return target
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError(f"no C++ compiler ({os.environ.get('CXX', 'c++')!r} not on PATH)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as tmp:
        obj, lib = Path(tmp) / "scan_cpu.o", Path(tmp) / "scan_cpu.so"
        for cmd in (
            [cxx, *COMPILE_FLAGS, "-c", str(SOURCE), "-o", str(obj)],
            [cxx, *LINK_FLAGS, str(obj), "-o", str(lib), "-lm"],
        ):
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
            if res.returncode != 0:
                err = (res.stderr.strip().splitlines() or ["(no output)"])[-1]
                raise RuntimeError(f"{' '.join(cmd[:2])} ... failed: {err}")
        os.replace(lib, target)
    return target


def load(path: Path) -> ctypes.CDLL:
    """Open the library and declare its entry points."""
    lib = ctypes.CDLL(str(path))
    if lib.scan_abi_version() != ABI_VERSION:
        raise RuntimeError(f"{path}: ABI version {lib.scan_abi_version()} != {ABI_VERSION}")
    p, i = ctypes.c_void_p, ctypes.c_int64
    for suffix in ("f32", "f64"):
        fwd, bwd = getattr(lib, f"scan_forward_{suffix}"), getattr(lib, f"scan_backward_{suffix}")
        fwd.argtypes, fwd.restype = [p] * 7 + [i] * 8, None
        bwd.argtypes, bwd.restype = [p] * 12 + [i] * 8, None
    return lib


@functools.lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """The kernel library, built on first use; None (with one warning) when it cannot be built."""
    try:
        return load(build())
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        log.warning("selective_scan: fused CPU kernel not built (%s); using the torch scan", exc)
        return None


def available() -> bool:
    """True when the fused kernel built and loaded (builds it on the first call)."""
    return library() is not None


_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _chunks(batch: int, dim: int, threads: int) -> int:
    """Channel chunks per batch row: enough work items for every thread, at most one per channel."""
    return max(1, min(dim, -(-threads // max(1, batch))))


class FusedScanFn(torch.autograd.Function):
    """y_t = <C_t, h_t>, h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t, by the C++ kernel.

    u, delta (batch, dim, L); A (dim, state); B, C (batch, groups, L, state), all contiguous and
    of one dtype. Returns y (batch, dim, L) and the last state (batch, dim, state).
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C):
        lib = library()
        batch, dim, length = u.shape
        state = A.shape[1]
        threads = torch.get_num_threads()
        chunks = _chunks(batch, dim, threads)
        y = u.new_empty(batch, dim, length)
        last = u.new_empty(batch, dim, state)
        getattr(lib, f"scan_forward_{_SUFFIX[u.dtype]}")(
            *map(_ptr, (u, delta, A, B, C, y, last)),
            batch, dim, length, state, B.shape[1], C.shape[1], chunks, threads,
        )  # fmt: skip
        ctx.save_for_backward(u, delta, A, B, C)
        return y, last

    @staticmethod
    def backward(ctx, grad_y, grad_last):
        lib = library()
        u, delta, A, B, C = ctx.saved_tensors
        batch, dim, length = u.shape
        state = A.shape[1]
        threads = torch.get_num_threads()
        chunks = _chunks(batch, dim, threads)
        grad_y = torch.zeros_like(u) if grad_y is None else grad_y.contiguous()
        grad_last = None if grad_last is None else grad_last.contiguous()
        grad_u, grad_delta = torch.empty_like(u), torch.empty_like(delta)
        grad_A = u.new_zeros(batch, dim, state)  # per batch row, summed below
        grad_B = u.new_zeros(batch, chunks, *B.shape[1:])  # per channel chunk, summed below
        grad_C = u.new_zeros(batch, chunks, *C.shape[1:])
        getattr(lib, f"scan_backward_{_SUFFIX[u.dtype]}")(
            *map(_ptr, (u, delta, A, B, C, grad_y, grad_last)),
            *map(_ptr, (grad_u, grad_delta, grad_A, grad_B, grad_C)),
            batch, dim, length, state, B.shape[1], C.shape[1], chunks, threads,
        )  # fmt: skip
        return grad_u, grad_delta, grad_A.sum(0), grad_B.sum(1), grad_C.sum(1)
