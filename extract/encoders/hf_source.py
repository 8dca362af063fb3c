"""Where a transformers model comes from: a hub id or a local folder, and a fingerprint of it.

Models always load through `from_pretrained` (the library's own code path), on a
hub id (resolved from the local hub cache when offline) or on a folder written
by `save_pretrained` / `huggingface-cli download --local-dir`. A missing model
gives one error that says how to get it. The fingerprint names the exact weights:
the hub revision (commit hash) when known, else a content hash of the folder's
config and weight files.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from data_manifest.user_error import UserError

# Files whose bytes define the numbers a model produces.
_HASHED_SUFFIXES = (".json", ".safetensors", ".bin", ".pt", ".pth")
_HASHED_SKIP = ("tokenizer", "vocab", "merges", "special_tokens", "added_tokens")


class ModelSourceError(UserError):
    """A model folder or hub id that cannot be loaded; the message says how to get it."""


def looks_like_path(source: str) -> bool:
    """True for things meant as folders (absolute, relative with a dot, or existing)."""
    return (
        os.path.isabs(source)
        or source.startswith((".", "~"))
        or os.path.exists(source)
        or source.count("/") > 1
    )


def missing_model_message(source: str, what: str, example_id: str) -> str:
    return (
        f"{what} model {source!r} not found. Download it once where there is network, e.g. "
        f"`huggingface-cli download {example_id} --local-dir /models/{example_id.split('/')[-1]}`, "
        f"and pass that folder (or a hub id already in the local Hugging Face cache, HF_HOME)."
    )


def check_source(source: str, what: str, example_id: str) -> str:
    """Expand a folder path and check it exists; hub ids pass through unchanged."""
    if not source:
        raise ModelSourceError(missing_model_message("", what, example_id))
    if looks_like_path(source):
        path = os.path.abspath(os.path.expanduser(source))
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise ModelSourceError(missing_model_message(path, what, example_id))
        return path
    return source


def load_pretrained(model_cls: Any, source: str, what: str, example_id: str, **kwargs: Any) -> Any:
    """`model_cls.from_pretrained(source)` with a clear error when the model is not available."""
    source = check_source(source, what, example_id)
    try:
        return model_cls.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelSourceError(
            f"{missing_model_message(source, what, example_id)} ({exc})"
        ) from exc


def read_source_json(source: str, filename: str, revision: str | None = None) -> dict | None:
    """A JSON file of the model (e.g. preprocessor_config.json), or None if it has none."""
    if os.path.isdir(source):
        path = os.path.join(source, filename)
    else:
        from huggingface_hub import hf_hub_download

        try:
            path = hf_hub_download(source, filename, revision=revision)
        except Exception:  # any hub failure means "no such file here"; the caller falls back
            return None
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def folder_content_hash(folder: str) -> str:
    """sha256 over the names and bytes of a folder's config and weight files (sorted)."""
    digest = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        lower = name.lower()
        if not lower.endswith(_HASHED_SUFFIXES) or lower.startswith(_HASHED_SKIP):
            continue
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        digest.update(name.encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def source_fields(source: str, model: Any) -> dict[str, Any]:
    """Fingerprint fields that name the weights: model id, revision or folder content hash."""
    fields: dict[str, Any] = {
        "model": source,
        "model_type": getattr(model.config, "model_type", ""),
    }
    if os.path.isdir(source):
        fields["model"] = os.path.basename(os.path.normpath(source))
        fields["content_hash"] = folder_content_hash(source)
    else:
        fields["revision"] = getattr(model.config, "_commit_hash", None) or "unknown"
    return fields
