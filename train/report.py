"""A run's report: RUN/report.html with PNG figures (matplotlib, Agg backend).

Figures: training curves, per-AU F1 against positive rate, F1 against threshold per AU, and
an AU timeline of one track (probabilities over time against labels, faceless frames shaded).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from data_manifest.aus import AUS
from data_manifest.cli_support import UserError
from data_manifest.shared_files import write_atomic, write_text_atomic
from train.inference import stack_labels
from train.predict import evaluate_run, predict_split
from train.run import model_dirs, read_history, read_run_info
from train.thresholds import f1_curve
from train.tracks import Track


def _save(fig, path) -> None:
    """PNG bytes of `fig`, written whole (atomic) with the umask's mode."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    write_atomic(path, buf.getvalue())


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(histories: list[list[dict[str, Any]]], path: Path) -> None:
    plt = _plt()
    fig, (ax_loss, ax_f1) = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, hist in enumerate(histories):
        tag = f" fold {i}" if len(histories) > 1 else ""
        ep = [h["epoch"] for h in hist]
        ax_loss.plot(ep, [h.get("train_loss") for h in hist], "-o", ms=3, label=f"train{tag}")
        if any("val_loss" in h for h in hist):
            ax_loss.plot(ep, [h.get("val_loss") for h in hist], "--", label=f"val{tag}")
        if any("val_mean_f1" in h for h in hist):
            ax_f1.plot(ep, [h.get("val_mean_f1") for h in hist], "-o", ms=3, label=f"tuned{tag}")
            ax_f1.plot(ep, [h.get("val_mean_f1_at_0.5") for h in hist], ":", label=f"at 0.5{tag}")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_f1.set(xlabel="epoch", ylabel="mean F1", title="validation mean F1")
    ax_loss.legend(fontsize=7)
    ax_f1.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_f1_vs_rate(metrics: dict[str, Any], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    for au in AUS:
        f1, rate = metrics["per_au_f1"].get(au), metrics["positive_rate"].get(au)
        if f1 is None or rate is None:
            continue
        ax.scatter(rate, f1, color="tab:blue")
        ax.annotate(au, (rate, f1), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set(xlabel="positive rate", ylabel="F1", title="per-AU F1 against positive rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_f1_threshold(probs: np.ndarray, labels: np.ndarray, thr: dict, path: Path) -> None:
    plt = _plt()
    grid, curve = f1_curve(probs, labels)
    fig, axes = plt.subplots(3, 4, figsize=(11, 7), sharex=True, sharey=True)
    for a, (au, ax) in enumerate(zip(AUS, axes.ravel())):
        ax.plot(grid, curve[:, a])
        if au in thr:
            ax.axvline(thr[au], color="tab:red", ls="--", lw=1)
        ax.set_title(au, fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("threshold")
    for ax in axes[:, 0]:
        ax.set_ylabel("F1")
    fig.suptitle("F1 against threshold (red: tuned)")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_timeline(track: Track, probs: np.ndarray, thr: dict, path: Path) -> None:
    plt = _plt()
    t = np.arange(1, track.n_frames + 1)
    fig, axes = plt.subplots(len(AUS), 1, figsize=(11, 1.0 * len(AUS) + 1), sharex=True)
    faceless = ~track.face_valid
    for a, (au, ax) in enumerate(zip(AUS, axes)):
        lab = track.labels[:, a].astype(float)
        lab[lab < 0] = np.nan
        ax.fill_between(t, 0, np.nan_to_num(lab), step="mid", alpha=0.3, color="tab:green")
        ax.plot(t, probs[:, a], color="tab:blue", lw=1)
        if au in thr:
            ax.axhline(thr[au], color="tab:red", lw=0.6, ls="--")
        if faceless.any():
            ax.fill_between(t, 0, 1, where=faceless, color="grey", alpha=0.2, step="mid")
        ax.set_ylim(0, 1)
        ax.set_ylabel(au, rotation=0, ha="right", fontsize=8)
        ax.set_yticks([])
    axes[-1].set_xlabel("frame")
    fig.suptitle(f"{track.track_id}: probability (blue), label (green), no face (grey)")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def build_report(
    run: str | Path, track: str | None = None, split: str = "val", device: str = "auto"
) -> Path:
    """Write RUN/report.html and its PNGs; runs eval first when RUN/metrics.json is missing."""
    run = Path(run)
    histories = [read_history(d) for d in model_dirs(run)]
    metrics_path = run / "metrics.json"
    metrics = (
        json.loads(metrics_path.read_text())
        if metrics_path.exists()
        else evaluate_run(run, split, device=device)
    )
    preds = predict_split(run, metrics.get("split", split), device=device)
    tracks = [preds.tracks[t] for t in preds.order]
    probs, labels = stack_labels(tracks, preds.probs)
    chosen = track or preds.order[0]
    if chosen not in preds.tracks:
        raise UserError(f"track {chosen!r} is not in split {metrics.get('split', split)!r}")
    figs = {
        "curves.png": "Training curves",
        "f1_vs_rate.png": "Per-AU F1 against positive rate",
        "f1_threshold.png": "F1 against threshold per AU",
        "timeline.png": f"AU timeline of {chosen}",
    }
    plot_curves(histories, run / "curves.png")
    plot_f1_vs_rate(metrics, run / "f1_vs_rate.png")
    thr = metrics.get("thresholds", {})
    plot_f1_threshold(probs, labels, thr, run / "f1_threshold.png")
    plot_timeline(preds.tracks[chosen], preds.probs[chosen], thr, run / "timeline.png")
    rows = "".join(
        "<tr><td>{}</td>{}</tr>".format(
            au,
            "".join(
                f"<td>{_num(metrics.get(k, {}).get(au))}</td>"
                for k in ("per_au_f1", "thresholds", "auc", "ap", "positive_rate")
            ),
        )
        for au in AUS
    )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>auwild run {html.escape(run.name)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}</style>
</head><body>
<h1>Run {html.escape(str(run))}</h1>
<p>Split <b>{html.escape(str(metrics.get("split", split)))}</b>: mean F1
<b>{_num(metrics.get("mean_f1"))}</b> (at 0.5: {_num(metrics.get("mean_f1_at_0.5"))}),
{metrics.get("n_frames", "?")} labelled frames.</p>
<table><tr><th>AU</th><th>F1</th><th>threshold</th><th>AUC</th><th>AP</th><th>positive rate</th></tr>
{rows}</table>
{"".join(f'<h2>{html.escape(t)}</h2><img src="{f}" alt="{html.escape(t)}">' for f, t in figs.items())}
</body></html>
"""
    if read_run_info(run).get("folds"):
        fold_note = (
            "<p>Fold run: metrics are out of fold; the figures use the combined fold models, "
            "which saw most of these tracks in training.</p>"
        )
        page = page.replace("</table>", "</table>" + fold_note, 1)
    out = run / "report.html"
    write_text_atomic(out, page)
    return out


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"
