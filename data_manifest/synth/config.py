"""Every knob of the synthetic Aff-Wild2-like dataset, in one typed place (written to synth_truth.json)."""

from __future__ import annotations

from dataclasses import dataclass, field

# Share of time each AU's own events are active (before co-occurrence and the 0.4 label
# threshold, which cuts the ramps). The labelled rates follow Aff-Wild2's ordering (AU25
# common, AU15/AU23/AU24 rare), raised for the rare ones so that a short demo has events.
DEFAULT_AU_RATES: dict[str, float] = {
    "AU1": 0.15,
    "AU2": 0.05,  # plus AU1 co-occurrence: ~0.1 of frames labelled
    "AU4": 0.18,
    "AU6": 0.08,  # plus AU12 co-occurrence: ~0.2 labelled
    "AU7": 0.2,
    "AU10": 0.2,
    "AU12": 0.25,
    "AU15": 0.11,
    "AU23": 0.15,  # thinned where the lips are apart: ~0.07 labelled
    "AU24": 0.18,  # thinned where the lips are apart: ~0.07 labelled
    "AU25": 0.06,  # plus speech: ~0.5 labelled
    "AU26": 0.04,  # plus loud speech: ~0.15 labelled
}


@dataclass
class LongRangeConfig:
    """AU processes whose state outlasts any short window (opt-in: `SynthConfig.long_range`).

    Each AU in `aus` follows a slow hidden episode state (seconds long) instead of its ordinary
    short events, and the label is that state. The face shows the AU only in short bursts
    while the episode lasts (and in rarer stray bursts outside episodes, not labelled), so a
    single frame between bursts looks exactly like a frame with the AU off: only the density
    of bursts over the surrounding seconds tells. How often a subject's episodes occur is a
    per-track level (high or low), which a model can only read from a long view of the track.
    """

    aus: tuple[str, ...] = ("AU2", "AU4", "AU10")  # AUs driven by slow episodes
    episode_s: tuple[float, float] = (4.0, 12.0)  # episode durations, s
    high_share: float = 0.5  # chance that a subject has the AU's high episode rate
    rate_high: tuple[float, float] = (0.35, 0.6)  # share of time in episodes, high subjects
    rate_low: tuple[float, float] = (0.03, 0.12)  # share of time in episodes, low subjects
    # A burst is drawn like an ordinary AU event (same region, amplitude and ramps; durations
    # from the short end of `SynthConfig.au_duration_s`), and strays are rare enough that a
    # frame showing the cue is mostly labelled (about 0.8): a frame-wise model can learn the
    # cue, while the label between bursts still needs seconds of context.
    burst_s: tuple[float, float] = (0.5, 1.2)  # visible burst durations, s
    burst_gap_s: tuple[float, float] = (1.0, 2.5)  # gaps between bursts within an episode, s
    stray_every_s: float = 20.0  # mean interval between stray bursts outside episodes, s


@dataclass
class SynthConfig:
    """Parameters of `generate_synthetic`; all randomness derives from `seed`."""

    tracks: int = 8  # number of tracks (one _left/_right pair counts as two)
    frames: int = 300  # frames per video
    seed: int = 0  # master seed: same seed, same dataset
    fps: float = 25.0  # video frame rate
    crop_size: int = 112  # side of the square cropped_aligned images
    video_width: int = 256  # video frame width in pixels
    video_height: int = 192  # video frame height in pixels
    sample_rate: int = 16000  # audio sample rate
    codec: str = "libx264"  # video codec for PyAV ("libx264", "h264" or "mpeg4")
    pair: bool = True  # make one video hold a _left/_right pair (needs tracks >= 4)
    val_fraction: float = 0.25  # share of tracks in the validation split
    test_fraction: float = 0.125  # share of tracks in the test split (no annotation files)
    au_rates: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_AU_RATES))
    speech_rate: float = 0.45  # share of time someone is speaking
    au_duration_s: tuple[float, float] = (0.5, 2.0)  # event durations (onset + apex + offset), s
    label_threshold: float = 0.4  # intensity at which an AU counts as present
    audio_lead_frames: int = 2  # speech sound starts this many frames before the lips part
    effect_scale: float = 1.0  # multiplies every AU's visible effect (1 = the designed size)
    unlabelled_fraction: float = 0.04  # share of annotated frames written as -1 rows
    missing_face_tracks: int = 1  # tracks with frames missing from cropped_aligned
    corrupt_frame_rate: float = 0.06  # frames heavily corrupted (noise, blur, flash, blocks)
    mouth_hidden_rate: float = 0.1  # frames whose mouth is hidden or smeared (audio then helps)
    occluder_rate: float = 0.04  # frames with a brief occluder somewhere on the face
    noise_sigma: tuple[float, float] = (2.0, 6.0)  # camera noise range (grey levels), per track
    lighting_drift: float = 0.22  # amplitude of the slow global gain drift
    pose_jitter_deg: float = 5.0  # head rotation range in the video (degrees)
    align_jitter: float = 0.015  # residual alignment error of the crops (share of the crop)
    # AU processes with long-range structure (None: off, the dataset is exactly the one
    # without this option; its randomness comes from a stream of its own).
    long_range: LongRangeConfig | None = None
