"""The fingerprint fields of every array group a job writes, known before any model is loaded.

A rerun over a finished store must decide "nothing to do" without loading a landmark model or
an encoder, so a group's fields come from the job's settings and from the model files
themselves: a model folder is named by a hash of its config and weight files, a hub id by the
commit of its locally cached snapshot. Both pin the weights, the architecture and the
preprocessing (config.json, preprocessor_config.json), so the fields change exactly when the
numbers can. What a track actually went through (aligned input or not, the detector used, the
loaded encoder's own fields) is recorded per track when it is written (see stages.py).
"""

from __future__ import annotations

import json
import logging
import os
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from data_manifest.user_error import UserError
from extract.job.config import ExtractConfig
from extract.store.schema import AUDIO_VALID_GROUP, FACE_GROUP, audio_group, visual_group

FACE_SHAPE_VERSION = "mean68-v1"
AUDIO_POOL_RULE = "overlap-mean-v1"
SAMPLE_RATE = 16000
_BACKEND_PACKAGES = {"fan": "face-alignment", "mediapipe": "mediapipe"}
log = logging.getLogger("auwild.extract")
_warned_constant_geometry: set[str] = set()


def device_kind(device: str) -> str:
    """ "cuda" or "cpu": the precision an encoder runs at depends on which (not on the index)."""
    device = str(device)
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if device.startswith("cuda") else device.split(":")[0]


def model_identity(source: str) -> dict[str, Any]:
    """Name the exact weights of a model folder or hub id without loading them."""
    from extract.encoders.hf_source import check_source, folder_content_hash

    if os.path.isdir(os.path.expanduser(source)) or os.path.isabs(source):
        path = check_source(source, "model", source)
        return {
            "model": os.path.basename(os.path.normpath(path)),
            "model_type": _model_type(os.path.join(path, "config.json")),
            "content_hash": folder_content_hash(path),
        }
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(source, "config.json")
    if not isinstance(cached, str):  # not in the local cache: loading would fail the same way
        return {"model": source, "revision": "unknown"}
    revision = os.path.basename(os.path.dirname(cached))  # snapshots/<commit>/config.json
    return {"model": source, "model_type": _model_type(cached), "revision": revision}


def _model_type(config_json: str) -> str:
    try:
        with open(config_json, encoding="utf-8") as f:
            return str(json.load(f).get("model_type", ""))
    except (OSError, ValueError):
        return ""


def face_fields(cfg: ExtractConfig) -> dict[str, Any]:
    """Settings that change the face arrays; the per-track backend mode is recorded per track."""
    from extract.regions import REGION_VERSION

    fields: dict[str, Any] = {
        "landmarks": cfg.landmarks,
        "crop_size": cfg.crop_size,
        "region_version": REGION_VERSION,
        "face_shape": FACE_SHAPE_VERSION,
        "visual_input": cfg.visual_input,
        "detect_every": cfg.detect_every,
    }
    package = _BACKEND_PACKAGES.get(cfg.landmarks)
    if package:
        try:
            fields["backend_version"] = version(package)
        except PackageNotFoundError:
            fields["backend_version"] = "missing"
    return fields


def visual_fields(cfg: ExtractConfig, name: str, face: dict[str, Any]) -> dict[str, Any]:
    from extract.encoders import (
        VISUAL_WITHOUT_SOURCE,
        known_visual_encoders,
        visual_definition_fields,
    )

    source = cfg.visual[name]
    if name not in known_visual_encoders():
        raise UserError(f"unknown visual encoder {name!r}; known: {known_visual_encoders()}")
    if name in VISUAL_WITHOUT_SOURCE:  # defined by its code alone (numpy on the CPU)
        if source:
            raise UserError(f"visual encoder {name!r} takes no model source; write {name}")
        template = cfg.landmarks.split(":")[0] == "template"  # "template" or "template:<det>"
        if template and name not in _warned_constant_geometry:
            _warned_constant_geometry.add(name)  # once per process, not per planning pass
            log.warning(
                "%s: with --landmarks template every face has the mean shape, so its landmark "
                "geometry is the same on every frame; use fan or mediapipe for it to vary",
                name,
            )
        return {**visual_definition_fields(name), "face": face}
    if not source:
        raise UserError(f"visual encoder {name!r} needs a model: write {name}=HUB_ID_OR_FOLDER")
    fields = {
        "encoder": name,
        **model_identity(source),
        "layer": cfg.visual_layer if cfg.visual_layer is not None else "last",
        "compute": device_kind(cfg.device),
        "face": face,
        "token_dtype": cfg.token_dtype,
        "patch_pool": cfg.patch_pool,
    }
    if name == "convnext":  # a store's local views are all drawn the same way, or refused
        fields["local_views"] = local_view_fields(cfg)
    return fields


def local_view_fields(cfg: ExtractConfig) -> dict[str, Any] | str:
    """ConvNeXt's local views: "none", or K and how they are drawn (view_augment.py)."""
    from extract.encoders.view_augment import ViewAugment

    if cfg.local_views <= 0:
        return "none"
    return ViewAugment(views=cfg.local_views, seed=cfg.view_seed).fields()


def audio_fields(cfg: ExtractConfig, name: str) -> dict[str, Any]:
    source = cfg.audio[name]
    fields: dict[str, Any] = {
        "encoder": name,
        "sample_rate": SAMPLE_RATE,
        "pool_rule": AUDIO_POOL_RULE,
    }
    if source:  # model-backed (wavlm, whisper); logmel is defined by the code alone
        fields.update(model_identity(source))
        fields["layers"] = list(cfg.audio_layers) if cfg.audio_layers else "last"
        fields["compute"] = device_kind(cfg.device)
    return fields


def group_fields(cfg: ExtractConfig) -> dict[str, dict[str, Any]]:
    """{group: fields} for every array group the job writes, in writing order."""
    fields: dict[str, dict[str, Any]] = {}
    if cfg.visual:
        face = face_fields(cfg)
        fields[FACE_GROUP] = face
        for name in cfg.visual:
            fields[visual_group(name)] = visual_fields(cfg, name, face)
    if cfg.audio:
        fields[AUDIO_VALID_GROUP] = {"sample_rate": SAMPLE_RATE, "pool_rule": AUDIO_POOL_RULE}
        for name in cfg.audio:
            fields[audio_group(name)] = audio_fields(cfg, name)
    return fields
