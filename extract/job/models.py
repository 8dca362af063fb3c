"""The models of one job, each loaded the first time a track needs it and kept for the rest.

A rerun with nothing left to do loads nothing; a job that only adds an audio encoder never
loads the landmark model or the visual encoders.
"""

from __future__ import annotations

import logging
from typing import Any

from extract.job.config import ExtractConfig

log = logging.getLogger("auwild.extract")


class ModelCache:
    """Lazily loaded landmark backend and encoders; `loaded` lists what was loaded, in order."""

    def __init__(self, cfg: ExtractConfig):
        self.cfg = cfg
        self._backend: Any = None
        self._visual: dict[str, Any] = {}
        self._audio: dict[str, Any] = {}
        self.loaded: list[str] = []

    def backend(self, aligned_input: bool):
        """The landmark backend, switched to this track's input kind."""
        if self._backend is None:
            from extract.faces import get_landmark_backend

            _quiet_model_loading()
            self._backend = get_landmark_backend(
                self.cfg.landmarks,
                device=self.cfg.device,
                aligned_input=aligned_input,
                detect_every=self.cfg.detect_every,
            )
            self.loaded.append(f"landmarks:{self.cfg.landmarks}")
        self._backend.aligned_input = aligned_input
        return self._backend

    def visual(self, name: str):
        if name not in self._visual:
            from extract.encoders import load_visual_encoder
            from extract.encoders.base import VISUAL_WITHOUT_SOURCE
            from extract.store.quantize import TokenStorage

            _quiet_model_loading()
            kwargs: dict[str, Any] = {"device": self.cfg.device, "layer": self.cfg.visual_layer}
            if name not in VISUAL_WITHOUT_SOURCE:  # model encoders quantise/pool on the device
                kwargs["token_storage"] = TokenStorage(
                    kind=self.cfg.token_dtype, pool=self.cfg.patch_pool
                )
            if name == "convnext":  # augmented local views (view_augment.py), or none
                kwargs["local"] = "views" if self.cfg.local_views > 0 else "none"
                kwargs["views"] = max(self.cfg.local_views, 1)
                kwargs["view_seed"] = self.cfg.view_seed
            self._visual[name] = load_visual_encoder(name, self.cfg.visual[name], **kwargs)
            self.loaded.append(f"visual:{name}")
        return self._visual[name]

    def audio(self, name: str):
        if name not in self._audio:
            from extract.encoders import AUDIO_WITHOUT_SOURCE, load_audio_encoder

            _quiet_model_loading()
            kwargs: dict[str, Any] = {"device": self.cfg.device}
            if self.cfg.audio_layers and name not in AUDIO_WITHOUT_SOURCE:
                kwargs["layers"] = list(self.cfg.audio_layers)
            self._audio[name] = load_audio_encoder(name, self.cfg.audio[name], **kwargs)
            self.loaded.append(f"audio:{name}")
        return self._audio[name]

    def share_with(self, other: ModelCache) -> None:
        """Use `other`'s loaded models (benchmarks time a second job without reloading)."""
        self._backend, self._visual, self._audio = other._backend, other._visual, other._audio


def _quiet_model_loading() -> None:
    """One progress bar for the job: no per-model weight-loading bars from transformers."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # transformers is a dependency; without it the encoders report it
        return
    hf_logging.disable_progress_bar()
