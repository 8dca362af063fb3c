"""Every ```python block of docs/python_api.md runs, in order, in one namespace, against a store,
a manifest and a trained run made here (bound to the page's STORE, MANIFEST and RUN)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import auwild
from tests.test_python_api import make_api_data

PAGE = Path(__file__).resolve().parents[1] / "docs" / "python_api.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


@pytest.fixture(scope="module")
def api_data(tmp_path_factory):
    return make_api_data(tmp_path_factory.mktemp("docs"))


def test_every_python_block_runs(api_data, capsys):
    store, manifest, run = api_data
    text = PAGE.read_text()
    blocks = python_blocks(text)
    assert len(blocks) == text.count("```python") >= 7
    namespace = {"__name__": "python_api_docs", "STORE": store, "MANIFEST": manifest, "RUN": run}
    for i, block in enumerate(blocks, 1):
        try:
            exec(compile(block, f"{PAGE.name} block {i}", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"{PAGE.name} block {i} failed: {exc!r}\n{block}") from exc
    out = capsys.readouterr().out
    assert "mean F1" in out and "visual/dinov2/cls" in out


def test_the_page_names_only_what_the_package_has():
    text = PAGE.read_text()
    used = set(re.findall(r"\bauwild\.(\w+)", text))
    assert used and used <= set(auwild.__all__), used - set(auwild.__all__)
    for name in ("STORE", "MANIFEST", "RUN"):
        assert f"`{name}`" in text  # the page says what each placeholder is
