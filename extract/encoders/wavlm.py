"""WavLM hidden states at ~50 Hz with exact per-frame sample intervals.

Loads `WavLMModel` through `from_pretrained` (hub id or local folder). The output
frame j of the conv front-end sees samples [j * stride, j * stride + receptive_field)
(320 and 400 for every released WavLM: 20 ms hop, 25 ms field); those are the feature
intervals handed to the aligner. Long tracks run in overlapping windows (20 s, 2 s
overlap by default) stitched from their centres, so memory does not grow with the
track. When the model's feature extractor normalises (zero mean, unit variance), the
statistics are taken over the whole track once, so every window sees the same scaling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from extract.encoders.audio_model_run import AudioWindowConfig, WindowedAudioEncoder, parse_layers
from extract.encoders.base import register_audio_encoder
from extract.encoders.hf_source import source_fields

EXAMPLE_ID = "microsoft/wavlm-base-plus"  # named in the error that says how to get a model


@dataclass(frozen=True)
class WavLMEncoderConfig(AudioWindowConfig):
    window_s: float = 20.0  # analysis window (s); bounds memory, attention context per frame
    overlap_s: float = 2.0  # overlap between windows (s); seams sit in its middle


class WavLMEncoder(WindowedAudioEncoder):
    name = "wavlm"
    what = "WavLM"
    example_id = EXAMPLE_ID
    config_class = WavLMEncoderConfig

    def _load_model(self, layers) -> None:
        from transformers import Wav2Vec2FeatureExtractor, WavLMModel

        model = self.load(WavLMModel)
        try:
            fe = Wav2Vec2FeatureExtractor.from_pretrained(self.source, **self.pretrained_kwargs)
            self.normalize = bool(fe.do_normalize)
        except OSError:  # older checkpoints ship no preprocessor config; WavLM normalises
            self.normalize = True
        self.model = model.to(self.device).eval()
        mc = model.config
        self.layers = parse_layers(layers, mc.num_hidden_layers)
        self.dim = int(mc.hidden_size)
        self.stride = int(np.prod(mc.conv_stride))  # samples per output frame (320)
        rf, jump = 1, 1
        for k, s in zip(mc.conv_kernel, mc.conv_stride):
            rf += (k - 1) * jump
            jump *= s
        self.receptive_field = rf  # samples seen by one output frame (400)
        self.window = int(round(self.config.window_s * self.sr))
        self.identity = source_fields(self.source, model)

    def encoder_fields(self) -> dict:
        return {"normalize": self.normalize, "receptive_field": self.receptive_field}

    def n_frames(self, n_samples: int) -> int:
        if n_samples < self.receptive_field:
            return 0
        return (n_samples - self.receptive_field) // self.stride + 1

    def frame_times(self, n_samples: int, start: float) -> tuple[np.ndarray, np.ndarray]:
        first = np.arange(self.n_frames(n_samples), dtype=np.float64) * self.stride  # (N,)
        return start + first / self.sr, start + (first + self.receptive_field) / self.sr

    def overlap_samples(self) -> int:
        overlap = super().overlap_samples()
        if overlap < self.receptive_field:
            raise ValueError(
                f"wavlm overlap_s={self.config.overlap_s} is shorter than one frame's receptive "
                f"field ({self.receptive_field} samples); frames at the seams would be lost"
            )
        return overlap

    def _frame_centre(self, j: np.ndarray) -> np.ndarray:
        return j * self.stride + self.receptive_field // 2

    def _window_runner(self, x: np.ndarray):
        shift, scale = 0.0, 1.0
        if self.normalize:  # the feature extractor's per-input normalisation, over the track
            mean, var = _mean_var(x)
            shift, scale = mean, 1.0 / np.sqrt(var + 1e-7)
        return lambda group: self._run(x, group, shift, scale)

    def _run(self, x: np.ndarray, windows, shift: float = 0.0, scale: float = 1.0):
        """Encode a group of equal-length windows of `(x - shift) * scale`; list of (n, D)."""
        import torch

        batch = np.stack([x[w.start : w.stop] for w in windows])  # (B, L)
        if shift != 0.0 or scale != 1.0:
            batch = ((batch - shift) * scale).astype(np.float32)  # (B, L)
        inp = torch.from_numpy(batch).to(self.device)  # (B, L)
        h = self.hidden_states(self.model, input_values=inp)  # (B, N, D)
        return list(h.float().cpu().numpy())


def _mean_var(x: np.ndarray, block: int = 1 << 20) -> tuple[float, float]:
    """Mean and variance of a long track in float64, a block at a time (no full-size temporaries)."""
    n = x.shape[0]
    total = sum(float(np.sum(x[i : i + block], dtype=np.float64)) for i in range(0, n, block))
    mean = total / n
    sq = 0.0
    for i in range(0, n, block):
        d = x[i : i + block].astype(np.float64) - mean  # (block,)
        sq += float(d @ d)
    return mean, sq / n


@register_audio_encoder("wavlm")
def build_wavlm(source: str, device: str = "cpu", layers=None, **kwargs) -> WavLMEncoder:
    """Factory: `source` is a hub id (e.g. microsoft/wavlm-base-plus) or a local folder."""
    if not source:
        raise ValueError("wavlm needs a model source: a hub id or a local folder")
    return WavLMEncoder(source, device=device, layers=layers, config=WavLMEncoderConfig(**kwargs))
