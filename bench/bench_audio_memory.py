"""Audio extraction memory: a 15-minute track against a 1-minute one, per encoder.

    python -m bench.bench_audio_memory [--minutes 1 15] [--device cpu]
        [--wavlm DIR_OR_ID] [--whisper DIR_OR_ID]

Writes a synthetic AAC (.m4a, 44.1 kHz stereo) track per duration with PyAV, then for
each encoder runs decode -> encode (in windows) -> pool onto 25 fps frame times in a
fresh process and reports its peak RSS. What must grow with the track is the data
itself: the 16 kHz samples, the native-rate features and the per-frame output. The
"working set" column is peak RSS growth after loading minus that data; flat memory means
it does not grow with the duration. Without --wavlm/--whisper, tiny random models
(same code path, `from_pretrained` on a local folder) are built in a temporary folder.
Results go to bench/results/audio_memory.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from extract.tiny_models import write_tiny_models

HERE = Path(__file__).resolve().parent
ENCODERS = ("logmel", "wavlm", "whisper")
FPS = 25.0


def write_track(path: Path, minutes: float, rate: int = 44100) -> None:
    """Noise at varying level with 1 kHz bursts, encoded to AAC chunk by chunk (flat memory)."""
    import fractions

    import av

    rng = np.random.default_rng(0)
    n_total = int(minutes * 60 * rate)
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=rate)
        s.layout = "stereo"
        step = s.codec_context.frame_size or 1024
        tb = fractions.Fraction(1, rate)
        for start in range(0, n_total, step):
            n = min(step, n_total - start)
            t = (start + np.arange(n)) / rate
            level = 0.05 + 0.04 * np.sin(2 * np.pi * t / 7.0)
            x = level * rng.standard_normal(n) + 0.3 * np.sin(2 * np.pi * 1000 * t) * (t % 5 < 1)
            arr = np.tile(x.astype(np.float32)[None], (2, 1))  # (2, n) planar stereo
            frame = av.AudioFrame.from_ndarray(arr, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, tb
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb() -> float:
    return _status_mb("VmRSS")


def _peak_mb() -> float:
    """Peak RSS of this process. VmHWM, not ru_maxrss: the latter survives fork + exec, so a
    worker would inherit the parent's peak; VmHWM belongs to this process's own memory."""
    peak = _status_mb("VmHWM")
    if peak != peak:  # not Linux: fall back to getrusage (KiB on Linux, bytes on macOS)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return peak


def worker(audio: str, encoder: str, source: str | None, device: str) -> dict:
    """One measurement in this process: load, decode, encode, pool; peak RSS in MiB."""
    import av  # noqa: F401  (imports and first-call set-up are not part of the working set)
    import soxr  # noqa: F401

    from extract.audio_align import pool_to_frames
    from extract.audio_decode import AudioTrack, load_audio
    from extract.encoders import load_audio_encoder

    enc = load_audio_encoder(encoder, source, device=device)
    warm = np.random.default_rng(0).standard_normal(2 * 16000).astype(np.float32)  # 2 s
    pool_to_frames(*enc.encode(AudioTrack(warm)), np.arange(50) / FPS)
    after_load = _rss_mb()
    t0 = time.perf_counter()
    track = load_audio(audio, cache=False)
    t_decode = time.perf_counter() - t0
    t0 = time.perf_counter()
    feats, starts, ends = enc.encode(track)
    t_encode = time.perf_counter() - t0
    times = np.arange(int(track.duration * FPS)) / FPS + track.start  # (T,)
    pooled, covered = pool_to_frames(feats, starts, ends, times)
    data = track.samples.nbytes + feats.nbytes + starts.nbytes + ends.nbytes + pooled.nbytes
    peak = _peak_mb()
    return {
        "encoder": encoder,
        "duration_s": round(track.duration, 1),
        "valid": track.valid,
        "n_features": int(feats.shape[0]),
        "n_frames": int(pooled.shape[0]),
        "covered": float(covered.mean()),
        "rss_after_load_mb": round(after_load, 1),
        "peak_rss_mb": round(peak, 1),
        "data_mb": round(data / 2**20, 1),
        "working_set_mb": round(peak - after_load - data / 2**20, 1),
        "decode_s": round(t_decode, 2),
        "encode_s": round(t_encode, 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, nargs="+", default=[1.0, 15.0])
    ap.add_argument("--encoders", nargs="+", default=list(ENCODERS), choices=ENCODERS)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--wavlm", default=None, help="hub id or folder (default: tiny random)")
    ap.add_argument("--whisper", default=None, help="hub id or folder (default: tiny random)")
    ap.add_argument("--out", default=str(HERE / "results" / "audio_memory.md"))
    ap.add_argument(
        "--worker", nargs=3, metavar=("AUDIO", "ENCODER", "SOURCE"), help=argparse.SUPPRESS
    )
    args = ap.parse_args(argv)
    if args.worker:
        audio, encoder, source = args.worker
        print(json.dumps(worker(audio, encoder, None if source == "-" else source, args.device)))
        return 0

    rows = []
    with tempfile.TemporaryDirectory(prefix="auwild-bench-audio-") as tmp:
        tmp = Path(tmp)
        sources = {"logmel": None, "wavlm": args.wavlm, "whisper": args.whisper}
        if not (args.wavlm and args.whisper):
            tiny = write_tiny_models(tmp / "models", ("wavlm", "whisper"))
            sources = {k: v or tiny.get(k) for k, v in sources.items()}
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        for minutes in args.minutes:
            audio = tmp / f"track_{minutes:g}min.m4a"
            t0 = time.perf_counter()
            write_track(audio, minutes)
            print(f"wrote {minutes:g} min track in {time.perf_counter() - t0:.1f} s", flush=True)
            for encoder in args.encoders:
                cmd = [sys.executable, "-m", "bench.bench_audio_memory", "--device", args.device]
                cmd += ["--worker", str(audio), encoder, sources[encoder] or "-"]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                row["minutes"] = minutes
                print(json.dumps(row), flush=True)
                rows.append(row)
    write_markdown(rows, args, Path(args.out))
    return 0


def write_markdown(rows: list[dict], args, out: Path) -> None:
    cols = [
        "encoder",
        "minutes",
        "n_features",
        "n_frames",
        "rss_after_load_mb",
        "peak_rss_mb",
        "data_mb",
        "working_set_mb",
        "decode_s",
        "encode_s",
    ]
    lines = [
        "# Audio extraction memory (decode -> encode in windows -> pool to 25 fps frames)",
        "",
        "Command: `OMP_NUM_THREADS=1 python -m bench.bench_audio_memory "
        + " ".join(
            ["--minutes", *[f"{m:g}" for m in args.minutes], "--device", args.device]
            + (["--wavlm", args.wavlm] if args.wavlm else [])
            + (["--whisper", args.whisper] if args.whisper else [])
        )
        + "`",
        "",
        f"Models: wavlm = {args.wavlm or 'tiny random (hidden 32, 2 layers)'}, "
        f"whisper = {args.whisper or 'tiny random (d_model 32, 2 encoder layers)'}; "
        f"device {args.device}; each row is a fresh process. Audio: synthetic AAC 44.1 kHz "
        "stereo. `data_mb` is what must scale with the track (16 kHz samples, native-rate "
        "features, pooled frames); `working_set_mb` = peak RSS - RSS after model load - "
        "data_mb, the part that must stay flat.",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for r in rows:
        lines.append("| " + " | ".join(str(r[c]) for c in cols) + " |")
    lines += ["", "Working set, shortest -> longest track (flat means it does not grow):", ""]
    for enc in dict.fromkeys(r["encoder"] for r in rows):
        mine = sorted((r for r in rows if r["encoder"] == enc), key=lambda r: r["minutes"])
        lines.append(
            f"- {enc}: "
            + " -> ".join(f"{r['working_set_mb']} MiB ({r['minutes']:g} min)" for r in mine)
            + f"; peak RSS {mine[0]['peak_rss_mb']} -> {mine[-1]['peak_rss_mb']} MiB"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    raise SystemExit(main())
