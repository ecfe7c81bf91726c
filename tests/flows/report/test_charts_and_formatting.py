"""SVG charts and number formatting, on small inputs worked out by hand."""

from __future__ import annotations

import re

import pytest

from flows.report import charts
from flows.report.formatting import money, money_compact, percent, xlsx_money_format


@pytest.mark.parametrize(
    ("span", "step"),
    [(20.0, 5.0), (1.0, 0.2), (7.0, 2.0), (0.03, 0.01), (9_000.0, 2_000.0), (0.0, 1.0)],
)
def test_ticks_are_round(span, step):
    assert charts.nice_step(span) == pytest.approx(step)


def test_negative_bars_end_at_zero_and_positive_bars_start_there():
    svg = charts.horizontal_bar_chart(
        "c",
        "t",
        [
            charts.BarGroup("gain", [charts.Bar(5.0, "s", "gain")]),
            charts.BarGroup("loss", [charts.Bar(-10.0, "s", "loss")]),
        ],
        [("s", "#000000")],
        str,
        str,
    )
    rects = {
        label: (float(x), float(width))
        for label, x, width in re.findall(
            r'data-label="(\w+)" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"', svg
        )
    }
    gain_x, gain_width = rects["gain"]
    loss_x, loss_width = rects["loss"]
    assert loss_x + loss_width == pytest.approx(gain_x, abs=0.11)  # both meet at zero
    assert loss_width == pytest.approx(2 * gain_width, abs=0.2)  # -10 is twice as long as 5


def test_chart_text_is_escaped():
    svg = charts.horizontal_bar_chart(
        "c", "<t>", [charts.BarGroup("a<b", [charts.Bar(1.0, "s&p", '"x"')])], [("s&p", "#000")],
        str, str,
    )  # fmt: skip
    assert "a<b" not in svg and 'data-label="a&lt;b"' in svg
    assert "<title>&quot;x&quot;</title>" in svg
    assert "<title>&lt;t&gt;</title>" in svg


def test_histogram_places_markers_on_the_share_axis():
    svg = charts.histogram(
        "h", "t", [("0-50%", 2), ("50-100%", 0)], [charts.Marker(0.5, "half")], "share"
    )
    assert re.findall(r'<rect data-value="(\d+)"', svg) == ["2", "0"]
    marker_x = float(re.search(r'data-marker="0.5" x1="([\d.]+)"', svg).group(1))
    second_bucket_x = float(re.findall(r'<rect data-value="\d+" data-label="[^"]+" x="([\d.]+)"',
                                       svg)[1])  # fmt: skip
    assert marker_x == pytest.approx(second_bucket_x - 3)  # bars are inset 3 px in their bucket


def test_money_and_shares():
    assert money(1234.5, "USD") == "$1,234.50"
    assert money(-0.5, "USD") == "\u2212$0.50"
    assert money(-0.004, "USD") == "$0.00"  # no minus sign on an amount that shows as zero
    assert money(1234.5, "EUR") == "1,234.50 EUR"
    assert money_compact(1500, "USD") == "$1.5k"
    assert money_compact(-10, "EUR") == "\u221210 EUR"
    assert percent(0.336) == "33.6%"


def test_excel_money_formats():
    assert xlsx_money_format("USD") == '"$"#,##0.00'
    assert xlsx_money_format("EUR") == '#,##0.00 "EUR"'
