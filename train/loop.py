"""The training loop: AdamW, warm-up + cosine, bf16 autocast on GPUs, clipping, resume, DDP.

Resume rule: `fit` on a run directory that already holds `last.pt` continues from it and ends
exactly where an uninterrupted run would. Checkpoints are taken at epoch ends and hold the
model, the optimizer, every RNG state, the epoch and the step; the learning rate is a pure
function of the step and the window order a pure function of (seed, epoch), so nothing else
needs saving. The run's own `config.json` must match the requested configuration.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from data_manifest.aus import AUS
from data_manifest.user_error import UserError
from train.checkpoint import (
    atomic_write_text,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from train.config import ConfigError, TrainConfig, from_dict
from train.distributed import DistInfo, barrier, cleanup, init_distributed, mean_across
from train.inference import model_device, predict_probs, stack_labels
from train.metrics import binarize, mean_f1
from train.optim import load_optimizer_state, param_groups
from train.run import BEST, CONFIG_FILE, HISTORY_FILE, LAST, write_run_info
from train.thresholds import tune_thresholds
from train.tracks import check_tracks, open_store, read_manifest, required_keys, split_rows
from train.train_data import TrainData, build_data, open_split
from train.windows import epoch_order

log = logging.getLogger(__name__)

LossFactory = Callable[[dict[str, Any]], Callable[..., torch.Tensor]]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_factor(step: int, total: int, warmup: float, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to `min_ratio` at `total` steps."""
    warm = int(round(warmup * total)) if 0 < warmup < 1 else int(warmup)
    if warm > 0 and step < warm:
        return (step + 1) / warm
    span = max(total - warm, 1)
    progress = min(max(step - warm, 0) / span, 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp32":
        return None
    raise UserError(f"optim.precision must be auto, bf16 or fp32, got {precision!r}")


def default_loss_factory(spec: dict[str, Any]):
    from train.losses import build_loss

    return build_loss(spec)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def fit(
    config: TrainConfig,
    store: str,
    manifest: str | pd.DataFrame,
    out: str | Path,
    *,
    train_rows: pd.DataFrame | None = None,
    val_rows: pd.DataFrame | None = None,
    stop_after_epochs: int | None = None,
    progress: bool = True,
    loss_factory: LossFactory | None = None,
    extra_run_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train one model into `out` (resuming if `out/last.pt` exists); returns a summary.

    `train_rows` / `val_rows` replace the manifest's splits (cross-validation folds).
    `stop_after_epochs` ends this call early after that many epochs in total, as an
    interruption would (the next call resumes)."""
    config.validate()
    info, device = init_distributed(config.optim.device)
    try:
        return do_train(
            config,
            RunPlan(
                store=str(store),
                manifest=manifest,
                out=Path(out),
                train_rows=train_rows,
                val_rows=val_rows,
                stop_after_epochs=stop_after_epochs,
                progress=progress,
                loss_factory=loss_factory or default_loss_factory,
                extra_run_info=extra_run_info or {},
            ),
            info,
            device,
        )
    finally:
        cleanup(info)


@dataclass
class RunPlan:
    """Where a run reads and writes, and how this call of it behaves."""

    store: str
    manifest: str | pd.DataFrame
    out: Path
    train_rows: pd.DataFrame | None = None
    val_rows: pd.DataFrame | None = None
    stop_after_epochs: int | None = None
    progress: bool = True
    loss_factory: LossFactory = default_loss_factory
    extra_run_info: dict[str, Any] = field(default_factory=dict)


def _check_resume_config(out: Path, config: TrainConfig) -> bool:
    """True when `out` holds a run to resume; refuses a different configuration."""
    if not (out / LAST).exists():
        return False
    saved = json.loads((out / CONFIG_FILE).read_text()) if (out / CONFIG_FILE).exists() else None
    if saved is not None:
        saved = _resolved(saved)
    now = json.loads(json.dumps(config.to_dict()))
    if saved is not None and saved != now:
        from extract.store.fingerprint import describe_diff

        raise UserError(
            f"{out} holds a run with a different configuration ({describe_diff(saved, now, ('run', 'now'))}); "
            "use another --out to start a new run"
        )
    return True


def _resolved(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved config.json with every default filled in as this version resolves it (a run
    written before model and loss configs were typed lists only the keys its recipe set)."""
    try:
        return json.loads(json.dumps(from_dict(saved).to_dict()))
    except ConfigError:
        return saved  # no longer loads: compared as written, so the difference is named


def build_model_for(config: TrainConfig, dims: dict[str, Any], device: torch.device):
    from train.models import build_model

    try:
        return build_model(config.model, dims).to(device)
    except KeyError as exc:
        features = config.data.features
        missing = [  # feature paths the recipe reads that gave no size: not in the store
            path for key, path in features.items() if {"rois": "n_rois"}.get(key, key) not in dims
        ]
        if missing:
            raise UserError(
                f"model {config.model.name!r} needs {exc.args[0]!r}, and the store has no "
                f"{', '.join(missing)} (data.features); extract them with auwild-extract run, or "
                "point data.features at arrays the store has (auwild-extract inspect lists them)"
            ) from exc
        raise UserError(f"model {config.model.to_dict()}: {exc.args[0]}") from exc
    except TypeError as exc:
        raise UserError(f"model {config.model.to_dict()} with store dims {dims}: {exc}") from exc


def loss_spec(config: TrainConfig, data: TrainData) -> dict[str, Any]:
    """The loss spec `{"name": ..., fields...}` for the loss factory, with BCE positive weights
    from imbalance.pos_weight (the training labels) unless loss.pos_weight gives them."""
    spec = config.loss.to_dict()
    if spec["name"] == "bce" and spec.get("pos_weight") is None:
        spec["pos_weight"] = data.pos_weight
    return spec


@dataclass
class Progress:
    epoch: int = 0
    step: int = 0
    best: float = float("-inf")


class Checkpointer:
    """The run folder's checkpoints: resume from `last.pt` (same config, same store) or start."""

    def __init__(self, out: Path, config: TrainConfig, info: DistInfo):
        self.out, self.config, self.info = out, config, info
        self.resume = _check_resume_config(out, config)

    def resume_or_start(self, model, optimizer, data: TrainData, run_info, device) -> Progress:
        out, info = self.out, self.info
        reader = data.reader
        self.meta = {
            "config": self.config.to_dict(),
            "dims": data.split.dims,
            "keys": data.keys,
            "store_fingerprints": data.fingerprints,
            "store_fields": {
                g: reader.groups.get(g, {}).get("fields", {}) for g in data.fingerprints
            },
            "store_schema": _store_schema(),
            "aus": list(AUS),
        }
        progress = Progress()
        if self.resume:
            state, meta = load_checkpoint(out / LAST, map_location=device)
            check_resume_store(out, meta, reader, data.fingerprints)
            model.load_state_dict(state["model"])
            load_optimizer_state(optimizer, model, state["optimizer"])
            set_rng_state(state["rng"])
            progress = Progress(int(meta["epoch"]), int(meta["step"]), float(meta["best"]))
            if info.is_main:
                log.info("resuming %s at epoch %d (step %d)", out, progress.epoch, progress.step)
                _truncate_history(out / HISTORY_FILE, progress.epoch)
        elif info.is_main:
            out.mkdir(parents=True, exist_ok=True)
            self.config.save(out / CONFIG_FILE)
            atomic_write_text(out / HISTORY_FILE, "")
        if info.is_main:
            write_run_info(out, run_info)
        barrier(info)
        return progress

    def save(self, model, optimizer, progress: Progress, record, thresholds, is_best) -> None:
        """last.pt (and best.pt when `is_best`) and one history line; rank 0 only."""
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": rng_state(),
        }
        meta = {
            **self.meta,
            "epoch": progress.epoch,
            "step": progress.step,
            "best": progress.best,
            "thresholds": thresholds,
            "val": record,
        }
        save_checkpoint(self.out / LAST, state, meta)
        if is_best:
            save_checkpoint(self.out / BEST, {"model": model.state_dict()}, meta)
        with open(self.out / HISTORY_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")


@torch.no_grad()
def evaluate(model, data: TrainData, config: TrainConfig, loss_fn, amp, device) -> dict[str, Any]:
    """Validation record: F1 at tuned thresholds and at 0.5, loss, and the tuned thresholds."""
    if not data.val_tracks:
        return {"thresholds": [0.5] * len(AUS)}
    cfg = config.data
    probs = predict_probs(
        model,
        data.val_tracks,
        data.keys,
        cfg,
        data.batch_size,
        device,
        amp,
        data.reader,
        cfg.features,
        table=data.val_table,
    )
    p, y = stack_labels(data.val_tracks, probs)
    tuned = tune_thresholds(p, y)
    val_loss = loss_fn(
        torch.logit(torch.from_numpy(p).clamp(1e-6, 1 - 1e-6))[None],
        torch.from_numpy(y).float()[None],
        torch.ones(1, len(y), dtype=torch.bool),
    )
    return {
        "val_mean_f1": mean_f1(binarize(p, tuned), y),
        "val_mean_f1_at_0.5": mean_f1(binarize(p, 0.5), y),
        "val_loss": float(val_loss),
        "thresholds": tuned.tolist(),
    }


def do_train(config: TrainConfig, plan: RunPlan, info: DistInfo, device: torch.device):
    """Setup is calls (data, model, optimizer, checkpointer); then the loop over epochs."""
    opt = config.optim
    ckpt = Checkpointer(plan.out, config, info)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    seed_everything(opt.seed)
    split = open_split(config, plan.store, plan.manifest, plan.train_rows, plan.val_rows)
    model = build_model_for(config, split.dims, device)
    data = build_data(config, split, required_keys(model, config.data.features), device, info)
    loss_fn = plan.loss_factory(loss_spec(config, data))
    optimizer = torch.optim.AdamW(param_groups(model, opt.weight_decay), lr=opt.lr)
    state = ckpt.resume_or_start(model, optimizer, data, _run_info(config, plan), device)
    ddp_model = _wrap_ddp(model, info, device)
    amp = autocast_dtype(opt.precision, device)
    total = data.steps_per_epoch * opt.epochs
    end = opt.epochs if plan.stop_after_epochs is None else min(opt.epochs, plan.stop_after_epochs)
    last: dict[str, Any] = {}
    for epoch in range(state.epoch, end):
        t0 = time.time()
        order = epoch_order(len(data.windows), epoch, opt.seed, data.weights, info.rank, info.world)
        batches = data.loader.epoch(order[: data.steps_per_epoch * data.batch_size])
        bar = _progress(
            batches,
            data.steps_per_epoch,
            f"epoch {epoch + 1}/{opt.epochs}",
            plan.progress and info.is_main,
        )
        train_loss = train_epoch(ddp_model, model, bar, optimizer, loss_fn, state, total, opt, amp)
        train_loss = mean_across(train_loss, info, device)
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": state.step,
            "train_loss": train_loss,
            "lr": opt.lr * lr_factor(max(state.step - 1, 0), total, opt.warmup, opt.min_lr_ratio),
        }
        state.epoch = epoch + 1
        if info.is_main:
            record.update(evaluate(model, data, config, loss_fn, amp, device))
            thresholds = record.pop("thresholds")
            record["seconds"] = round(time.time() - t0, 3)
            score = record.get("val_mean_f1", -train_loss)
            is_best, state.best = score > state.best, max(state.best, score)
            ckpt.save(model, optimizer, state, record, thresholds, is_best)
            last = record
            log.info(
                "epoch %d: loss %.4f val F1 %s",
                epoch + 1,
                train_loss,
                _fmt(record.get("val_mean_f1")),
            )
        barrier(info)
    with torch.no_grad():
        param_sum = float(sum(p.double().sum() for p in model.parameters()))
    return {
        "out": str(plan.out),
        "epochs_done": end,
        "step": state.step,
        "best": state.best,
        "last": last,
        "param_sum": param_sum,  # equal on every DDP rank; a cheap identity check
    }


def train_epoch(ddp_model, model, batches, optimizer, loss_fn, state: Progress, total, opt, amp):
    """One pass over `batches`; returns the mean loss. The loss is read from the device only at
    log steps (`optim.log_every`) and once at the end: each read waits for the device."""
    device = model_device(model)
    model.train()
    loss_sum, n = torch.zeros((), dtype=_sum_dtype(device), device=device), 0
    for batch in batches:
        lr = opt.lr * lr_factor(state.step, total, opt.warmup, opt.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
            logits = ddp_model(batch)  # (B, T, A)
        loss = loss_fn(logits.float(), batch["labels"], batch["train_mask"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if opt.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), opt.grad_clip)
        optimizer.step()
        state.step, n = state.step + 1, n + 1
        loss_sum += loss.detach()
        if state.step % opt.log_every == 0 and hasattr(batches, "set_postfix"):
            batches.set_postfix(loss=f"{float(loss):.4f}", lr=f"{lr:.2e}")
    return float(loss_sum) / max(n, 1)


def _sum_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def _wrap_ddp(model: torch.nn.Module, info: DistInfo, device: torch.device):
    if not info.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def _run_info(config: TrainConfig, plan: RunPlan) -> dict[str, Any]:
    manifest = plan.manifest
    return {
        "store": _abs(plan.store),
        "manifest": _abs(str(manifest)) if isinstance(manifest, (str, Path)) else "",
        "folds": 0,
        "recipe": config.recipe,
        **plan.extra_run_info,
    }


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="step", leave=False, dynamic_ncols=True)


def check_resume_store(
    out: Path, meta: dict[str, Any], reader, fingerprints: dict[str, str]
) -> None:
    """Refuse to resume on a store whose group fingerprints changed since the checkpoint.

    The remaining epochs would otherwise train on other features than the first ones did.
    """
    from extract.store.fingerprint import describe_diff

    saved = meta.get("store_fingerprints") or {}
    saved_fields = meta.get("store_fields") or {}
    changed = []
    for group, now in sorted(fingerprints.items()):
        before = saved.get(group)
        if before is None or before == now:
            continue
        fields = ""
        if group in saved_fields:
            fields = describe_diff(
                saved_fields[group],
                reader.groups.get(group, {}).get("fields", {}),
                ("checkpoint", "store"),
            )
        changed.append(f"{group} ({fields or f'fingerprint {before} -> {now}'})")
    missing = sorted(set(saved) - set(fingerprints))
    if changed or missing:
        what = "; ".join(changed + [f"{g} (not used now)" for g in missing])
        raise UserError(
            f"{out}: cannot resume, the store changed since {LAST} was written: {what}. "
            "Train into a new run folder (or delete this one) to start over."
        )


def _truncate_history(path: Path, epochs: int) -> None:
    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    kept = [ln for ln in lines if json.loads(ln).get("epoch", 0) <= epochs]
    atomic_write_text(path, "".join(ln + "\n" for ln in kept))


def _abs(path: str) -> str:
    if "://" in str(path):
        return str(path)
    return str(Path(path).resolve())


def _store_schema() -> int | None:
    try:
        from extract.store.schema import SCHEMA_VERSION
    except ImportError:
        return None
    return SCHEMA_VERSION


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def fit_run(
    config: TrainConfig, store: str, manifest: str, out: str | Path, **kwargs: Any
) -> dict[str, Any]:
    """`fit` for a whole run: one model, or one per fold when `config.folds.k` > 1.

    Folds pool the manifest's train and val tracks and group them by video; fold i trains on
    the others and validates on fold i, into RUN/fold_<i>/."""
    config.validate()
    k = int(config.folds.k or 0)
    if k <= 1:
        return fit(config, store, manifest, out, **kwargs)
    from train.folds import assign_folds

    out = Path(out)
    man = read_manifest(manifest)
    cfg = config.data
    pooled = pd.concat(
        [
            split_rows(man, cfg.train_split, cfg.max_tracks),
            split_rows(man, cfg.val_split, cfg.max_tracks),
        ]
    ).reset_index(drop=True)
    reader = open_store(store)
    pooled = check_tracks(reader, pooled, "folds")
    assignment = assign_folds(pooled, k, config.folds.seed)
    fold = pooled["track_id"].map(assignment)
    out.mkdir(parents=True, exist_ok=True)
    if (out / CONFIG_FILE).exists():
        saved = json.loads((out / CONFIG_FILE).read_text())
        if saved != json.loads(json.dumps(config.to_dict())):
            raise UserError(f"{out} holds a run with a different configuration; use another --out")
    else:
        config.save(out / CONFIG_FILE)
    atomic_write_text(out / "folds.json", json.dumps(assignment, indent=2, sort_keys=True) + "\n")
    write_run_info(
        out,
        {"store": _abs(store), "manifest": _abs(manifest), "folds": k, "recipe": config.recipe},
    )
    results = []
    for i in range(k):
        log.info("fold %d/%d", i + 1, k)
        results.append(
            fit(
                config,
                store,
                manifest,
                out / f"fold_{i}",
                train_rows=pooled[fold != i].reset_index(drop=True),
                val_rows=pooled[fold == i].reset_index(drop=True),
                extra_run_info={"fold": i, "parent": str(out.resolve())},
                **kwargs,
            )
        )
    return {"out": str(out), "folds": results}
