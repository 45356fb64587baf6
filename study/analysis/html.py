"""One self-contained HTML page: plotly.js embedded once, every figure a div, no network access."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import plotly.graph_objects as go

CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 0; color: #222;
       background: #fafafa; }
main { max-width: 1400px; margin: 0 auto; padding: 16px 28px 60px; }
h1 { font-size: 1.6em; margin: 0.6em 0 0.2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
.meta { color: #666; font-size: 0.9em; }
nav { position: sticky; top: 0; background: #fafafa; padding: 6px 0; border-bottom: 1px solid #e5e5e5; z-index: 5; }
nav a { margin-right: 14px; color: #1f5fa8; text-decoration: none; font-size: 0.92em; }
ul.takeaways li { margin: 0.35em 0; line-height: 1.4; }
.notes { background: #fff8e1; border-left: 4px solid #f0b400; padding: 8px 14px; margin: 12px 0; }
.notes li { margin: 0.25em 0; }
table { border-collapse: collapse; font-size: 0.86em; margin: 10px 0; background: white; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; white-space: normal; min-width: 4em; } td.t, th:first-child { text-align: left; }
td:last-child.t { white-space: normal; max-width: 520px; }
.scroll { overflow-x: auto; max-width: 100%; }
table.prov { width: 100%; table-layout: fixed; } table.prov td { text-align: left; white-space: normal; }
table.prov td:first-child { width: 11em; } table.prov td:last-child { overflow-wrap: anywhere; }
.figure { background: white; border: 1px solid #e5e5e5; margin: 14px 0; padding: 4px; }
p.explain { color: #444; max-width: 1000px; line-height: 1.45; }
"""
PLOT_CONFIG = {"displaylogo": False, "responsive": True, "toImageButtonOptions": {"format": "png", "scale": 2}}


@dataclass
class Section:
    anchor: str
    title: str
    explain: str = ""  # HTML
    blocks: list[str | go.Figure] = field(default_factory=list)  # HTML snippets and figures in order


def render(title: str, meta: str, sections: list[Section]) -> str:
    """The whole page. The first figure carries plotly.js inline (``include_plotlyjs=True``); the
    others reuse it, so the page needs no network and holds the library once."""
    parts, first = [], True
    for s in sections:
        parts.append(f'<section id="{s.anchor}"><h2>{html.escape(s.title)}</h2>')
        if s.explain:
            parts.append(f'<p class="explain">{s.explain}</p>')
        for block in s.blocks:
            if isinstance(block, go.Figure):
                div = block.to_html(full_html=False, include_plotlyjs=first, config=PLOT_CONFIG)
                parts.append(f'<div class="figure">{div}</div>')
                first = False
            else:
                parts.append(block)
        parts.append("</section>")
    nav = "".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body><main>"
            f"<h1>{html.escape(title)}</h1><div class=\"meta\">{meta}</div><nav>{nav}</nav>"
            + "".join(parts) + "</main></body></html>\n")


def bullet_list(items: list[str], cls: str = "") -> str:
    """Items are HTML already (escaped by their makers)."""
    if not items:
        return ""
    return f'<ul class="{cls}">' + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def notes_box(notes: list[str]) -> str:
    unique = list(dict.fromkeys(n for n in notes if n))
    if not unique:
        return ""
    return '<div class="notes"><b>Notes</b>' + bullet_list([html.escape(n) for n in unique]) + "</div>"
