"""Charts as inline SVG strings, so the report opens offline with no script and no library.

Each chart is an `<svg data-chart="NAME">` with one `<rect data-value="...">` per datum (the
raw number, not the formatted label), so a test or a curious analyst can read the data back
from the page. Every piece of text is escaped here; the template marks the result safe.
Colours are the Okabe-Ito palette, which stays distinguishable for colour-blind readers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

BLUE = "#0072B2"
SKY = "#56B4E9"
ORANGE = "#E69F00"
VERMILLION = "#D55E00"
GREEN = "#009E73"
PURPLE = "#CC79A7"
GREY = "#6b7280"

_FONT = "font-family=\"system-ui, -apple-system, 'Segoe UI', 'Liberation Sans', sans-serif\""
_WIDTH = 760
_LABEL_WIDTH = 270
_VALUE_ROOM = 90
_BAR_HEIGHT = 16
_BAR_GAP = 3
_GROUP_GAP = 14


@dataclass(frozen=True)
class Bar:
    value: float
    series: str  # the legend entry the bar belongs to
    tooltip: str


@dataclass(frozen=True)
class BarGroup:
    label: str
    bars: Sequence[Bar]
    sublabel: str = ""


def _attr(value: object) -> str:
    return escape(str(value), quote=True)


def _datum(value: float) -> str:
    """The raw value in a data attribute: shortest text that reads back to the same float."""
    return repr(float(value))


def nice_step(span: float, ticks: int = 5) -> float:
    """A round tick step (1, 2 or 5 x 10^k) giving about `ticks` intervals over `span`."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 5, 10):
        if raw <= multiple * power:
            return multiple * power
    return 10 * power


def _domain(values: Sequence[float]) -> tuple[float, float, float]:
    """Axis [low, high] including zero, widened to whole tick steps, and the step."""
    low = min([0.0, *values])
    high = max([0.0, *values])
    step = nice_step(high - low)
    return math.floor(low / step) * step, math.ceil(high / step) * step or step, step


def _legend(series: Sequence[tuple[str, str]], top: float) -> tuple[list[str], float]:
    """Legend entries left to right, wrapping onto a new line at the chart's edge; returns the
    SVG parts and the y below the legend."""
    parts = []
    x, y = 0.0, top + 12
    for name, colour in series:
        width = 30 + 6.8 * len(name)
        if x > 0 and x + width > _WIDTH:
            x, y = 0.0, y + 18
        parts.append(
            f'<g class="legend-item"><rect x="{x:.1f}" y="{y - 10:.1f}" width="12" height="12" '
            f'rx="2" fill="{colour}"/><text x="{x + 17:.1f}" y="{y:.1f}" font-size="12" '
            f'fill="#111827">{_attr(name)}</text></g>'
        )
        x += width
    return parts, y + 14


def horizontal_bar_chart(
    chart: str,
    title: str,
    groups: Sequence[BarGroup],
    series: Sequence[tuple[str, str]],
    value_text: Callable[[float], str],
    axis_text: Callable[[float], str],
) -> str:
    """Grouped horizontal bars, one band per group, one bar per datum; negatives go left of zero.

    `series` lists (name, colour) in legend order; each bar takes its series' colour. The
    legend is drawn only when there is more than one series.
    """
    colours = dict(series)
    values = [bar.value for group in groups for bar in group.bars]
    low, high, step = _domain(values)
    # Negative bars carry their value label on their left: leave it room.
    plot_left = _LABEL_WIDTH + (60 if low < 0 else 0)
    plot_right = _WIDTH - _VALUE_ROOM

    def x_of(value: float) -> float:
        return plot_left + (value - low) / (high - low) * (plot_right - plot_left)

    parts: list[str] = []
    top = 8.0
    if len(series) > 1:
        legend, top = _legend(series, 0)
        parts.extend(legend)
    y = top
    bars_svg: list[str] = []
    for group in groups:
        bars_height = len(group.bars) * (_BAR_HEIGHT + _BAR_GAP) - _BAR_GAP
        # A label with a sublabel needs two lines of text beside even a single bar.
        band = max(bars_height, 30) if group.sublabel else bars_height
        label_y = y + band / 2 + (-2 if group.sublabel else 4)
        bars_svg.append(
            f'<text x="{_LABEL_WIDTH - 8}" y="{label_y:.1f}" text-anchor="end" font-size="12" '
            f'fill="#111827">{_attr(group.label)}</text>'
        )
        if group.sublabel:
            bars_svg.append(
                f'<text x="{_LABEL_WIDTH - 8}" y="{label_y + 13:.1f}" text-anchor="end" '
                f'font-size="10" fill="{GREY}">{_attr(group.sublabel)}</text>'
            )
        bar_y = y + (band - bars_height) / 2
        for bar in group.bars:
            start, end = sorted((x_of(0.0), x_of(bar.value)))
            bars_svg.append(
                f'<rect data-value="{_datum(bar.value)}" data-series="{_attr(bar.series)}" '
                f'data-label="{_attr(group.label)}" x="{start:.1f}" y="{bar_y:.1f}" '
                f'width="{max(end - start, 0.0):.1f}" height="{_BAR_HEIGHT}" '
                f'fill="{colours[bar.series]}"><title>{_attr(bar.tooltip)}</title></rect>'
            )
            outside_right = bar.value >= 0
            text_x = end + 4 if outside_right else start - 4
            anchor = "start" if outside_right else "end"
            bars_svg.append(
                f'<text x="{text_x:.1f}" y="{bar_y + _BAR_HEIGHT - 4:.1f}" font-size="11" '
                f'text-anchor="{anchor}" fill="#374151">{_attr(value_text(bar.value))}</text>'
            )
            bar_y += _BAR_HEIGHT + _BAR_GAP
        y += band + _GROUP_GAP
    plot_bottom = y - _GROUP_GAP + 6
    grid: list[str] = []
    for index in range(round((high - low) / step) + 1):
        tick = low + index * step
        x = x_of(tick)
        stroke = "#9ca3af" if abs(tick) < step / 2 else "#e5e7eb"
        grid.append(
            f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{plot_bottom:.1f}" '
            f'stroke="{stroke}"/><text x="{x:.1f}" y="{plot_bottom + 14:.1f}" font-size="11" '
            f'text-anchor="middle" fill="{GREY}">{_attr(axis_text(tick))}</text>'
        )
    height = plot_bottom + 24
    return _svg(chart, title, height, [*parts, *grid, *bars_svg])


@dataclass(frozen=True)
class Marker:
    """A vertical reference line on the histogram's 0-100% axis."""

    at: float  # a share in [0, 1]
    label: str


def histogram(
    chart: str,
    title: str,
    buckets: Sequence[tuple[str, int]],
    markers: Sequence[Marker],
    axis_title: str,
) -> str:
    """Equal-width buckets over 0-100% as vertical bars, counts above them, markers as lines."""
    plot_left, plot_right, plot_top, plot_bottom = 60.0, _WIDTH - 20.0, 30.0, 250.0
    counts = [count for _, count in buckets]
    _, high, step = _domain([float(c) for c in counts])
    step = max(step, 1.0)
    high = max(high, step)
    width = (plot_right - plot_left) / len(buckets)

    def y_of(count: float) -> float:
        return plot_bottom - count / high * (plot_bottom - plot_top)

    parts: list[str] = []
    for index in range(round(high / step) + 1):
        tick = index * step
        y = y_of(tick)
        parts.append(
            f'<line x1="{plot_left}" y1="{y:.1f}" x2="{plot_right}" y2="{y:.1f}" '
            f'stroke="#e5e7eb"/><text x="{plot_left - 6}" y="{y + 4:.1f}" font-size="11" '
            f'text-anchor="end" fill="{GREY}">{tick:.0f}</text>'
        )
    for index, (label, count) in enumerate(buckets):
        x = plot_left + index * width
        y = y_of(count)
        parts.append(
            f'<rect data-value="{count}" data-label="{_attr(label)}" x="{x + 3:.1f}" '
            f'y="{y:.1f}" width="{width - 6:.1f}" height="{plot_bottom - y:.1f}" fill="{BLUE}">'
            f"<title>{_attr(f'{label}: {count} machines')}</title></rect>"
            f'<text x="{x + width / 2:.1f}" y="{y - 5:.1f}" font-size="11" '
            f'text-anchor="middle" fill="#374151">{count}</text>'
            f'<text x="{x + width / 2:.1f}" y="{plot_bottom + 15:.1f}" font-size="11" '
            f'text-anchor="middle" fill="{GREY}">{_attr(label)}</text>'
        )
    for row, marker in enumerate(markers):
        x = plot_left + min(max(marker.at, 0.0), 1.0) * (plot_right - plot_left)
        label_y = plot_top - 12 + row * 14
        anchor = "end" if marker.at > 0.75 else "start"
        offset = -4 if anchor == "end" else 4
        parts.append(
            f'<line data-marker="{_datum(marker.at)}" x1="{x:.1f}" y1="{plot_top - 16}" '
            f'x2="{x:.1f}" y2="{plot_bottom}" stroke="{VERMILLION}" stroke-width="2" '
            f'stroke-dasharray="5 4"/><text x="{x + offset:.1f}" y="{label_y:.1f}" '
            f'font-size="11" text-anchor="{anchor}" fill="{VERMILLION}">'
            f"{_attr(marker.label)}</text>"
        )
    parts.append(
        f'<line x1="{plot_left}" y1="{plot_bottom}" x2="{plot_right}" y2="{plot_bottom}" '
        f'stroke="#9ca3af"/><text x="{(plot_left + plot_right) / 2:.1f}" '
        f'y="{plot_bottom + 34:.1f}" font-size="12" text-anchor="middle" fill="#111827">'
        f"{_attr(axis_title)}</text>"
        f'<text transform="translate(16 {(plot_top + plot_bottom) / 2:.1f}) rotate(-90)" '
        f'font-size="12" text-anchor="middle" fill="#111827">machines</text>'
    )
    return _svg(chart, title, plot_bottom + 44, parts)


def _svg(chart: str, title: str, height: float, parts: Sequence[str]) -> str:
    return (
        f'<svg data-chart="{_attr(chart)}" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'viewBox="0 0 {_WIDTH} {height:.0f}" width="100%" {_FONT}>'
        f"<title>{_attr(title)}</title>{''.join(parts)}</svg>"
    )
