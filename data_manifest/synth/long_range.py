"""AU activity with long-range structure: slow episodes seen in bursts, subject-level rates.

Why context matters here: an AU of `LongRangeConfig.aus` is labelled by a hidden episode state
lasting seconds, but its visible cue comes and goes in bursts of a fraction of a second, a
second or three apart. Between two bursts the frame looks exactly like one with the AU off;
stray bursts outside episodes make a single burst weak evidence. What separates an episode
from its absence is the density of bursts over several seconds, and how much of the track a
subject spends in episodes (a high or a low level per track) is a prior that only a long view
of the track reveals. A window shorter than the gaps between bursts cannot see it at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_manifest.synth.au_process import envelope, sample_events
from data_manifest.synth.config import LongRangeConfig


@dataclass
class LongRangeAU:
    """One AU of one face: label intensity, visible intensity, the hidden state and its truth."""

    label: np.ndarray  # (T,) float32 intensity that sets the label (the episode state)
    visible: np.ndarray  # (T,) float32 intensity the face shows (bursts)
    state: np.ndarray  # (T,) bool, inside an episode
    level: str  # "high" or "low": the subject's episode rate
    rate: float  # the subject's target share of time in episodes
    episodes: list[tuple[int, int]]  # (start, stop) frames
    bursts: list[tuple[int, int]]  # visible bursts inside episodes
    stray: list[tuple[int, int]]  # visible bursts outside episodes (not labelled)


def _frames(seconds: tuple[float, float], fps: float, least: int) -> tuple[int, int]:
    lo = max(least, int(round(seconds[0] * fps)))
    return lo, max(lo, int(round(seconds[1] * fps)))


def bursts_in(
    rng: np.random.Generator, a: int, b: int, burst: tuple[int, int], gap: tuple[int, int]
) -> list[tuple[int, int]]:
    """Bursts inside [a, b): the first within one gap of the start, then gap, burst, gap, ..."""
    out = []
    t = a + int(rng.integers(0, gap[1] // 2 + 1))
    while t < b:
        stop = min(b, t + int(rng.integers(burst[0], burst[1] + 1)))
        if stop - t >= 2:
            out.append((t, stop))
        t = stop + int(rng.integers(gap[0], gap[1] + 1))
    return out


def stray_bursts(
    rng: np.random.Generator,
    n_frames: int,
    state: np.ndarray,
    every: float,
    burst: tuple[int, int],
) -> list[tuple[int, int]]:
    """Bursts at Poisson times (mean interval `every` frames) that fall wholly outside episodes."""
    out = []
    t = int(rng.exponential(every))
    while t < n_frames:
        stop = min(n_frames, t + int(rng.integers(burst[0], burst[1] + 1)))
        if stop - t >= 2 and not state[max(0, t - 2) : stop + 2].any():
            out.append((t, stop))
        t = stop + max(1, int(rng.exponential(every)))
    return out


def long_range_au(
    rng: np.random.Generator, lr: LongRangeConfig, n_frames: int, fps: float
) -> LongRangeAU:
    """Episodes at the subject's rate, their label plateau, and the bursts the face shows."""
    high = bool(rng.random() < lr.high_share)
    rate = float(rng.uniform(*(lr.rate_high if high else lr.rate_low)))
    episodes = sample_events(rng, n_frames, rate, _frames(lr.episode_s, fps, 8))
    state = np.zeros(n_frames, bool)
    for a, b in episodes:
        state[a:b] = True
    burst, gap = _frames(lr.burst_s, fps, 3), _frames(lr.burst_gap_s, fps, 4)
    bursts = [x for a, b in episodes for x in bursts_in(rng, a, b, burst, gap)]
    stray = stray_bursts(rng, n_frames, state, lr.stray_every_s * fps, burst)
    # The label follows the state: a plateau with short (3-frame) ramps, so label >= 0.4
    # exactly inside the episode save its first and last frame or so.
    t = np.arange(n_frames)
    label = np.zeros(n_frames, np.float32)
    for a, b in episodes:
        ramp = np.clip(np.minimum(t - a + 1, b - t) / 3.0, 0, 1) * ((t >= a) & (t < b))
        label = np.maximum(label, float(rng.uniform(0.75, 1.0)) * ramp.astype(np.float32))
    visible = envelope(rng, n_frames, bursts + stray, amp=(0.65, 1.0))
    return LongRangeAU(
        label=label,
        visible=visible,
        state=state,
        level="high" if high else "low",
        rate=rate,
        episodes=episodes,
        bursts=bursts,
        stray=stray,
    )


def truth_of(au: LongRangeAU, labels: np.ndarray) -> dict:
    """What synth_truth.json records of one long-range AU of one track (labels (T,) int8)."""
    n_state = int(au.state.sum())
    shown = np.zeros(len(au.state), bool)
    for a, b in au.bursts:
        shown[a:b] = True
    return {
        "level": au.level,
        "target_rate": au.rate,
        "episode_rate": float(au.state.mean()),
        "positive_rate": float((labels == 1).mean()),
        "episodes": [[int(a), int(b)] for a, b in au.episodes],
        "bursts": len(au.bursts),
        "stray_bursts": len(au.stray),
        # share of episode frames whose cue is on screen (the rest only context can tell)
        "visible_share": float(shown[au.state].mean()) if n_state else 0.0,
    }
