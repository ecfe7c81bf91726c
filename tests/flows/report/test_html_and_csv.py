"""report.html as text (self-contained, escaped, methodology from the billing facts) and
comparison.csv; the browser checks are in test_report_in_chromium.py."""

from __future__ import annotations

import csv
import re
from datetime import date

import pytest

from flows.config import PricingSettings
from flows.report import parse_formats, render_report
from transforms.billing import VM_BILLABLE_STATES


@pytest.fixture(scope="module")
def page(rendered) -> str:
    return rendered.html.read_text(encoding="utf-8")


def test_the_page_needs_nothing_from_outside(page):
    # Two inline scripts: the machines' JSON and the table's own code; nothing fetched.
    scripts = re.findall(r"<script([^>]*)>", page, re.IGNORECASE)
    assert scripts == [' type="application/json" id="machines-data"', ""]
    assert "fetch(" not in page and "XMLHttpRequest" not in page and "import(" not in page
    assert "<link" not in page.lower()
    assert not re.search(r"\s(src|href)\s*=", page, re.IGNORECASE)
    assert "url(" not in page and "@import" not in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_text_from_the_estate_is_escaped(page):
    assert "<script>throw" not in page
    assert "&lt;script&gt;throw new Error(&#39;unescaped text&#39;)&lt;/script&gt; &amp; more" in (
        page
    )


def test_each_chart_carries_one_value_per_datum(page):
    charts = dict(re.findall(r'<svg data-chart="([^"]+)"(.*?)</svg>', page, re.DOTALL))
    counts = {name: len(re.findall(r"<rect data-value=", body)) for name, body in charts.items()}
    assert counts == {
        # 3 subscription x plan pairs x (billed, hourly at list, plan + seats per quarter,
        # plan + a seat per machine)
        "cost-by-subscription": 12,
        "utilization-histogram": 10,  # ten buckets, empty ones included
        "machine-savings": 5,  # 3 savings + 2 overpayments; the uncovered machine has none
        "findings-by-kind": 5,
        # September has no licensing options (not complete), so the trend is October alone:
        # billed P1, billed P2, every charge, plans + seats; and its machines.
        "trend": 4,
        "trend-machines": 1,
    }


def test_methodology_states_the_billing_facts_and_settings(page):
    methodology = page[page.index('id="methodology"') :]
    for state in VM_BILLABLE_STATES:
        assert f"<code>{state}</code>" in methodology
    assert "<code>deallocated</code>" in methodology
    assert 'partial_hours = "fractional"' in methodology.replace("&#34;", '"')
    assert "$5.00 this month; $1.50 left unattributed" in methodology
    assert "Prices in force in October 2026" in methodology
    assert "2026-10-01 onwards" in methodology  # the P1 rate, and not the one that ended


def test_settings_the_warehouse_does_not_record_reach_the_methodology(warehouse, tmp_path):
    paths = render_report(
        warehouse,
        date(2026, 10, 1),
        tmp_path,
        formats={"html"},
        pricing=PricingSettings(
            partial_hours="round_up_clock_hour",
            seat_prices={"mde_for_servers": 4.5},
            discounts={"defender_servers_p2": 15},
        ),
    )
    methodology = paths.html.read_text(encoding="utf-8").split('id="methodology"')[1]
    assert "round_up_clock_hour" in methodology.split("also offers")[0]
    assert "<code>mde_for_servers</code> seat price 4.5 USD per month" in methodology
    assert "<code>defender_servers_p2</code> 15% off list" in methodology
    # Only the format asked for, and no staging file left behind.
    assert sorted(p.name for p in paths.directory.iterdir()) == ["report.html"]
    assert (paths.csv, paths.xlsx) == (None, None)


def test_csv_has_the_months_machine_rows_at_full_precision(rendered, expected):
    with rendered.csv.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6
    assert {row["month"] for row in rows} == {"2026-10-01"}
    assert list(rows[0])[:4] == ["month", "subscription_id", "resource_id", "machine_key"]
    billed = sum(float(row["billed_cost"]) for row in rows)
    assert round(billed * 100) == round(expected.machine_totals["billed_cost"] * 100)
    arc = next(row for row in rows if row["machine_name"] == "arc-onprem-01")
    assert arc["hourly_cost"] == "2.49984"  # not rounded to the cent
    uncovered = next(row for row in rows if row["machine_name"] == "vm-nodefender")
    assert (uncovered["plan"], uncovered["hourly_cost"], uncovered["cheaper"]) == ("", "", "")


def test_the_report_lands_in_a_folder_per_month(rendered):
    assert rendered.directory.name == "2026-10"
    assert {rendered.html.name, rendered.csv.name, rendered.xlsx.name} == {
        "report.html",
        "comparison.csv",
        "comparison.xlsx",
    }


def test_formats_are_parsed_and_unknown_ones_refused():
    assert parse_formats(" html, CSV ") == {"html", "csv"}
    with pytest.raises(ValueError, match="unknown report format pdf; choose from csv, html, xlsx"):
        parse_formats("html,pdf")
