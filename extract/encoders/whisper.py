"""Whisper encoder states at 50 Hz, from windows that hold only real audio context.

The encoder accepts exactly 30 s of log-mel (its positional table has
`max_source_positions` entries, 1500 for every released size). A track is cut into
windows of at most 30 s overlapping by `overlap_s`; each is turned into Whisper's own
log-mel by the model's `WhisperFeatureExtractor` (padded to 30 s), encoded, and the
outputs over the padding are dropped. Frames are then stitched from window centres, so
no kept frame sits next to a window's edge except at the ends of the track. Output
frame j of a window is centred at sample 320 j (mel hop 160, conv stride 2); its
feature interval is the 20 ms around that centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from extract.encoders.audio_model_run import AudioWindowConfig, WindowedAudioEncoder, parse_layers
from extract.encoders.base import register_audio_encoder
from extract.encoders.hf_source import source_fields

EXAMPLE_ID = "openai/whisper-small"  # named in the error that says how to get a model


@dataclass(frozen=True)
class WhisperEncoderConfig(AudioWindowConfig):
    window_s: float = 30.0  # window of real audio (s), at most the model's 30 s input
    overlap_s: float = 5.0  # overlap between windows (s); seams sit in its middle
    batch_size: int = 1  # windows per forward pass (all are padded to 30 s)


class WhisperEncoder(WindowedAudioEncoder):
    name = "whisper"
    what = "Whisper"
    example_id = EXAMPLE_ID
    config_class = WhisperEncoderConfig

    def _load_model(self, layers) -> None:
        from transformers import WhisperFeatureExtractor, WhisperModel

        model = self.load(WhisperModel)
        self.fe = self.load(WhisperFeatureExtractor)
        self.identity = source_fields(self.source, model)
        mc = model.config
        self.encoder = model.get_encoder().to(self.device).eval()
        del model  # the decoder is not needed
        self.layers = parse_layers(layers, mc.encoder_layers)
        self.dim = int(mc.d_model)
        conv_stride = self.encoder.conv1.stride[0] * self.encoder.conv2.stride[0]
        self.stride = int(self.fe.hop_length * conv_stride)  # samples per output frame (320)
        self.input_samples = int(self.fe.n_samples)  # the 30 s the encoder insists on
        if self.fe.nb_max_frames != mc.max_source_positions * conv_stride:
            raise ValueError(
                f"whisper model {self.source!r}: feature extractor gives {self.fe.nb_max_frames} "
                f"mel frames but the encoder takes {mc.max_source_positions * conv_stride}"
            )
        self.window = min(int(round(self.config.window_s * self.sr)), self.input_samples)

    @property
    def window_s(self) -> float:
        return self.window / self.sr  # capped at the model's 30 s input

    def n_frames(self, n_samples: int) -> int:
        return -(-n_samples // self.stride)  # frames whose centre lies inside the track

    def frame_times(self, n_samples: int, start: float) -> tuple[np.ndarray, np.ndarray]:
        centre = np.arange(self.n_frames(n_samples), dtype=np.float64) * self.stride  # (N,)
        half = self.stride / 2
        return start + (centre - half) / self.sr, start + (centre + half) / self.sr

    def _frame_centre(self, j: np.ndarray) -> np.ndarray:
        return j * self.stride

    def _window_runner(self, x: np.ndarray):
        return lambda group: self._run(x, group)

    def _run(self, x: np.ndarray, windows) -> list[np.ndarray]:
        segs = [x[w.start : w.stop] for w in windows]
        mel = self.fe(
            segs, sampling_rate=self.sr, padding="max_length", return_tensors="pt"
        ).input_features  # (B, 80, 3000)
        mel = mel.to(self.device, dtype=next(self.encoder.parameters()).dtype)
        h = self.hidden_states(self.encoder, input_features=mel)  # (B, 1500, D)
        h = h.float().cpu().numpy()
        # drop the frames over the padding: keep those centred on real samples
        return [h[b, : self.n_frames(s.shape[0])] for b, s in enumerate(segs)]


@register_audio_encoder("whisper")
def build_whisper(source: str, device: str = "cpu", layers=None, **kwargs) -> WhisperEncoder:
    """Factory: `source` is a hub id (e.g. openai/whisper-small) or a local folder."""
    if not source:
        raise ValueError("whisper needs a model source: a hub id or a local folder")
    return WhisperEncoder(
        source, device=device, layers=layers, config=WhisperEncoderConfig(**kwargs)
    )
