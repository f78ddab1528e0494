"""Charts as SVG drawn on the server: no script, nothing inline but presentation attributes."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

WIDTH = 640
BAR_HEIGHT = 22
GAP = 8
LABEL_WIDTH = 150


def bars(title: str, items: Sequence[tuple[str, int]], *, css_class: str = "chart") -> Markup:
    """A horizontal bar chart, one bar per (label, value); the title is the SVG's accessible name."""
    top = 28
    height = top + len(items) * (BAR_HEIGHT + GAP) + GAP
    biggest = max((value for _, value in items), default=0) or 1
    room = WIDTH - LABEL_WIDTH - 60
    parts = [
        f'<svg class="{css_class}" xmlns="http://www.w3.org/2000/svg" role="img" width="{WIDTH}" '
        f'height="{height}" viewBox="0 0 {WIDTH} {height}" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="18" font-size="15" font-weight="bold" fill="#1f2d3d">{escape(title)}</text>',
    ]
    for index, (name, value) in enumerate(items):
        y = top + index * (BAR_HEIGHT + GAP)
        width = round(room * value / biggest) if value else 0
        parts.append(
            f'<text x="{LABEL_WIDTH - 6}" y="{y + 16}" font-size="13" text-anchor="end" fill="#333">'
            f"{escape(name)}</text>"
        )
        parts.append(
            f'<rect class="bar" x="{LABEL_WIDTH}" y="{y}" width="{width}" height="{BAR_HEIGHT}" fill="#1f5fa8">'
            f"<title>{escape(name)}: {value}</title></rect>"
        )
        parts.append(f'<text x="{LABEL_WIDTH + width + 6}" y="{y + 16}" font-size="13" fill="#333">{value}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def funnel(title: str, steps: Sequence[tuple[str, int]]) -> Markup:
    """The stage funnel: each step a centred bar as wide as its share of the first."""
    top = 28
    height = top + len(steps) * (BAR_HEIGHT + GAP) + GAP
    first = (steps[0][1] if steps else 0) or 1
    room = WIDTH - 2 * LABEL_WIDTH
    parts = [
        f'<svg class="chart funnel" xmlns="http://www.w3.org/2000/svg" role="img" width="{WIDTH}" '
        f'height="{height}" viewBox="0 0 {WIDTH} {height}" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="18" font-size="15" font-weight="bold" fill="#1f2d3d">{escape(title)}</text>',
    ]
    for index, (name, value) in enumerate(steps):
        y = top + index * (BAR_HEIGHT + GAP)
        width = max(round(room * value / first), 2 if value else 0)
        x = LABEL_WIDTH + (room - width) / 2
        parts.append(
            f'<text x="{LABEL_WIDTH - 6}" y="{y + 16}" font-size="13" text-anchor="end" fill="#333">'
            f"{escape(name)}</text>"
        )
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y}" width="{width}" height="{BAR_HEIGHT}" fill="#b0413e">'
            f"<title>{escape(name)}: {value}</title></rect>"
        )
        parts.append(f'<text x="{WIDTH - LABEL_WIDTH + 6}" y="{y + 16}" font-size="13" fill="#333">{value}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
