"""The run report: its numbers against plain references, one self-contained page, every figure's
text readable (no overlap, nothing off the canvas), and the page in a real headless browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import precision_recall_curve

from data_manifest.aus import AUS
from data_manifest.user_error import UserError
from tests.train.store_factory import make_dataset
from train import report_figures as F
from train.cli import main
from train.metrics import f1_per_au
from train.report import HONEST_KEY, SECTIONS, build_report, report_path
from train.report_stats import (
    cooccurrence,
    masked_like,
    operating_point,
    per_track_f1,
    pick_tracks,
    pr_curve,
)

SMALL = ["optim.batch_size=4", "data.window=16", "data.stride=8", "model.hidden=32"]


# ----------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pr_curve_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = 300
    scores = np.round(rng.random(n), 2)  # ties on purpose
    target = rng.random(n) < 0.2 + 0.3 * scores
    precision, recall, thr = pr_curve(scores, target)
    ref_p, ref_r, ref_t = precision_recall_curve(target, scores, drop_intermediate=False)
    np.testing.assert_allclose(precision, ref_p)
    np.testing.assert_allclose(recall, ref_r)
    np.testing.assert_allclose(thr, ref_t)


def test_operating_point_is_the_curve_point_at_the_threshold():
    rng = np.random.default_rng(3)
    scores = np.round(rng.random(200), 2)
    target = rng.random(200) < scores
    precision, recall, thr = pr_curve(scores, target)
    for i in (0, 17, len(thr) - 1):
        assert operating_point(scores, target, thr[i]) == pytest.approx((recall[i], precision[i]))
    assert operating_point(scores, target, 2.0) == (0.0, 0.0)  # nothing called: no precision


def test_cooccurrence_matches_a_direct_count():
    rng = np.random.default_rng(4)
    values = rng.choice([-1, 0, 1], size=(400, 5), p=[0.1, 0.5, 0.4]).astype(np.int8)
    counts, cond = cooccurrence(values)
    for i in range(5):
        for j in range(5):
            both = sum(1 for row in values if row[i] == 1 and row[j] == 1)
            base = sum(1 for row in values if row[i] == 1 and row[j] >= 0)
            assert counts[i, j] == both
            assert cond[i, j] == pytest.approx(both / base)
    assert np.allclose(np.diag(cond), 1.0)
    none = np.zeros((10, 2), np.int8)
    assert np.isnan(cooccurrence(none)[1]).all()  # no AU ever on: undefined, not 0


def test_masked_decisions_keep_unknown_frames_out():
    labels = np.array([[1, -1], [0, 1]], np.int8)
    binary = np.array([[1, 1], [1, 0]], np.int8)
    assert masked_like(binary, labels).tolist() == [[1, -1], [1, 0]]


def test_per_track_f1_matches_metrics_and_picks_best_median_worst():
    rng = np.random.default_rng(5)
    order = ["a", "b", "c", "d"]
    labels, binary, face = {}, {}, {}
    for k, t in enumerate(order):
        n = 50 + 10 * k
        y = (rng.random((n, len(AUS))) < 0.3).astype(np.int8)
        y[:3, :2] = -1
        y[:, 5] = 0  # AU absent from every track
        flip = rng.random((n, len(AUS))) < 0.1 * (k + 1)  # track a best, d worst
        labels[t], binary[t] = y, np.where(flip, 1 - np.maximum(y, 0), np.maximum(y, 0))
        face[t] = rng.random(n) > 0.2
    s = per_track_f1(order, labels, binary, face)
    for k, t in enumerate(order):
        ref = f1_per_au(binary[t], labels[t])
        np.testing.assert_allclose(s.f1[k], ref)
        present = (labels[t] == 1).any(0)
        assert not present[5]
        assert s.mean[k] == pytest.approx(ref[present].mean())
        assert s.n_labelled[k] == int((labels[t] >= 0).any(1).sum())
        assert s.face_rate[k] == pytest.approx(face[t].mean())
    assert [s.tracks[i] for i in s.ranked()] == order
    picks = pick_tracks(s)
    assert [t for t, _ in picks] == ["a", "c", "d"]
    assert "best" in picks[0][1] and "median" in picks[1][1] and "worst" in picks[2][1]
    one = per_track_f1(["a"], labels, binary, face)
    assert pick_tracks(one) == [("a", "best and median and worst per-track F1")]


# ----------------------------------------------------------------------------- figures


def _texts(fig):
    """Every text the figure draws: titles, axis labels, tick labels in view, legends, notes."""
    out = [fig._suptitle, *fig.texts]
    for legend in fig.legends:
        out += legend.get_texts()
    for ax in fig.axes:
        out += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label]
        out += ax.texts
        if ax.get_legend() is not None:
            out += [ax.get_legend().get_title(), *ax.get_legend().get_texts()]
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            span = (hi - lo) * 1e-6
            for tick in axis.get_major_ticks():
                if lo - span <= tick.get_loc() <= hi + span:
                    out += [tick.label1, tick.label2]
    unique = {id(t): t for t in out if t is not None}.values()
    return [t for t in unique if t.get_visible() and t.get_text().strip()]


def _text_boxes(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return [(t.get_text(), t.get_window_extent(renderer)) for t in _texts(fig)]


GAP = 2  # pixels between any two texts


def _check_readable(fig) -> None:
    """No two texts overlap or touch, and none leaves the canvas."""
    boxes = _text_boxes(fig)
    w, h = fig.canvas.get_width_height()
    for text, b in boxes:
        assert b.x0 >= -1 and b.y0 >= -1 and b.x1 <= w + 1 and b.y1 <= h + 1, (text, b, (w, h))
    for i, (ti, bi) in enumerate(boxes):
        for tj, bj in boxes[i + 1 :]:
            overlap_w = min(bi.x1, bj.x1) - max(bi.x0, bj.x0)
            overlap_h = min(bi.y1, bj.y1) - max(bi.y0, bj.y0)
            assert overlap_w < -GAP or overlap_h < -GAP, f"{ti!r} overlaps or touches {tj!r}"


@pytest.fixture
def checked_figures(monkeypatch):
    """Every figure made while it is active is checked for readable text before it is saved."""
    seen = []
    real = F._png

    def checking(fig):
        _check_readable(fig)
        seen.append(fig)
        return real(fig)

    monkeypatch.setattr(F, "_png", checking)
    return seen


def test_figures_have_readable_text_and_the_timeline_names_the_aus(checked_figures):
    rng = np.random.default_rng(6)
    n = 400
    probs = rng.random((n, len(AUS)))
    labels = (rng.random((n, len(AUS))) < probs).astype(np.int8)
    labels[:20] = -1
    binary = (probs > 0.5).astype(np.int8)
    thr = np.full(len(AUS), 0.4)
    face = rng.random(n) > 0.1
    hist = [
        {"epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e, "val_mean_f1": 0.4 + e / 100}
        for e in range(1, 4)
    ]
    order = [f"video{k}_left" for k in range(12)]
    per = {t: slice(k * 30, (k + 1) * 30) for k, t in enumerate(order)}
    tracks = per_track_f1(
        order,
        {t: labels[s] for t, s in per.items()},
        {t: binary[s] for t, s in per.items()},
        {t: face[s] for t, s in per.items()},
    )
    c = cooccurrence(labels)[1]
    pngs = [
        F.curves([hist]),
        F.pr_curves(probs, labels, thr),
        F.f1_vs_rate({a: 0.5 for a in AUS}, {a: 0.3 + 0.01 * i for i, a in enumerate(AUS)}),
        F.f1_threshold(probs, labels, thr),
        F.track_f1(tracks),
        F.track_f1(tracks, limit=6),
        F.cooccurrence(c, cooccurrence(masked_like(binary, labels))[1]),
        F.timeline("video0_left", probs, binary, labels, face, thr),
    ]
    assert all(p.startswith(b"\x89PNG") for p in pngs)
    curves_fig, timeline_fig = checked_figures[0], checked_figures[-1]
    epochs = [t for t in curves_fig.axes[0].get_xticks() if 1 <= t <= 3]
    assert epochs and all(float(t).is_integer() for t in epochs)
    ax = timeline_fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(AUS)
    capped = [t.get_text() for t in checked_figures[5].axes[0].get_yticklabels()]
    ranked = [tracks.tracks[i] for i in tracks.ranked()]
    assert capped == ranked[:3] + ranked[-3:]


# ----------------------------------------------------------------------------- the page


def _no_png(fig) -> bytes:
    """Skip rendering where a test looks only at the page around the figures."""
    import matplotlib.pyplot as plt

    plt.close(fig)
    return b"\x89PNG"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    store, manifest = make_dataset(root, n_train=4, n_val=3, n_test=1, frames=40)
    out = root / "run"
    args = ["fit", "--store", str(store), "--manifest", str(manifest), "--out", str(out)]
    args += ["--no-progress", "--device", "cpu", "--set", *SMALL, "optim.epochs=3"]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def val_report(run):
    before = {p.name for p in run.iterdir()}
    path = build_report(run, device="cpu")
    return path, before


def _split_tracks(run: Path, split: str) -> list[str]:
    import pandas as pd

    man = pd.read_parquet(json.loads((run / "run.json").read_text())["manifest"])
    return list(man[man["split"] == split]["track_id"])


def test_report_is_one_self_contained_page_with_every_section(run, val_report):
    path, before = val_report
    assert path == run / "report.html" == report_path(run, "val")
    text = path.read_text()
    # nothing beside it: only the page (and eval's metrics.json) are new in the run folder
    assert {p.name for p in run.iterdir()} - before <= {"report.html", "metrics.json"}
    assert not list(run.glob("*.png"))
    srcs = re.findall(r'\bsrc\s*=\s*"([^"]*)"', text)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    hrefs = re.findall(r'\bhref\s*=\s*"([^"]*)"', text)
    assert hrefs and all(h.startswith("#") for h in hrefs)
    assert not re.search(r"url\(|<link|<script|@import", text)
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in text
    assert text.count("<figcaption>") >= 8
    for key in ("recipe", "store fingerprint", "auwild version", "report written"):
        assert key in text
    assert "<details><summary>resolved configuration" in text
    assert "optimistic: thresholds tuned on the val split" in text
    metrics = json.loads((run / "metrics.json").read_text())
    assert f"{metrics[HONEST_KEY]:.4f}" in text and "not available for this run" not in text
    assert f"{metrics['mean_f1']:.4f}" in text
    # default timelines: best, median and worst of the three val tracks, each named
    for t in _split_tracks(run, "val"):
        assert f'alt="timeline of {t}"' in text


def test_honest_f1_is_shown_when_the_metrics_carry_it(run, val_report, tmp_path, monkeypatch):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    metrics = json.loads((copy / "metrics.json").read_text())
    metrics[HONEST_KEY] = 0.4321
    (copy / "metrics.json").write_text(json.dumps(metrics))
    monkeypatch.setattr(F, "_png", _no_png)  # the figures are tested above
    text = build_report(copy, track=_split_tracks(run, "val")[:1], device="cpu").read_text()
    assert "0.4321" in text and "not available for this run" not in text
    assert text.count('alt="timeline of ') == 1
    metrics[HONEST_KEY] = None  # e.g. a split of one track: no two halves
    (copy / "metrics.json").write_text(json.dumps(metrics))
    text = build_report(copy, track=_split_tracks(run, "val")[:1], device="cpu").read_text()
    assert "not available for this run" in text


def test_split_train_reports_train_and_keeps_metrics(run, val_report, monkeypatch):
    monkeypatch.setattr(F, "_png", _no_png)
    saved = (run / "metrics.json").read_text()
    path = build_report(run, split="train", device="cpu")
    assert path == run / "report_train.html"
    text = path.read_text()
    assert "<b>train</b>" in text and "train split" in text
    for t in _split_tracks(run, "train"):
        assert f"<td class=l>{t}</td>" in text
    for t in _split_tracks(run, "val"):
        assert t not in text
    assert (run / "metrics.json").read_text() == saved  # val metrics not overwritten


def test_fold_run_reports_out_of_fold_scores(run, tmp_path, monkeypatch):
    info = json.loads((run / "run.json").read_text())
    out = tmp_path / "folds"
    args = ["fit", "--store", info["store"], "--manifest", info["manifest"], "--out", str(out)]
    args += ["--folds", "2", "--no-progress", "--device", "cpu", "--set", *SMALL]
    assert main(args + ["optim.epochs=1"]) == 0
    monkeypatch.setattr(F, "_png", _no_png)
    text = build_report(out, device="cpu").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["fold_mean_f1"]) == 2 and f"{metrics['mean_f1']:.4f}" in text
    assert "2 fold models, combined" in text and "held-out tracks" in text
    assert "Fold run: the figures use the combined fold models" in text


def test_unknown_track_is_one_clear_error(run, val_report, capsys):
    with pytest.raises(UserError, match="'nope' is not in split 'val'"):
        build_report(run, track=["nope"], device="cpu")
    assert main(["report", str(run), "--track", "nope", "--device", "cpu"]) == 2
    assert "nope" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the browser

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHECK = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const out = document.createElement("pre");
  out.id = "img-check";
  out.textContent = JSON.stringify({
    n: imgs.length,
    broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
    sections: [...document.querySelectorAll("section")].map(s => s.id),
  });
  document.body.appendChild(out);
});
</script>"""


def _browser() -> str | None:
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


def _chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
    ]
    return subprocess.run(
        [browser, *flags, *args], capture_output=True, text=True, timeout=120, check=True
    )


@pytest.mark.slow
@pytest.mark.skipif(
    _browser() is None,
    reason="no headless browser: install Debian's `chromium` (CI does, in .ci/run)",
)
def test_report_renders_in_headless_chromium(run, val_report, tmp_path):
    browser = _browser()
    from PIL import Image

    path, _ = val_report
    checked = tmp_path / "checked.html"
    checked.write_text(path.read_text().replace("</body>", CHECK + "</body>"))
    dom = _chromium(
        browser, tmp_path / "p1", "--virtual-time-budget=10000", "--dump-dom", checked.as_uri()
    ).stdout
    found = re.search(r'<pre id="img-check">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    result = json.loads(found.group(1).replace("&quot;", '"'))
    assert result["n"] >= 9 and result["broken"] == []
    assert result["sections"] == list(SECTIONS)

    shot = tmp_path / "report.png"
    _chromium(
        browser, tmp_path / "p2", "--window-size=1280,6000", f"--screenshot={shot}", path.as_uri()
    )
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape[1] == 1280
    assert pixels.std() > 20  # not blank: text, figures and white space
    top = pixels[:200]
    assert top.std() > 5  # the header is drawn


def test_runs_of_faceless_frames_match_a_walk():
    rng = np.random.default_rng(7)
    for mask in (rng.random(50) < 0.3, np.ones(4, bool), np.zeros(4, bool), np.array([True])):
        walk, start = [], None
        for i, m in enumerate([*mask, False]):
            if m and start is None:
                start = i
            if not m and start is not None:
                walk.append([start, i])
                start = None
        assert F._runs(mask).tolist() == walk
