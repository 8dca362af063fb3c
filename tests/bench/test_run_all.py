"""bench/RESULTS.md gathers the result tables with their links still pointing at their files."""

from __future__ import annotations

import re
from pathlib import Path

from bench import run_all


def test_gathered_links_resolve_from_bench(tmp_path, monkeypatch):
    results = tmp_path / "bench" / "results"
    results.mkdir(parents=True)
    (results / "plot.png").write_bytes(b"png")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("page")
    (results / "a.md").write_text("## A\n\n![plot](plot.png) and [page](../../docs/page.md)\n")
    monkeypatch.setattr(run_all, "HERE", tmp_path / "bench")
    text = run_all.gather()
    assert (tmp_path / "bench" / "RESULTS.md").read_text() == text
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert links == ["results/plot.png", "../docs/page.md"]
    assert all((tmp_path / "bench" / Path(link)).exists() for link in links)
