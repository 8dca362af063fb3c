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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from data_manifest.aus import AUS
from data_manifest.cli_support import UserError
from train import data as D
from train.checkpoint import atomic_write_text, load_checkpoint, rng_state, save_checkpoint
from train.config import TrainConfig
from train.distributed import DistInfo, barrier, cleanup, init_distributed, mean_across
from train.metrics import binarize, mean_f1
from train.optim import param_groups
from train.run import BEST, CONFIG_FILE, HISTORY_FILE, LAST, write_run_info
from train.thresholds import tune_thresholds

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
    out = Path(out)
    info, device = init_distributed(config.optim.device)
    try:
        return _fit(
            config,
            str(store),
            manifest,
            out,
            info,
            device,
            train_rows,
            val_rows,
            stop_after_epochs,
            progress,
            loss_factory or default_loss_factory,
            extra_run_info or {},
        )
    finally:
        cleanup(info)


def _check_resume_config(out: Path, config: TrainConfig) -> bool:
    """True when `out` holds a run to resume; refuses a different configuration."""
    if not (out / LAST).exists():
        return False
    saved = json.loads((out / CONFIG_FILE).read_text()) if (out / CONFIG_FILE).exists() else None
    if saved is not None and saved != json.loads(json.dumps(config.to_dict())):
        diff = sorted(k for k in saved if saved.get(k) != config.to_dict().get(k))
        raise UserError(
            f"{out} holds a run with a different configuration (sections {diff}); "
            "use another --out to start a new run"
        )
    return True


def _fit(
    config: TrainConfig,
    store: str,
    manifest: str | pd.DataFrame,
    out: Path,
    info: DistInfo,
    device: torch.device,
    train_rows: pd.DataFrame | None,
    val_rows: pd.DataFrame | None,
    stop_after_epochs: int | None,
    progress: bool,
    loss_factory: LossFactory,
    extra_run_info: dict[str, Any],
) -> dict[str, Any]:
    cfg, opt_cfg = config.data, config.optim
    resume = _check_resume_config(out, config)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    seed_everything(opt_cfg.seed)

    reader = D.open_store(store)
    man = manifest if isinstance(manifest, pd.DataFrame) else D.read_manifest(manifest)
    if train_rows is None:
        train_rows = D.split_rows(man, cfg.train_split, cfg.max_tracks)
    if val_rows is None:
        val_rows = D.split_rows(man, cfg.val_split, cfg.max_tracks)
    train_rows = D.check_tracks(reader, train_rows, "train")
    val_rows = D.check_tracks(reader, val_rows, "val")
    if not len(train_rows):
        raise UserError(f"no training track of the manifest is complete in the store {store}")

    from train.models import build_model

    dims = D.feature_dims(reader, str(train_rows["track_id"].iloc[0]), cfg.features)
    try:
        model = build_model(config.model, dims).to(device)
    except KeyError as exc:
        raise UserError(f"model {config.model}: {exc.args[0]}") from exc
    except TypeError as exc:
        raise UserError(f"model {config.model} with store dims {dims}: {exc}") from exc
    keys = D.required_keys(model, cfg.features)
    paths = [cfg.features[k] for k in keys] + [cfg.face_valid]
    if "audio" in keys:
        paths.append(cfg.audio_valid)
    groups = D.check_groups(
        reader, paths, list(train_rows["track_id"]) + list(val_rows["track_id"])
    )
    fingerprints = D.group_fingerprints(reader, groups)

    in_memory = cfg.cache in ("ram", "gpu")
    if cfg.cache not in ("ram", "gpu", "none"):
        raise UserError(f"data.cache must be ram, gpu or none, got {cfg.cache!r}")
    train_tracks = [
        D.load_track(reader, r, cfg.features, keys, cfg, in_memory)
        for _, r in train_rows.iterrows()
    ]
    val_tracks = (
        [
            D.load_track(reader, r, cfg.features, keys, cfg, in_memory)
            for _, r in val_rows.iterrows()
        ]
        if info.is_main
        else []
    )
    D.report_label_notes(train_tracks + val_tracks, "train+val")
    rates = D.positive_rates(train_tracks)
    if info.is_main:
        log.info("train: %d tracks, positive rates %s", len(train_tracks), D.format_rates(rates))
        if val_tracks:
            log.info(
                "val: %d tracks, positive rates %s",
                len(val_tracks),
                D.format_rates(D.positive_rates(val_tracks)),
            )

    windows = D.training_windows(train_tracks, cfg)
    weights = D.window_weights(train_tracks, windows, cfg) if config.imbalance.sampler else None
    loss_spec = dict(config.loss)
    if loss_spec.get("name") == "bce" and "pos_weight" not in loss_spec:
        loss_spec["pos_weight"] = D.pos_weights(train_tracks, config.imbalance)
    loss_fn = loss_factory(loss_spec)

    cache_device = device if cfg.cache == "gpu" else torch.device("cpu")
    source = (
        D.TensorWindows(train_tracks, keys, cfg, device=cache_device)
        if in_memory
        else D.StoreWindows(store, train_tracks, windows, cfg.features, keys, cfg)
    )
    per_rank = len(windows) // info.world if info.world > 1 else len(windows)
    steps_per_epoch = max(1, math.ceil(per_rank / opt_cfg.batch_size))
    if opt_cfg.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, opt_cfg.steps_per_epoch)
    total_steps = steps_per_epoch * opt_cfg.epochs

    optimizer = torch.optim.AdamW(param_groups(model, opt_cfg.weight_decay), lr=opt_cfg.lr)
    start_epoch, step, best = 0, 0, float("-inf")
    if resume:
        state, meta = load_checkpoint(out / LAST, map_location=device)
        check_resume_store(out, meta, reader, fingerprints)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        from train.checkpoint import set_rng_state

        set_rng_state(state["rng"])
        start_epoch, step, best = int(meta["epoch"]), int(meta["step"]), float(meta["best"])
        if info.is_main:
            log.info("resuming %s at epoch %d (step %d)", out, start_epoch, step)
            _truncate_history(out / HISTORY_FILE, start_epoch)
    elif info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        config.save(out / CONFIG_FILE)
        (out / HISTORY_FILE).write_text("")
    if info.is_main:
        write_run_info(
            out,
            {
                "store": _abs(store),
                "manifest": _abs(str(manifest)) if isinstance(manifest, (str, Path)) else "",
                "folds": 0,
                "recipe": config.recipe,
                **extra_run_info,
            },
        )
    barrier(info)

    ddp_model = model
    if info.enabled:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    amp = autocast_dtype(opt_cfg.precision, device)
    end_epoch = (
        opt_cfg.epochs if stop_after_epochs is None else min(opt_cfg.epochs, stop_after_epochs)
    )
    meta_common = {
        "config": config.to_dict(),
        "dims": dims,
        "keys": keys,
        "store_fingerprints": fingerprints,
        "store_fields": {g: reader.groups.get(g, {}).get("fields", {}) for g in fingerprints},
        "store_schema": _store_schema(),
        "aus": list(AUS),
    }
    last_val: dict[str, Any] = {}
    for epoch in range(start_epoch, end_epoch):
        t0 = time.time()
        order = D.epoch_order(len(windows), epoch, opt_cfg.seed, weights, info.rank, info.world)
        model.train()
        losses = []
        batches = _batches(source, windows, order, cfg, opt_cfg, steps_per_epoch, device)
        bar = _progress(
            batches,
            steps_per_epoch,
            f"epoch {epoch + 1}/{opt_cfg.epochs}",
            progress and info.is_main,
        )
        for batch in bar:
            factor = lr_factor(step, total_steps, opt_cfg.warmup, opt_cfg.min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = opt_cfg.lr * factor
            with torch.autocast(
                device_type=device.type, dtype=amp or torch.bfloat16, enabled=amp is not None
            ):
                logits = ddp_model(batch)  # (B, T, A)
            loss = loss_fn(logits.float(), batch["labels"], batch["train_mask"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if opt_cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), opt_cfg.grad_clip)
            optimizer.step()
            step += 1
            losses.append(float(loss.detach()))
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{opt_cfg.lr * factor:.2e}")
        train_loss = mean_across(float(np.mean(losses)) if losses else float("nan"), info, device)
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": step,
            "train_loss": train_loss,
            "lr": opt_cfg.lr
            * lr_factor(max(step - 1, 0), total_steps, opt_cfg.warmup, opt_cfg.min_lr_ratio),
        }
        if info.is_main:
            thresholds = [0.5] * len(AUS)
            if val_tracks:
                probs = D.predict_probs(
                    model,
                    val_tracks,
                    keys,
                    cfg,
                    opt_cfg.batch_size,
                    device,
                    amp,
                    reader,
                    cfg.features,
                )
                model.train()
                p, y = D.stack_labels(val_tracks, probs)
                tuned = tune_thresholds(p, y)
                thresholds = tuned.tolist()
                record["val_mean_f1"] = mean_f1(binarize(p, tuned), y)
                record["val_mean_f1_at_0.5"] = mean_f1(binarize(p, 0.5), y)
                record["val_loss"] = float(
                    loss_fn(
                        torch.logit(torch.from_numpy(p).clamp(1e-6, 1 - 1e-6))[None],
                        torch.from_numpy(y).float()[None],
                        torch.ones(1, len(y), dtype=torch.bool),
                    )
                )
            record["seconds"] = round(time.time() - t0, 3)
            score = record.get("val_mean_f1", -train_loss)
            is_best = score > best
            best = max(best, score)
            last_val = record
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": rng_state(),
            }
            meta = {
                **meta_common,
                "epoch": epoch + 1,
                "step": step,
                "best": best,
                "thresholds": thresholds,
                "val": record,
            }
            save_checkpoint(out / LAST, state, meta)
            if is_best:
                save_checkpoint(out / BEST, {"model": model.state_dict()}, meta)
            with open(out / HISTORY_FILE, "a") as f:
                f.write(json.dumps(record) + "\n")
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
        "out": str(out),
        "epochs_done": end_epoch,
        "step": step,
        "best": best,
        "last": last_val,
        "param_sum": param_sum,  # equal on every DDP rank; a cheap identity check
    }


def _batches(source, windows, order, cfg, opt_cfg, steps_per_epoch, device):
    """Batches of one epoch in `order`, moved to `device`."""
    bs = opt_cfg.batch_size
    if isinstance(source, D.TensorWindows):
        for b in range(steps_per_epoch):
            sel = windows[order[b * bs : (b + 1) * bs]]
            if not len(sel):
                return
            batch = source.gather(sel[:, 0], sel[:, 1], cfg.window)
            yield {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        return
    loader = torch.utils.data.DataLoader(
        source,
        batch_size=bs,
        sampler=[int(i) for i in order[: steps_per_epoch * bs]],
        num_workers=cfg.workers,
        pin_memory=cfg.pin_memory and device.type == "cuda",
        persistent_workers=False,
        # its own generator: the loader must not draw from the global RNG (dropout's), so both
        # loaders train identically and resumed runs repeat
        generator=torch.Generator().manual_seed(opt_cfg.seed),
    )
    for batch in loader:
        yield {k: v.to(device, non_blocking=True) for k, v in batch.items()}


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
    k = int(config.folds.k or 0)
    if k <= 1:
        return fit(config, store, manifest, out, **kwargs)
    from train.folds import assign_folds

    out = Path(out)
    man = D.read_manifest(manifest)
    cfg = config.data
    pooled = pd.concat(
        [
            D.split_rows(man, cfg.train_split, cfg.max_tracks),
            D.split_rows(man, cfg.val_split, cfg.max_tracks),
        ]
    ).reset_index(drop=True)
    reader = D.open_store(store)
    pooled = D.check_tracks(reader, pooled, "folds")
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
