"""Small HTML helpers and the page template (inline CSS only: the report must open without network)."""

from __future__ import annotations

import math
from html import escape
from typing import Any, Iterable

import numpy as np

CSS = """
:root { --ink:#111827; --muted:#6b7280; --line:#e5e7eb; --accent:#2f6db3; --bg:#ffffff; --panel:#f9fafb; }
* { box-sizing: border-box; }
html { font-size: 15px; }
body { margin:0; color:var(--ink); background:var(--bg); line-height:1.55;
       font-family: -apple-system, "Segoe UI", "Helvetica Neue", "DejaVu Sans", Arial, sans-serif; }
.layout { display:grid; grid-template-columns: 240px minmax(0, 1fr); }
nav.toc { position:sticky; top:0; height:100vh; overflow-y:auto; padding:24px 18px; border-right:1px solid var(--line);
          background:var(--panel); font-size:0.9rem; }
nav.toc h2 { font-size:0.78rem; text-transform:uppercase; letter-spacing:0.06em; color:var(--muted); margin:0 0 10px; }
nav.toc ol { margin:0; padding-left:18px; }
nav.toc li { margin:4px 0; }
nav.toc a { color:var(--ink); text-decoration:none; }
nav.toc a:hover { color:var(--accent); text-decoration:underline; }
main { padding:28px 40px 80px; max-width:1180px; }
header.top h1 { font-size:1.7rem; margin:0 0 4px; letter-spacing:-0.01em; }
header.top p { margin:0; color:var(--muted); }
section { margin-top:40px; padding-top:8px; border-top:1px solid var(--line); }
section h2 { font-size:1.25rem; margin:12px 0 6px; }
section h3 { font-size:1.02rem; margin:22px 0 6px; }
p.lead, p.note { color:#374151; max-width:78ch; margin:4px 0 12px; }
p.note { color:var(--muted); font-size:0.88rem; }
figure { margin:14px 0 18px; }
figure img.plot { max-width:100%; height:auto; display:block; border:1px solid var(--line); border-radius:6px;
                  background:white; padding:6px; }
figcaption { color:var(--muted); font-size:0.86rem; margin-top:6px; max-width:90ch; }
.cards { display:grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap:12px; margin:16px 0; }
.card { border:1px solid var(--line); border-radius:8px; padding:10px 14px; background:var(--panel); }
.card .k { color:var(--muted); font-size:0.78rem; text-transform:uppercase; letter-spacing:0.05em; }
.card .v { font-size:1.35rem; font-weight:600; font-variant-numeric: tabular-nums; }
.ok { color:#15803d; } .bad { color:#b91c1c; }
table { border-collapse:collapse; margin:10px 0 16px; font-size:0.88rem; font-variant-numeric: tabular-nums; }
th, td { border-bottom:1px solid var(--line); padding:5px 10px; text-align:left; vertical-align:top; }
th { background:var(--panel); font-weight:600; }
td.num, th.num { text-align:right; }
.wrap { overflow-x:auto; }
.gallery { display:grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap:8px; margin:4px 0 14px; }
h4 { margin:10px 0 4px; font-size:0.9rem; }
.tile { border:1px solid var(--line); border-radius:8px; overflow:hidden; background:white; font-size:0.74rem; }
.tile .thumb { width:100%; aspect-ratio: 3 / 2; object-fit:cover; display:block; background:#f3f4f6; }
.tile .nothumb { width:100%; aspect-ratio: 3 / 2; display:flex; align-items:center; justify-content:center;
                 color:var(--muted); background:#f3f4f6; font-size:0.75rem; }
.tile .meta { padding:6px 8px; }
.tile .title { font-weight:600; white-space:nowrap; overflow:hidden; text-overflow:ellipsis; display:block; }
.tile .nums { color:#374151; font-variant-numeric: tabular-nums; }
.tile code { font-size:0.7rem; color:var(--muted); }
.pill { display:inline-block; padding:0 6px; border-radius:10px; background:#eef2ff; color:#3730a3; font-size:0.72rem; }
details { margin:8px 0 14px; }
summary { cursor:pointer; color:var(--accent); }
.two { display:grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap:24px; align-items:start; }
code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size:0.85em; }
input.filter { padding:5px 8px; border:1px solid var(--line); border-radius:6px; width:260px; font:inherit; }
@media (max-width: 900px) { .layout { grid-template-columns: 1fr; } nav.toc { position:static; height:auto; }
  .two { grid-template-columns: 1fr; } main { padding:20px; } }
@media print { nav.toc { display:none; } .layout { grid-template-columns: 1fr; } }
"""

#: A tiny filter for the browsable top list (inline, no network, works without it too).
SCRIPT = """
document.querySelectorAll('input.filter').forEach(function (box) {
  var table = document.getElementById(box.dataset.table);
  box.addEventListener('input', function () {
    var q = box.value.toLowerCase();
    table.querySelectorAll('tbody tr').forEach(function (tr) {
      tr.style.display = tr.textContent.toLowerCase().indexOf(q) >= 0 ? '' : 'none';
    });
  });
});
"""


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(float(value)):
            return "–"
        v = float(value)
        if v != 0 and (abs(v) >= 1e6 or abs(v) < 10 ** -digits):
            return f"{v:.{digits}g}"
        if v == int(v) and abs(v) >= 1000:
            return f"{int(v):,}"
        return f"{v:,.{digits}f}"
    return escape(str(value))


def table(header: Iterable[str], rows: Iterable[Iterable[Any]], numeric: Iterable[int] = (), table_id: str = "",
          raw: bool = False) -> str:
    numeric = set(numeric)
    head = "".join(f'<th class="num">{escape(str(h))}</th>' if i in numeric else f"<th>{escape(str(h))}</th>"
                   for i, h in enumerate(header))
    body = []
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            text = value if (raw and isinstance(value, str)) else fmt(value)
            cells.append(f'<td class="num">{text}</td>' if i in numeric else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    attr = f' id="{escape(table_id)}"' if table_id else ""
    return f'<div class="wrap"><table{attr}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def plot(uri: str, alt: str, caption: str = "") -> str:
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f'<figure><img class="plot" src="{uri}" alt="{escape(alt)}">{cap}</figure>'


def cards(items: Iterable[tuple[str, Any, str]]) -> str:
    out = []
    for key, value, css in items:
        out.append(f'<div class="card"><div class="k">{escape(key)}</div><div class="v {css}">{fmt(value)}</div></div>')
    return '<div class="cards">' + "".join(out) + "</div>"


def page(title: str, subtitle: str, sections: list[tuple[str, str, str]]) -> str:
    """sections: (anchor id, heading, inner HTML)."""
    toc = "".join(f'<li><a href="#{escape(a)}">{escape(h)}</a></li>' for a, h, _ in sections)
    body = "".join(f'<section id="{escape(a)}"><h2>{escape(h)}</h2>{inner}</section>' for a, h, inner in sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<link rel="icon" href="data:,">
<style>{CSS}</style></head>
<body><div class="layout">
<nav class="toc" aria-label="Contents"><h2>Contents</h2><ol>{toc}</ol></nav>
<main><header class="top"><h1>{escape(title)}</h1><p>{subtitle}</p></header>{body}</main>
</div><script>{SCRIPT}</script></body></html>
"""
