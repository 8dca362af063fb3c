"""Audio local views: random time crops and frequency masks of the audio features in training.

The ABAW8 paper's audio local views are random crops of the clip with frequency masking of the
log-mel spectrogram. On features pooled per video frame (B, T, Da) that becomes, per window:
- a time crop: a random contiguous span of at least `crop_min` of the window's real frames
  (mask True) is kept; frames outside it are marked audio-invalid, so the model sees its learned no-audio vector there (as
  it does where the recording has no audio);
- `freq_masks` frequency masks: each zeroes a random band of up to `freq_width` (a fraction of
  Da) consecutive channels in every frame of the window (SpecAugment). On log-mel features the
  channels are mel bands; on encoder features (Whisper, WavLM) they are feature channels and
  the mask is plain feature dropout in bands.
At eval the features pass unchanged. All draws come from `generator` (on the CPU), so a seed
fixes the augmentation exactly.
"""

from __future__ import annotations

import torch
from torch import nn


class AudioLocalViews(nn.Module):
    """(audio (B, T, Da), valid (B, T) bool | None) -> (audio, valid), augmented in training."""

    def __init__(self, crop_min: float = 1.0, freq_masks: int = 0, freq_width: float = 0.1):
        super().__init__()
        if not 0.0 < crop_min <= 1.0:
            raise ValueError(f"audio_crop must be in (0, 1], got {crop_min}")
        if freq_masks < 0 or not 0.0 <= freq_width <= 1.0:
            raise ValueError(
                f"freq_masks must be >= 0 and freq_width in [0, 1]: {freq_masks}, {freq_width}"
            )
        self.crop_min, self.freq_masks, self.freq_width = crop_min, freq_masks, freq_width

    @property
    def active(self) -> bool:
        return self.crop_min < 1.0 or (self.freq_masks > 0 and self.freq_width > 0)

    def draw(
        self,
        b: int,
        t: int,
        da: int,
        generator: torch.Generator | None = None,
        n_real: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The random views of B windows: keep_time (B, T) bool, keep_freq (B, Da) bool (CPU).
        n_real (B,) long: real frames at the start of each window (default all T)."""
        g = generator
        real = torch.full((b,), t) if n_real is None else n_real.cpu().long().clamp(1, t)
        length = real
        if self.crop_min < 1.0:
            shortest = (self.crop_min * real).round().long().clamp_min(1)  # (B,)
            length = shortest + (torch.rand(b, generator=g) * (real - shortest + 1)).long()
        start = (torch.rand(b, generator=g) * (real - length + 1)).long()  # (B,)
        idx = torch.arange(t)
        keep_time = (idx >= start[:, None]) & (idx < (start + length)[:, None])  # (B, T)
        keep_freq = torch.ones(b, da, dtype=torch.bool)
        widest = int(self.freq_width * da)
        chan = torch.arange(da)
        for _ in range(self.freq_masks if widest > 0 else 0):
            width = (torch.rand(b, generator=g) * (widest + 1)).long()  # 0 .. widest
            lo = (torch.rand(b, generator=g) * (da - width + 1)).long()
            keep_freq &= ~((chan >= lo[:, None]) & (chan < (lo + width)[:, None]))
        return keep_time, keep_freq

    def forward(
        self,
        audio: torch.Tensor,
        valid: torch.Tensor | None,
        generator: torch.Generator | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """audio (B, T, Da), valid (B, T) bool, mask (B, T) bool (real frames, padding at the
        end) -> (audio, valid)."""
        if not (self.training and self.active):
            return audio, valid
        b, t, da = audio.shape
        n_real = None if mask is None else mask.sum(1)  # (B,)
        keep_time, keep_freq = self.draw(b, t, da, generator, n_real)
        keep_time, keep_freq = keep_time.to(audio.device), keep_freq.to(audio.device)
        audio = audio * keep_freq[:, None, :].to(audio.dtype)  # (B, T, Da)
        valid = keep_time if valid is None else valid & keep_time  # (B, T)
        return audio, valid
