"""SVG line charts drawn in Python (pure: numbers in, markup out; no JavaScript, nothing fetched).

One chart shows one or more series over the monitor's windows (evenly spaced, oldest left), a dashed
threshold line, and a point per window that links to the window's report. Every text is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

PALETTE = ("#0969da", "#8250df", "#1a7f37", "#bf8700", "#cf222e", "#57606a")
THRESHOLD_COLOUR = "#cf222e"


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]
    """One value per window (None: the window has no value; the line breaks there)."""
    colour: str = PALETTE[0]
    dashed: bool = False
    points: bool = True


@dataclass(frozen=True)
class Chart:
    title: str
    series: Sequence[Series]
    labels: Sequence[str]
    """One label per window (its time), shown in each point's tooltip; the first and last on the axis."""
    links: Sequence[str | None] = field(default_factory=tuple)
    """One link per window (its report), or None."""
    y_label: str = ""
    width: int = 560
    height: int = 200


def _finite(v: float | None) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"


def _nice_top(v: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten at or above ``v`` (an axis's top)."""
    if v <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(v))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= v:
            return step * power
    return 10 * power  # pragma: no cover - the loop always returns


def line_chart(chart: Chart) -> str:
    """The chart as an ``<svg>`` element (with a ``<title>`` and ``role="img"``)."""
    w, h = chart.width, chart.height
    left, right, top, bottom = 48, 12, 22, 34
    pw, ph = w - left - right, h - top - bottom
    n = len(chart.labels)
    values = [v for s in chart.series for v in (_finite(x) for x in s.values) if v is not None]
    lo = min(0.0, *values) if values else 0.0
    hi = _nice_top(max(values) * 1.05) if values and max(values) > 0 else 1.0
    span = (hi - lo) or 1.0

    def x(i: int) -> float:
        return left + (pw * (i + 0.5) / n if n else pw / 2)

    def y(v: float) -> float:
        return top + ph - (v - lo) / span * ph

    out = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" role="img" aria-label="{escape(chart.title)}">',
        f"<title>{escape(chart.title)}</title>",
        f'<text x="{left}" y="14" class="chart-title">{escape(chart.title)}</text>',
    ]
    for k in range(5):
        v = lo + span * k / 4
        yy = y(v)
        out.append(
            f'<line x1="{left}" x2="{w - right}" y1="{yy:.1f}" y2="{yy:.1f}" class="grid"/>'
            f'<text x="{left - 4}" y="{yy + 3:.1f}" class="tick" text-anchor="end">{_fmt(v)}</text>'
        )
    if chart.y_label:
        out.append(
            f'<text x="10" y="{top + ph / 2:.1f}" class="tick" text-anchor="middle" '
            f'transform="rotate(-90 10 {top + ph / 2:.1f})">{escape(chart.y_label)}</text>'
        )
    if n:
        out.append(f'<text x="{left}" y="{h - 8}" class="tick">{escape(chart.labels[0])}</text>')
        if n > 1:
            out.append(
                f'<text x="{w - right}" y="{h - 8}" class="tick" text-anchor="end">{escape(chart.labels[-1])}</text>'
            )
    for s in chart.series:
        pts = [_finite(v) for v in s.values][:n]
        style = f'stroke="{escape(s.colour)}"' + (' stroke-dasharray="5 4"' if s.dashed else "")
        run: list[str] = []
        for i, p in enumerate([*pts, None]):
            if p is None:
                if len(run) > 1:
                    out.append(f'<polyline fill="none" stroke-width="2" {style} points="{" ".join(run)}"/>')
                run = []
                continue
            run.append(f"{x(i):.1f},{y(p):.1f}")
        if not s.points:
            continue
        for i, p in enumerate(pts):
            if p is None:
                continue
            tip = f"{chart.labels[i]}: {s.name} {_fmt(p)}"
            dot = (
                f'<circle cx="{x(i):.1f}" cy="{y(p):.1f}" r="3.5" fill="{escape(s.colour)}">'
                f"<title>{escape(tip)}</title></circle>"
            )
            link = chart.links[i] if i < len(chart.links) else None
            out.append(f'<a href="{escape(link)}">{dot}</a>' if link else dot)
    out.append("</svg>")
    return "".join(out)


def legend(series: Sequence[Series]) -> str:
    """An HTML legend for the series of a chart."""
    items = "".join(
        f'<span class="key"><span class="swatch{" dashed" if s.dashed else ""}" '
        f'style="border-color:{escape(s.colour)}"></span>{escape(s.name)}</span>'
        for s in series
    )
    return f'<div class="legend">{items}</div>'


def sparkline(
    values: Sequence[float | None], threshold: float | None, width: int = 120, height: int = 24
) -> str:
    """A tiny line (no axes, no labels) for a table cell; the threshold as a dashed line."""
    pts = [_finite(v) for v in values]
    finite = [v for v in pts if v is not None]
    th = _finite(threshold)
    hi = max([*finite, th or 0.0, 1e-9]) * 1.1
    n = len(pts)

    def x(i: int) -> float:
        return 2 + (width - 4) * (i / (n - 1) if n > 1 else 0.5)

    def y(v: float) -> float:
        return height - 2 - (height - 4) * max(v, 0.0) / hi

    out = [
        f'<svg class="spark" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-hidden="true">'
    ]
    if th is not None:
        out.append(
            f'<line x1="0" x2="{width}" y1="{y(th):.1f}" y2="{y(th):.1f}" stroke="{THRESHOLD_COLOUR}" '
            'stroke-dasharray="3 3" stroke-width="1"/>'
        )
    line = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(pts) if v is not None)
    if len(finite) > 1:
        out.append(f'<polyline fill="none" stroke="{PALETTE[0]}" stroke-width="1.5" points="{line}"/>')
    elif finite:
        i = next(i for i, v in enumerate(pts) if v is not None)
        out.append(f'<circle cx="{x(i):.1f}" cy="{y(finite[0]):.1f}" r="2" fill="{PALETTE[0]}"/>')
    out.append("</svg>")
    return "".join(out)
