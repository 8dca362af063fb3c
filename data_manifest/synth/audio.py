"""Speech-like sound for the synthetic videos: voiced syllables while a face speaks, plus distractors.

A voice is a few harmonics of a wandering pitch, shaped by two formants, its loudness
following the syllable modulation that also opens the lips (AU25); loud stretches,
where the jaw drops (AU26), are louder with a higher first formant. Fricative noise sits
between syllables. Beeps and noise bursts unrelated to any face keep "energy = mouth
open" from being the whole story.
"""

from __future__ import annotations

import numpy as np

from data_manifest.synth.au_process import Utterance, syllable_modulation


def _voice(
    rng: np.random.Generator, utt: Utterance, t: np.ndarray, fps: float, sr: int
) -> np.ndarray:
    """One utterance at sample times t (s) -> samples (len(t),) float32."""
    mod = syllable_modulation(utt, t, fps)  # (S,)
    loud = np.ones_like(t, dtype=np.float32)
    if utt.loud is not None:
        a, b = utt.loud[0] / fps, utt.loud[1] / fps
        loud += 0.9 * np.clip(np.minimum(t - a, b - t) / 0.05, 0, 1).astype(np.float32)
    f0 = utt.f0 * (1 + 0.08 * np.sin(2 * np.pi * 0.8 * t + rng.uniform(0, 6)))  # (S,)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    f1 = 500.0 + 250.0 * (loud - 1)  # open vowels on loud stretches
    voiced = np.zeros_like(t, dtype=np.float32)
    for k in range(1, 11):
        fk = k * utt.f0
        gain = (
            np.exp(-(((fk - f1) / 300.0) ** 2))
            + 0.6 * np.exp(-(((fk - 1500.0) / 400.0) ** 2))
            + 0.08
        ) / k**0.6
        voiced += (gain * np.sin(k * phase)).astype(np.float32)
    voiced *= 0.09 * mod**0.8 * loud
    inside = ((t >= utt.start / fps) & (t < utt.stop / fps)).astype(np.float32)
    hiss = np.diff(rng.normal(0, 1, len(t) + 1)).astype(np.float32)
    fric = 0.02 * hiss * inside * np.clip(1 - mod / 0.2, 0, 1)
    return voiced + fric


def synthesize_audio(
    rng: np.random.Generator,
    utterances: list[Utterance],
    n_frames: int,
    fps: float,
    sr: int = 16000,
) -> np.ndarray:
    """Mono audio (round(n_frames / fps * sr),) float32 in [-1, 1] for a video's utterances."""
    n = int(round(n_frames / fps * sr))
    t = np.arange(n, dtype=np.float64) / sr
    out = rng.normal(0, 0.003, n).astype(np.float32)  # room noise
    for utt in utterances:
        a = max(0, int(utt.start / fps * sr) - 1)
        b = min(n, int(utt.stop / fps * sr) + 1)
        if b > a:
            out[a:b] += _voice(rng, utt, t[a:b], fps, sr)
    # Distractors: about one every 8 s, 0.2-0.8 s long, unrelated to any face.
    for _ in range(rng.poisson(n / sr / 8.0)):
        length = int(rng.uniform(0.2, 0.8) * sr)
        start = int(rng.integers(0, max(1, n - length)))
        seg = t[start : start + length] - t[start]
        fade = np.clip(np.minimum(seg, seg[-1] - seg) / 0.02, 0, 1) if len(seg) else seg
        if rng.random() < 0.5:
            sig = np.sin(2 * np.pi * rng.uniform(700, 2200) * seg) * rng.uniform(0.03, 0.08)
        else:
            sig = rng.normal(0, rng.uniform(0.02, 0.05), len(seg))
        out[start : start + len(seg)] += (sig * fade).astype(np.float32)
    return np.clip(out, -0.99, 0.99)
