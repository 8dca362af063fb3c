"""The report's figures as PNG bytes (matplotlib, Agg backend), each laid out so no label overlaps.

Every function takes plain arrays (frames stacked, labels in {-1, 0, 1}) and returns the PNG;
`train/report_html.py` inlines them, so the report is one file.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from data_manifest.aus import AUS
from train.report_stats import TrackScores, operating_point, pr_curve
from train.thresholds import f1_curve

DPI = 100


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    _plt().close(fig)
    return buf.getvalue()


def _grid(plt, title: str, xlabel: str, ylabel: str):
    """A 3 x 4 grid of square-ish panels, one per AU, sharing both axes."""
    fig, axes = plt.subplots(3, 4, figsize=(12, 8.4), sharex=True, sharey=True)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.07, top=0.92, wspace=0.16, hspace=0.24)
    for ax in axes.ravel():
        ax.tick_params(pad=5)  # keeps the corner's two "0.0" apart
    for ax in axes[-1]:
        ax.set_xlabel(xlabel)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    fig.suptitle(title)
    return fig, axes


def curves(histories: list[list[dict[str, Any]]]) -> bytes:
    """Loss (train and validation) and validation mean F1 (tuned and at 0.5) per epoch."""
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    fig, (ax_loss, ax_f1) = plt.subplots(1, 2, layout="constrained", figsize=(12, 4))
    for i, hist in enumerate(histories):
        tag = f" fold {i}" if len(histories) > 1 else ""
        ep = [h["epoch"] for h in hist]
        ax_loss.plot(
            ep, [h.get("train_loss", np.nan) for h in hist], "-o", ms=3, label=f"train{tag}"
        )
        if any("val_loss" in h for h in hist):
            ax_loss.plot(
                ep, [h.get("val_loss", np.nan) for h in hist], "--s", ms=3, label=f"val{tag}"
            )
        if any("val_mean_f1" in h for h in hist):
            ax_f1.plot(
                ep, [h.get("val_mean_f1", np.nan) for h in hist], "-o", ms=3, label=f"tuned{tag}"
            )
            ax_f1.plot(
                ep,
                [h.get("val_mean_f1_at_0.5", np.nan) for h in hist],
                ":^",
                ms=3,
                label=f"at 0.5{tag}",
            )
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_f1.set(xlabel="epoch", ylabel="mean F1", title="validation mean F1")
    for ax in (ax_loss, ax_f1):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
    return _png(fig)


def pr_curves(probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> bytes:
    """Precision against recall per AU, the chosen threshold's point, the no-skill line."""
    plt = _plt()
    fig, axes = _grid(
        plt,
        "precision against recall (dot: chosen threshold; dashed: positive rate)",
        "recall",
        "precision",
    )
    for a, (au, ax) in enumerate(zip(AUS, axes.ravel())):
        known = labels[:, a] >= 0
        target = labels[known, a] == 1
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        if not target.any():
            ax.set_title(f"{au}: no positive label", fontsize=9)
            continue
        precision, recall, _ = pr_curve(probs[known, a], target)
        keep = _thin(len(recall))
        ax.step(recall[keep], precision[keep], where="post", lw=1.2, color="tab:blue")
        rate = float(target.mean())
        ax.axhline(rate, color="grey", ls="--", lw=0.8)
        r, p = operating_point(probs[known, a], target, float(thresholds[a]))
        ax.plot([r], [p], "o", color="tab:red", ms=5)
        ax.set_title(f"{au}  (rate {rate:.2f}, thr {thresholds[a]:.2f})", fontsize=9)
        ax.grid(alpha=0.3)
    return _png(fig)


def f1_vs_rate(f1: dict[str, float | None], rate: dict[str, float | None]) -> bytes:
    """Per-AU F1 against positive rate, with the all-positive F1 2p/(1+p) as reference."""
    plt = _plt()
    fig, ax = plt.subplots(layout="constrained", figsize=(8, 5))
    p = np.linspace(0, 1, 101)
    ax.plot(p, 2 * p / (1 + p), "--", color="grey", label="all positive: 2p/(1+p)")
    colours = plt.get_cmap("tab20").colors
    markers = "osD^v<>pP*Xh"
    for a, au in enumerate(AUS):
        if f1.get(au) is None or rate.get(au) is None:
            continue
        ax.scatter(
            rate[au], f1[au], color=colours[a % len(colours)], marker=markers[a], s=50, label=au
        )
    ax.set(xlabel="positive rate p", ylabel="F1", xlim=(0, 1), ylim=(0, 1))
    ax.tick_params(pad=5)
    ax.set_title("per-AU F1 against positive rate")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return _png(fig)


def f1_threshold(probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> bytes:
    """F1 per AU at thresholds 0.02 .. 0.98, the chosen threshold marked."""
    plt = _plt()
    grid, curve = f1_curve(probs, labels)
    fig, axes = _grid(plt, "F1 against threshold (red: chosen threshold)", "threshold", "F1")
    for a, (au, ax) in enumerate(zip(AUS, axes.ravel())):
        ax.plot(grid, curve[:, a], color="tab:blue")
        ax.axvline(float(thresholds[a]), color="tab:red", ls="--", lw=1)
        ax.set_title(au, fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    return _png(fig)


def track_f1(scores: TrackScores, limit: int = 60) -> bytes:
    """Heat map of F1 per track and AU, tracks sorted best to worst; grey: AU absent from track.

    With more than `limit` tracks, the limit/2 best and limit/2 worst are drawn."""
    plt = _plt()
    order = scores.ranked()
    shown = "" if len(order) <= limit else f" ({limit // 2} best and worst of {len(order)})"
    if shown:
        order = order[: limit // 2] + order[-(limit // 2) :]
    n = len(order)
    f1 = np.ma.masked_array(scores.f1[order], ~scores.present[order])
    mean = scores.mean[order]
    fig, (ax, ax_m) = plt.subplots(
        1,
        2,
        layout="constrained",
        figsize=(10, 1.6 + 0.24 * n),
        gridspec_kw={"width_ratios": [len(AUS), 1.5]},
        sharey=True,
    )
    cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")
    im = ax.imshow(f1, aspect="auto", cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks(range(len(AUS)), AUS, rotation=90, fontsize=8)
    ax.set_yticks(range(n), [scores.tracks[i] for i in order], fontsize=7)
    ax.set_title(f"F1 per track and AU{shown}; grey: no positive label in the track", fontsize=9)
    ax_m.imshow(
        np.ma.masked_invalid(mean[:, None]),
        aspect="auto",
        cmap=cmap,
        vmin=0,
        vmax=1,
        interpolation="nearest",
    )
    for i, m in enumerate(mean):
        if not np.isnan(m):
            ax_m.text(
                0,
                i,
                f"{m:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if m < 0.5 else "black",
            )
    ax_m.set_xticks([0], ["mean"], fontsize=8)
    ax_m.tick_params(left=False)
    fig.colorbar(im, ax=[ax, ax_m], fraction=0.03, pad=0.02, label="F1")
    return _png(fig)


def cooccurrence(label_cond: np.ndarray, pred_cond: np.ndarray) -> bytes:
    """P(column AU | row AU) in the labels and in the decisions, side by side, in percent."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(13, 6.2))
    fig.subplots_adjust(left=0.06, right=0.93, bottom=0.14, top=0.94, wspace=0.2)
    cmap = plt.get_cmap("magma_r").with_extremes(bad="#eeeeee")
    for ax, mat, title in zip(axes, (label_cond, pred_cond), ("labels", "decisions")):
        im = ax.imshow(np.ma.masked_invalid(mat), cmap=cmap, vmin=0, vmax=1)
        ax.set_xticks(range(len(AUS)), AUS, rotation=90, fontsize=8)
        ax.set_yticks(range(len(AUS)), AUS, fontsize=8)
        ax.set_xlabel("AU j")
        ax.set_ylabel("AU i")
        ax.set_title(f"{title}: P(AU j on | AU i on), %", fontsize=10)
        for i in range(mat.shape[0]):
            for j in range(mat.shape[1]):
                if not np.isnan(mat[i, j]):
                    ax.text(
                        j,
                        i,
                        f"{100 * mat[i, j]:.0f}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if mat[i, j] > 0.6 else "black",
                    )
    fig.colorbar(im, cax=fig.add_axes((0.95, 0.14, 0.012, 0.8)))
    return _png(fig)


def timeline(
    track_id: str,
    probs: np.ndarray,
    binary: np.ndarray,
    labels: np.ndarray | None,
    face: np.ndarray,
    thresholds: np.ndarray,
) -> bytes:
    """One row per AU (top: AU1): decision strip, label band, probability; no-face shaded.

    probs (T, A), binary (T, A) 0/1, labels (T, A) in {-1, 0, 1} or None (no label band), face
    (T,) bool."""
    plt = _plt()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    n, a_n = probs.shape
    t = np.arange(1, n + 1)
    height_in = 0.55 * a_n + 1.6
    fig, ax = plt.subplots(figsize=(13, height_in))
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.6 / height_in, top=1 - 0.9 / height_in)
    strip, base, span = 0.12, 0.18, 0.7  # decision strip, then label band and probability
    for a in range(a_n):
        y0 = a_n - 1 - a
        bands = () if labels is None else ((1, "tab:green", 0.3), (-1, "tab:purple", 0.2))
        for value, colour, alpha in bands:
            lab = labels[:, a]
            ax.fill_between(
                t,
                base + y0,
                base + y0 + span * (lab == value),
                step="mid",
                color=colour,
                alpha=alpha,
                lw=0,
            )
        ax.fill_between(
            t, y0, y0 + strip * (binary[:, a] > 0), step="mid", color="tab:orange", lw=0
        )
        ax.plot(t, base + y0 + span * probs[:, a], color="tab:blue", lw=0.9)
        ax.plot([1, n], [base + y0 + span * thresholds[a]] * 2, color="tab:red", lw=0.8, ls=":")
        ax.axhline(y0 - 0.05, color="#bbbbbb", lw=0.5)
    for start, stop in _runs(~np.asarray(face, bool)):
        ax.axvspan(start + 0.5, stop + 0.5, color="grey", alpha=0.3, lw=0)  # frames start+1..stop
    ax.set_yticks([a_n - 1 - a + base + span / 2 for a in range(a_n)], list(AUS[:a_n]), fontsize=8)
    ax.set_ylim(-0.1, a_n - 0.05)
    ax.set_xlim(1, max(n, 2))
    ax.set_xlabel("frame")
    ax.set_title(f"{track_id}: {n} frames", fontsize=10)
    handles = [
        Line2D([], [], color="tab:blue", label="probability"),
        Line2D([], [], color="tab:red", ls=":", label="threshold"),
        Patch(color="tab:orange", label="decision = 1"),
        Patch(color="tab:green", alpha=0.3, label="label = 1"),
        Patch(color="tab:purple", alpha=0.2, label="label unknown"),
        Patch(color="grey", alpha=0.3, label="no face"),
    ]
    if labels is None:
        handles = handles[:3] + handles[5:]
    ax.legend(
        handles=handles,
        ncol=6,
        fontsize=8,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.04),
        frameon=False,
    )
    return _png(fig)


def _runs(mask: np.ndarray) -> np.ndarray:
    """(start, stop) index pairs (K, 2) of the runs of True in `mask`, stop exclusive."""
    edges = np.diff(np.r_[0, np.asarray(mask, np.int8), 0])
    return np.stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)], 1)


def _thin(n: int, most: int = 4000) -> np.ndarray:
    """Indices of at most `most` points spread evenly over n, first and last kept (for drawing)."""
    return np.unique(np.linspace(0, n - 1, min(n, most)).round().astype(int))
