"""80-channel log-mel spectrogram (25 ms window, 10 ms hop) as an audio "encoder".

The ABAW8 system feeds Whisper's log-mel to its fusion model, so this computes exactly
Whisper's features (Hann 400, hop 160, Slaney mel filters 0-8 kHz from transformers'
`audio_utils`, log10 with a 1e-10 floor, then Whisper's scaling: clamp to 8 decades
below the track maximum and map by (x + 4) / 4), but over a whole track in chunks of
frames so memory stays flat, and with a time stamp per frame. Frame i is centred at
sample 160 i (reflect padding at the track ends, as `torch.stft(center=True)`), and its
analysis window [160 i - 200, 160 i + 200) samples is the feature interval.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from extract.encoders.base import register_audio_encoder


@dataclass(frozen=True)
class LogMelConfig:
    sample_rate: int = 16000  # input rate (Hz)
    n_mels: int = 80  # mel channels
    n_fft: int = 400  # 25 ms analysis window
    hop: int = 160  # 10 ms hop
    chunk_frames: int = 3000  # frames computed at once (30 s); bounds the working memory
    normalize: str = "whisper"  # "whisper" (clamp to max-8, (x+4)/4) or "none" (plain log10)


class LogMelEncoder:
    """Whisper-compatible log-mel frames with their time intervals."""

    name = "logmel"

    def __init__(self, config: LogMelConfig | None = None):
        from transformers.audio_utils import mel_filter_bank, window_function

        self.config = config or LogMelConfig()
        c = self.config
        if c.normalize not in ("whisper", "none"):
            raise ValueError(f"logmel normalize must be 'whisper' or 'none', got {c.normalize!r}")
        self.dim = c.n_mels
        self.window = window_function(c.n_fft, "hann")  # (n_fft,) periodic Hann
        self.mel_filters = mel_filter_bank(
            num_frequency_bins=1 + c.n_fft // 2,
            num_mel_filters=c.n_mels,
            min_frequency=0.0,
            max_frequency=c.sample_rate / 2,
            sampling_rate=c.sample_rate,
            norm="slaney",
            mel_scale="slaney",
        )  # (n_fft/2+1, n_mels)

    def fingerprint_fields(self) -> dict:
        fields = asdict(self.config)
        del fields["chunk_frames"]  # changes memory, not numbers
        return {
            "encoder": self.name,
            **fields,
            "mel_scale": "slaney",
            "log": "log10, floor 1e-10",
            "padding": "reflect",
            "dim": self.dim,
        }

    def frame_times(self, n_samples: int, start: float) -> tuple[np.ndarray, np.ndarray]:
        """(N,) starts and ends (s) of the analysis windows of the frames centred in the track."""
        c = self.config
        n = -(-n_samples // c.hop)  # frames whose centre lies inside the track
        centre = np.arange(n, dtype=np.float64) * c.hop  # (N,) samples
        half = c.n_fft / 2
        return start + (centre - half) / c.sample_rate, start + (centre + half) / c.sample_rate

    def log_mel(self, samples: np.ndarray) -> np.ndarray:
        """(S,) float -> (N, n_mels) float32 log10 mel, before Whisper's scaling.

        Works chunk by chunk on index views of the track (reflect padding at its ends is
        done by index), so no padded or float64 copy of the whole track is made.
        """
        c = self.config
        x = np.asarray(samples).reshape(-1)  # (S,)
        S = x.shape[0]
        n = -(-S // c.hop)
        out = np.empty((n, c.n_mels), np.float32)
        half = c.n_fft // 2
        for k0 in range(0, n, c.chunk_frames):
            k1 = min(n, k0 + c.chunk_frames)
            idx = np.arange(k0 * c.hop - half, (k1 - 1) * c.hop + c.n_fft - half)  # track samples
            if S > half:  # reflect about the first and last sample, as np.pad(mode="reflect")
                idx = np.abs(idx)
                idx = np.where(idx >= S, 2 * (S - 1) - idx, idx)
                seg = x[idx].astype(np.float64)
            else:  # too short to reflect: zero padding
                inside = (idx >= 0) & (idx < S)
                seg = np.zeros(idx.shape[0], np.float64)
                seg[inside] = x[idx[inside]]
            frames = np.lib.stride_tricks.sliding_window_view(seg, c.n_fft)[:: c.hop]  # (K, n_fft)
            spec = np.abs(np.fft.rfft(frames * self.window, axis=-1)) ** 2  # (K, n_fft/2+1)
            mel = spec @ self.mel_filters  # (K, n_mels)
            out[k0:k1] = np.log10(np.maximum(mel, 1e-10))
        return out

    def encode(self, audio) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """AudioTrack -> feats float32 (N, 80), starts (N,), ends (N,) on the container timeline.

        An invalid track (no / silent / broken audio) gives zeros on the same time grid.
        """
        if audio.sr != self.config.sample_rate:
            raise ValueError(f"logmel expects {self.config.sample_rate} Hz audio, got {audio.sr}")
        starts, ends = self.frame_times(audio.n_samples, audio.start)
        if not audio.valid:
            return np.zeros((starts.shape[0], self.dim), np.float32), starts, ends
        feats = self.log_mel(audio.samples)  # (N, 80)
        if self.config.normalize == "whisper" and feats.shape[0]:
            np.maximum(feats, feats.max() - 8.0, out=feats)
            feats += 4.0
            feats /= 4.0
        return feats, starts, ends


@register_audio_encoder("logmel")
def build_logmel(source: str | None = None, device: str = "cpu", layers=None, **kwargs):
    """Factory: logmel needs no model; `source`, `device` and `layers` are ignored."""
    return LogMelEncoder(LogMelConfig(**kwargs))
