"""The ablation table: the rows of a recipe's ablation trained on one store and split.

Each row (e.g. abaw10: baseline, +FM, +HGA, +AG-SSM, +ASL, weighted BCE) is fitted per seed into
DIR/<i>_<row>/seed<k>/ and scored on the validation split at its tuned thresholds.
DIR/ablation.csv has columns row, mean_f1 (thresholds tuned on val, optimistic), honest_mean_f1
(thresholds from the other half of val's tracks; `train.predict.honest_f1`), one per AU
(optimistic; means over seeds) and, with several seeds, <column>_std. Finished fits are
reused, so a killed ablation resumes. `--set` overrides apply to every row, except that
`model.<field>` reaches only rows whose model's config has <field>, and `loss.<field>` only rows
whose loss's config has it.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from data_manifest.aus import AUS
from data_manifest.user_error import UserError
from train.config import ConfigError, TrainConfig, spec_classes
from train.loop import LossFactory, fit
from train.predict import HONEST_KEY, evaluate_run
from train.recipes import ABLATIONS, resolve

log = logging.getLogger(__name__)


def has_field(section: str, name: str, key: str) -> bool:
    """Whether the config of the registered model (section "model") or loss ("loss") `name` has
    field `key`; an unknown name keeps every key, so that loading the row names the name."""
    config = spec_classes(section).get(name)
    return config is None or key in {f.name for f in dataclasses.fields(config)}


def _row_name(section: str, spec: dict, overrides: list[str]) -> str:
    """The row's model (loss) name: the last `--set <section>.name=`, else the row's own."""
    names = [i.split("=", 1)[1].strip() for i in overrides if _key(i) == f"{section}.name"]
    if names:
        return names[-1]
    return spec.get(section, {}).get("name", getattr(TrainConfig(), section).name)


def _key(item: str) -> str:
    return item.split("=", 1)[0].strip()


def row_overrides(spec: dict, overrides: list[str], row: str) -> list[str]:
    """`--set` items for one row: `model.<field>=...` only reaches rows whose model's config has
    <field> and `loss.<field>=...` only rows whose loss's config has it, so one command line can
    shrink every row (e.g. model.d_model=16 skips frame_mlp) or tune the ASL row
    (loss.gamma_neg=2 skips the BCE rows). A field no registered config has is a ConfigError
    (did you mean ...), raised before any row trains."""
    kept = []
    for item in overrides:
        parts = _key(item).split(".")
        if len(parts) == 2 and parts[0] in ("model", "loss") and parts[1] != "name":
            section, key = parts
            name = _row_name(section, spec, overrides)
            if not any(has_field(section, n, key) for n in spec_classes(section)):
                raise _no_such_field(section, key)
            if not has_field(section, name, key):
                log.info("row %s: %s %s has no field %r; override skipped", row, section, name, key)
                continue
        kept.append(item)
    return kept


def _no_such_field(section: str, key: str) -> ConfigError:
    from data_manifest.user_error import did_you_mean

    known = sorted(
        {
            f"{section}.{f.name}"
            for c in spec_classes(section).values()
            for f in dataclasses.fields(c)
        }
    )
    hint = did_you_mean(f"{section}.{key}", known) or ";"
    return ConfigError(
        f"unknown config key '{section}.{key}'{hint} no registered {section} has it "
        f"(auwild-train recipes --fields NAME lists a {section}'s fields)"
    )


def row_dir(out: Path, index: int, row: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_-]+", "", row) or "row"
    return out / f"{index}_{slug}"


def ablate(
    recipe: str,
    store: str,
    manifest: str,
    out: str | Path,
    seeds: int = 1,
    overrides: list[str] | None = None,
    progress: bool = True,
    loss_factory: LossFactory | None = None,
    rows: list[str] | None = None,
) -> pd.DataFrame:
    """Train and score every ablation row of `recipe`; writes DIR/ablation.csv and returns it."""
    if recipe not in ABLATIONS:
        raise UserError(f"recipe {recipe!r} has no ablation; known: {sorted(ABLATIONS)}")
    if seeds < 1:
        raise UserError("--seeds must be at least 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = []
    for index, (name, spec) in enumerate(ABLATIONS[recipe]):
        if rows is not None and name not in rows:
            continue
        scores = []
        for seed in range(seeds):
            sets = row_overrides(spec, list(overrides or []), name) + [f"optim.seed={seed}"]
            config = resolve(None, sets, recipe=spec)
            config.recipe = f"{recipe}:{name}"
            config.folds.k = 0
            run = row_dir(out, index, name) / f"seed{seed}"
            log.info("ablation %s row %s seed %d -> %s", recipe, name, seed, run)
            fit(config, store, manifest, run, progress=progress, loss_factory=loss_factory)
            metrics = evaluate_run(run, "val")
            honest = metrics.get(HONEST_KEY)
            scores.append(
                [metrics["mean_f1"], np.nan if honest is None else honest]
                + [metrics["per_au_f1"][a] or 0.0 for a in AUS]
            )
        arr = np.asarray(scores, dtype=np.float64)  # (seeds, 2 + 12)
        entry = {"row": name}
        cols = ["mean_f1", HONEST_KEY] + list(AUS)
        entry.update({c: float(v) for c, v in zip(cols, arr.mean(0))})
        if seeds > 1:
            entry.update({f"{c}_std": float(v) for c, v in zip(cols, arr.std(0, ddof=1))})
        table.append(entry)
    df = pd.DataFrame(table)
    df.to_csv(out / "ablation.csv", index=False, float_format="%.4f")
    return df


def format_table(df: pd.DataFrame) -> str:
    """The ablation as a fixed-width text table (F1 as a fraction, 3 decimals, as `eval` prints):
    the optimistic mean F1 and the honest one side by side, then the optimistic per-AU F1."""
    std = "mean_f1_std" in df
    width = 12 if std else 7
    name = max([12, *(len(str(r)) + 2 for r in df["row"])])
    head = f"{'row':<{name}}{'F1':>{width}}{'honest':>{width}}" + "".join(f"{c:>7}" for c in AUS)
    lines = [head, "-" * len(head)]

    def cell(r, col: str) -> str:
        if col not in r or pd.isna(r[col]):
            return "-"
        return f"{r[col]:.3f}" + (f"±{r[col + '_std']:.3f}" if std and col + "_std" in r else "")

    for _, r in df.iterrows():
        lines.append(
            f"{r['row']:<{name}}{cell(r, 'mean_f1'):>{width}}{cell(r, HONEST_KEY):>{width}}"
            + "".join(f"{r[c]:7.3f}" for c in AUS)
        )
    lines.append(
        "F1: thresholds tuned on val, the split scored (optimistic); honest: thresholds from the "
        "other half of val's tracks; the best epoch is chosen on val in both"
    )
    return "\n".join(lines)
