"""One self-contained HTML page: figures inlined as base64 PNG data URIs, no file beside it.

The page links only to its own sections (`#id`), so it can be mailed or attached alone.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1240px;margin:1em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:right;font-size:.9em}
th{background:#f3f3f3}td.l,th.l{text-align:left}
figure{margin:1em 0}figure img{max-width:100%;height:auto;display:block}
figcaption{font-size:.9em;color:#444;margin-top:.3em;max-width:70em}
dl.kv{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dl.kv dt{font-weight:600}
dl.kv dd{margin:0;word-break:break-all}.big{font-size:1.3em;font-weight:600}
.note{color:#7a4b00}pre{background:#f7f7f7;padding:.5em;overflow:auto;font-size:.85em}
nav a{margin-right:1em}
"""


@dataclass
class Section:
    """One titled part of the page; `body` is HTML already escaped."""

    id: str
    title: str
    body: str


def esc(x) -> str:
    return html.escape(str(x))


def num(x, digits: int = 3) -> str:
    return "n/a" if x is None or x != x else f"{x:.{digits}f}"


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure(png: bytes, caption: str, alt: str) -> str:
    """An inlined PNG with its caption (caption text is escaped here)."""
    return (
        f'<figure><img src="{data_uri(png)}" alt="{esc(alt)}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def table(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    """A table whose first `left` columns are left-aligned text; cells are escaped here."""

    def cells(tag: str, values: list[str]) -> str:
        return "".join(
            f"<{tag}{' class=l' if i < left else ''}>{esc(v)}</{tag}>" for i, v in enumerate(values)
        )

    body = "".join(f"<tr>{cells('td', r)}</tr>" for r in rows)
    return f"<table><tr>{cells('th', header)}</tr>{body}</table>"


def key_values(pairs: list[tuple[str, str]]) -> str:
    """A definition list; values are HTML (escape them before)."""
    return '<dl class="kv">' + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in pairs) + "</dl>"


def details(summary: str, text: str) -> str:
    """A collapsed block of preformatted text."""
    return f"<details><summary>{esc(summary)}</summary><pre>{esc(text)}</pre></details>"


def page(title: str, sections: list[Section]) -> str:
    nav = "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    body = "".join(
        f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>{s.body}</section>' for s in sections
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{esc(title)}</h1><nav>{nav}</nav>{body}</body></html>\n"
    )
