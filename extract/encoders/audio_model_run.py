"""How the transformer audio encoders run: which hidden states, under what context, on what.

Shared by WavLM and Whisper: the layer choice (last layer, one layer, or the mean of
several), the inference context (inference_mode, plus autocast on CUDA, where the
encoders are memory-bound and half precision halves the activations), and the base
class that runs a model over a whole track in overlapping windows.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from extract.encoders.audio_windows import plan_windows, run_in_windows
from extract.encoders.hf_source import load_pretrained


def parse_layers(layers, n_layers: int) -> tuple[int, ...] | None:
    """None -> last layer; int, "3,4" or a sequence -> hidden-state indices (0 = embeddings).

    Negative indices count from the end (-1 = last layer).
    """
    if layers is None:
        return None
    if isinstance(layers, str):
        layers = [int(x) for x in layers.replace(",", " ").split()]
    elif isinstance(layers, int):
        layers = [layers]
    out = []
    for i in layers:
        j = int(i) + (n_layers + 1 if int(i) < 0 else 0)
        if not 0 <= j <= n_layers:
            raise ValueError(f"layer {i} out of range: the model has hidden states 0..{n_layers}")
        out.append(j)
    if not out:
        raise ValueError("layers must name at least one layer")
    return tuple(out)


def select_hidden(outputs, layers: tuple[int, ...] | None):
    """last_hidden_state, one hidden state, or the mean of several; (B, N, D)."""
    if layers is None:
        return outputs.last_hidden_state  # (B, N, D)
    hs = outputs.hidden_states
    if len(layers) == 1:
        return hs[layers[0]]  # (B, N, D)
    return sum(hs[i].float() for i in layers) / len(layers)  # (B, N, D)


def inference_context(device: str):
    """inference_mode, plus autocast (bf16 where supported, else fp16) on CUDA."""
    import torch

    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode())
    if str(device).startswith("cuda"):
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        stack.enter_context(torch.autocast("cuda", dtype=dtype))
    return stack


@dataclass(frozen=True)
class AudioWindowConfig:
    """Settings every windowed audio encoder takes; subclasses override the window defaults."""

    window_s: float = 30.0  # analysis window (s)
    overlap_s: float = 5.0  # overlap between windows (s); seams sit in its middle
    batch_size: int = 1  # windows per forward pass
    revision: str | None = None  # hub revision (branch, tag or commit); None = default


class WindowedAudioEncoder:
    """A transformer audio encoder run over a track in overlapping windows.

    WavLM and Whisper differ only in how a group of windows becomes hidden states and
    where an output frame sits; loading from a hub id or folder, the fingerprint, the
    checks on the track, zeros for invalid audio and the stitching are the same here.
    A subclass loads its model in `_load_model`, which sets `layers`, `dim`, `stride`,
    `window` (samples) and `identity`, and implements `frame_times`, `_frame_centre`
    and `_window_runner`.
    """

    name = "audio"
    what = "audio"  # model family named in the error for a missing model
    example_id = ""  # hub id named in that error
    config_class = AudioWindowConfig
    sr = 16000

    def __init__(
        self,
        source: str,
        device: str = "cpu",
        layers=None,
        config: AudioWindowConfig | None = None,
    ) -> None:
        self.config = config or self.config_class()
        self.source, self.device = str(source), device
        rev = self.config.revision
        self.pretrained_kwargs: dict = {"revision": rev} if rev else {}
        self._load_model(layers)

    def load(self, cls):
        """`cls.from_pretrained` on this encoder's source and revision, with a clear error."""
        return load_pretrained(
            cls, self.source, self.what, self.example_id, **self.pretrained_kwargs
        )

    # -- subclass surface ---------------------------------------------------------------------
    def _load_model(self, layers) -> None:
        """Load the model from `self.source` and set the attributes named above."""
        raise NotImplementedError

    @property
    def window_s(self) -> float:
        """The window length recorded in the fingerprint (s)."""
        return self.config.window_s

    def encoder_fields(self) -> dict:
        """Fingerprint fields particular to one encoder."""
        return {}

    def overlap_samples(self) -> int:
        return int(round(self.config.overlap_s * self.sr))

    def frame_times(self, n_samples: int, start: float) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _frame_centre(self, j: np.ndarray) -> np.ndarray:
        """Centre sample of output frame j (n,) within its window."""
        raise NotImplementedError

    def _window_runner(self, x: np.ndarray):
        """A function list[Window] -> list of (n_w, D) hidden states over track `x`."""
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------------
    def hidden_states(self, model, **inputs):
        """`model(**inputs)` in the inference context; the chosen layer(s), (B, N, D)."""
        with inference_context(self.device):
            out = model(**inputs, output_hidden_states=self.layers is not None)
            return select_hidden(out, self.layers)  # (B, N, D)

    def fingerprint_fields(self) -> dict:
        return {
            "encoder": self.name,
            **self.identity,
            "layers": "last" if self.layers is None else list(self.layers),
            "sample_rate": self.sr,
            "window_s": self.window_s,
            "overlap_s": self.config.overlap_s,
            **self.encoder_fields(),
            "stride": self.stride,
            "dim": self.dim,
        }

    def encode(self, audio) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """AudioTrack -> feats float32 (N, D), starts (N,), ends (N,) seconds (container time).

        An invalid track gives zeros on the same time grid without running the model.
        """
        if audio.sr != self.sr:
            raise ValueError(f"{self.name} expects {self.sr} Hz audio, got {audio.sr}")
        starts, ends = self.frame_times(audio.n_samples, audio.start)
        n = starts.shape[0]
        if not audio.valid or n == 0:
            return np.zeros((n, self.dim), np.float32), starts, ends
        x = np.asarray(audio.samples, np.float32)  # (S,)
        run = self._window_runner(x)
        windows = plan_windows(x.shape[0], self.window, self.overlap_samples(), self.stride)
        try:
            feats = run_in_windows(
                windows, self.config.batch_size, run, self._frame_centre, self.stride, n, self.dim
            )  # (N, D)
        except RuntimeError as err:
            raise RuntimeError(f"{self.name} on {audio.source or 'audio'}: {err}") from err
        return feats, starts, ends
