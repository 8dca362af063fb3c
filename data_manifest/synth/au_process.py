"""AU activity over time: events with onset, apex and offset, co-occurrence, and speech.

Each AU is an alternating renewal process (gaps, then events of 0.5-3 s) whose mean
share of active time is its target rate. Some AUs are driven by others, as in real faces:
AU6 joins most AU12 smiles, AU2 joins most AU1 brow raises, and speech opens the lips
(AU25) and, on loud stretches, drops the jaw (AU26). The sound of an utterance starts a
little before the lips part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from data_manifest.aus import AU_INDEX, N_AUS
from data_manifest.synth.config import SynthConfig

if TYPE_CHECKING:
    from data_manifest.synth.long_range import LongRangeAU


@dataclass
class Utterance:
    """One stretch of speech on the audio timeline (frames), owned by one face of the video."""

    start: int  # first frame with sound
    stop: int  # one past the last frame with sound
    owner: int  # index of the speaking face in the video
    syllable_hz: float  # syllable rate of the loudness modulation
    phase: float  # phase of the modulation at `start`
    f0: float  # voice pitch in Hz
    loud: tuple[int, int] | None  # (start, stop) frames of a loud stretch with a jaw drop


@dataclass
class FaceActivity:
    """AU intensities of one face over the frames of its video."""

    intensity: np.ndarray  # (T, 12) float32 in [0, 1]
    labels: np.ndarray  # (T, 12) int8, intensity >= threshold
    speaking: np.ndarray  # (T,) bool, this face's utterances on the audio timeline
    # (T, 12) float32 intensities the face shows, where they differ from the labelled ones
    # (long-range AUs, seen only in bursts); None: the face shows `intensity`.
    visible: np.ndarray | None = None


def sample_events(
    rng: np.random.Generator, n_frames: int, rate: float, dur: tuple[int, int]
) -> list[tuple[int, int]]:
    """(start, stop) frame intervals of an on/off renewal process active `rate` of the time."""
    if rate <= 0:
        return []
    mean_on = 0.5 * (dur[0] + dur[1])
    mean_off = mean_on * (1.0 - rate) / rate
    events = []
    t = -int(rng.uniform(0, mean_on + mean_off))  # start in a random phase of the cycle
    while t < n_frames:
        length = int(rng.integers(dur[0], dur[1] + 1))
        if t + length > 0:
            events.append((max(t, 0), min(t + length, n_frames)))
        t += length + max(2, int(rng.exponential(mean_off)))
    return [(a, b) for a, b in events if b - a >= 2]


def envelope(
    rng: np.random.Generator, n_frames: int, events: list[tuple[int, int]], amp=(0.65, 1.0)
) -> np.ndarray:
    """Intensity (T,) of events: smooth onset (3-10 frames), apex plateau, smooth offset."""
    out = np.zeros(n_frames, np.float32)
    t = np.arange(n_frames, dtype=np.float32)
    for a, b in events:
        length = b - a
        on = min(max(3, int(rng.uniform(0.15, 0.3) * length)), length // 2)
        off = min(max(3, int(rng.uniform(0.15, 0.35) * length)), length - on)
        apex = float(rng.uniform(*amp))
        rise = np.clip((t - a + 1) / max(on, 1), 0, 1)
        fall = np.clip((b - t) / max(off, 1), 0, 1)
        shape = np.minimum(rise, fall)
        shape = shape * shape * (3 - 2 * shape)  # smoothstep
        shape[(t < a) | (t >= b)] = 0
        out = np.maximum(out, apex * shape)
    return out


def co_events(
    rng: np.random.Generator, events: list[tuple[int, int]], prob: float, n_frames: int
) -> list[tuple[int, int]]:
    """Events that join `events` with probability `prob`: slightly delayed, a bit shorter."""
    out = []
    for a, b in events:
        if rng.random() < prob:
            length = b - a
            start = a + int(rng.integers(0, 4))
            stop = start + max(3, int(length * rng.uniform(0.65, 1.0)))
            out.append((min(start, n_frames), min(stop, n_frames)))
    return [(a, b) for a, b in out if b - a >= 2]


def sample_utterances(
    rng: np.random.Generator, cfg: SynthConfig, n_frames: int, n_faces: int
) -> list[Utterance]:
    """Speech turns of the video; with two faces each utterance belongs to one of them."""
    fps = cfg.fps
    spans = sample_events(rng, n_frames, cfg.speech_rate, (int(1.0 * fps), int(3.0 * fps)))
    utts = []
    for a, b in spans:
        loud = None
        if rng.random() < 0.6 and b - a > 12:
            la = int(rng.integers(a, b - 10))
            loud = (la, min(b, la + int(rng.integers(10, max(11, int(1.5 * fps))))))
        utts.append(
            Utterance(
                start=a,
                stop=b,
                owner=int(rng.integers(0, n_faces)),
                syllable_hz=float(rng.uniform(3.0, 5.0)),
                phase=float(rng.uniform(0, 2 * np.pi)),
                f0=float(rng.uniform(100.0, 230.0)),
                loud=loud,
            )
        )
    return utts


def syllable_modulation(utt: Utterance, times: np.ndarray, fps: float) -> np.ndarray:
    """Loudness modulation in [0, 1] of an utterance at `times` (s), zero outside it."""
    t0, t1 = utt.start / fps, utt.stop / fps
    m = 0.5 * (1 - np.cos(2 * np.pi * utt.syllable_hz * (times - t0) + utt.phase))
    edge = np.clip(np.minimum(times - t0, t1 - times) / 0.06, 0, 1)  # 60 ms fades
    return (m * edge * ((times >= t0) & (times < t1))).astype(np.float32)


def face_activity(
    rng: np.random.Generator,
    cfg: SynthConfig,
    n_frames: int,
    utterances: list[Utterance],
    face: int,
    long_range: dict[str, LongRangeAU] | None = None,
) -> FaceActivity:
    """AU intensities (T, 12) of face `face` given the video's utterances; the AUs of
    `long_range` (drawn beforehand from a stream of their own) replace their ordinary events:
    their labels follow the episode state, their visible intensity the bursts."""
    fps = cfg.fps
    dur = (max(3, int(cfg.au_duration_s[0] * fps)), max(4, int(cfg.au_duration_s[1] * fps)))
    rates = cfg.au_rates
    ev = {au: sample_events(rng, n_frames, rates.get(au, 0.0), dur) for au in rates}
    ev["AU6"] = ev["AU6"] + co_events(rng, ev["AU12"], 0.75, n_frames)
    ev["AU2"] = ev["AU2"] + co_events(rng, ev["AU1"], 0.65, n_frames)
    ev["AU7"] = ev["AU7"] + co_events(rng, ev["AU4"], 0.4, n_frames)
    ev["AU25"] = ev["AU25"] + co_events(rng, ev["AU12"], 0.2, n_frames)  # open smiles
    inten = np.zeros((n_frames, N_AUS), np.float32)  # (T, 12)
    for au, events in ev.items():
        inten[:, AU_INDEX[au]] = envelope(rng, n_frames, events)
    # Speech: lips apart through each utterance of this face (after the audio lead),
    # opening with the syllables; the jaw drops on its loud stretch.
    times = np.arange(n_frames) / fps
    lead = cfg.audio_lead_frames
    speaking = np.zeros(n_frames, bool)
    for utt in utterances:
        if utt.owner != face:
            continue
        speaking[utt.start : utt.stop] = True
        mod = syllable_modulation(utt, times - lead / fps, fps)  # (T,) visual lags the sound
        a, b = min(utt.start + lead, n_frames), min(utt.stop + lead, n_frames)
        lips = np.zeros(n_frames, np.float32)
        lips[a:b] = 0.55 + 0.45 * mod[a:b]
        ramp = np.ones(n_frames, np.float32)
        ramp[a : min(a + 2, b)] = (0.5, 0.8)[: min(2, b - a)]  # two-frame opening
        inten[:, AU_INDEX["AU25"]] = np.maximum(inten[:, AU_INDEX["AU25"]], lips * ramp)
        if utt.loud is not None:
            la, lb = min(utt.loud[0] + lead, n_frames), min(utt.loud[1] + lead, n_frames)
            jaw = envelope(rng, n_frames, [(la, lb)], amp=(0.7, 1.0))
            inten[:, AU_INDEX["AU26"]] = np.maximum(inten[:, AU_INDEX["AU26"]], jaw)
    visible = None
    if long_range:
        visible = inten.copy()  # (T, 12)
        for name, lr in long_range.items():
            inten[:, AU_INDEX[name]] = lr.label
            visible[:, AU_INDEX[name]] = lr.visible
        exclusions(visible)
    exclusions(inten)
    labels = (inten >= cfg.label_threshold).astype(np.int8)
    return FaceActivity(intensity=inten, labels=labels, speaking=speaking, visible=visible)


def exclusions(inten: np.ndarray) -> None:
    """Incompatible pairs, in place on (T, 12) intensities: corners cannot go up and down at
    once; pressed lips are closed; a dropped jaw opens the lips."""
    au = AU_INDEX
    inten[:, au["AU15"]] *= inten[:, au["AU12"]] < 0.2
    inten[:, au["AU24"]] *= inten[:, au["AU25"]] < 0.2
    inten[:, au["AU23"]] *= inten[:, au["AU25"]] < 0.5
    inten[:, au["AU25"]] = np.maximum(inten[:, au["AU25"]], inten[:, au["AU26"]] * 0.9)
