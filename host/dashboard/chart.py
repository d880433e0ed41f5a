"""The village page's chart: daily lpcd as bars, drawn here as inline SVG (no
script, no plotting library in the browser), with the JJM lines at 55 and 40 and
the incomplete days marked."""

from __future__ import annotations

from html import escape
from typing import Any

from ..reports.daily import FULLY_LPCD, NON_LPCD

WIDTH, HEIGHT = 760, 240
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 12, 34
BAND_CLASS = {"fully": "b-fully", "partially": "b-partially", "non": "b-non"}


def lpcd_svg(days: list[dict[str, Any]], n_days: int = 90) -> str:
    """An SVG of `days` (dicts with date, lpcd, band, complete), oldest first."""
    days = days[-n_days:]
    top = max([80.0] + [float(d["lpcd"]) * 1.1 for d in days if d["lpcd"] is not None])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(n_days, 1)

    def y(v: float) -> float:
        return TOP + plot_h * (1 - v / top)

    out = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg" '
        'aria-labelledby="chart-title">',
        f'<title id="chart-title">Daily lpcd, last {n_days} days; lines at '
        f"{FULLY_LPCD} and {NON_LPCD}; grey marks are incomplete days</title>",
        f'<rect class="plot" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}"/>',
    ]
    step = 20 if top <= 120 else 50
    for v in range(0, int(top) + 1, step):
        out.append(
            f'<text class="tick" x="{LEFT - 6}" y="{y(v) + 4:.1f}" '
            f'text-anchor="end">{v}</text>'
        )
    start = n_days - len(days)
    for i, d in enumerate(days):
        x = LEFT + (start + i) * slot + 1
        w = max(slot - 2, 1)
        label = escape(str(d["date"]))
        if d["complete"] and d["lpcd"] is not None:
            h = plot_h * float(d["lpcd"]) / top
            cls = BAND_CLASS.get(d["band"] or "", "b-none")
            out.append(
                f'<rect class="bar {cls}" data-date="{label}" x="{x:.1f}" '
                f'y="{y(float(d["lpcd"])):.1f}" width="{w:.1f}" height="{h:.1f}">'
                f"<title>{label}: {d['lpcd']:.1f} lpcd ({d['band']})</title></rect>"
            )
        else:
            out.append(
                f'<rect class="incomplete" data-date="{label}" x="{x:.1f}" '
                f'y="{TOP + plot_h - 8:.1f}" width="{w:.1f}" height="8">'
                f"<title>{label}: incomplete day (no lpcd)</title></rect>"
            )
        if i == 0 or i == len(days) - 1 or (start + i) % 15 == 0:
            out.append(
                f'<text class="tick" x="{x + w / 2:.1f}" y="{HEIGHT - 12}" '
                f'text-anchor="middle">{label[5:]}</text>'
            )
    for v, cls in ((FULLY_LPCD, "line-55"), (NON_LPCD, "line-40")):
        out.append(
            f'<line class="{cls}" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(v):.1f}" '
            f'y2="{y(v):.1f}"/><text class="{cls}-label" x="{LEFT + 4}" '
            f'y="{y(v) - 4:.1f}" text-anchor="start">{v} lpcd</text>'
        )
    out.append("</svg>")
    return "\n".join(out)
