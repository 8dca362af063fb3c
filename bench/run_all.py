"""`make bench`: run every benchmark, then gather their tables into bench/RESULTS.md.

Each benchmark writes its own markdown table (with the command that produced it) to
bench/results/<name>.md; this file only runs them and concatenates the tables.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = (
    "bench.bench_scan",
    "bench.bench_store",
    "bench.bench_loader",
    "bench.bench_audio_memory",
    "bench.bench_extract",
    "bench.proving_ground",
    "bench.proving_ground_abaw8",
    "bench.window_length",
)

HEADER = """# Benchmark results

Every figure is a ratio or a measurement taken in one run on one machine, with the command
that produced it. `make bench` re-runs all of them and rewrites this file from
`bench/results/*.md`.
"""


def gather() -> str:
    parts = [HEADER]
    for path in sorted((HERE / "results").glob("*.md")):
        # links written relative to bench/results/ point one folder up from bench/RESULTS.md
        text = path.read_text().strip().replace("](../../", "](../")
        # a file beside the table (a plot) is in results/ as seen from bench/RESULTS.md
        text = re.sub(r"\]\(([\w.-]+\.(?:png|csv|md))\)", r"](results/\1)", text)
        parts.append(text + "\n")
    text = "\n".join(parts)
    (HERE / "RESULTS.md").write_text(text)
    return text


def main() -> int:
    failed = []
    for module in BENCHMARKS:
        print(f"\n=== {module}", flush=True)
        t0 = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", module])
        print(f"=== {module}: exit {code} in {time.perf_counter() - t0:.0f} s", flush=True)
        if code:
            failed.append(module)
    gather()
    print(f"\nwrote {HERE / 'RESULTS.md'}")
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
