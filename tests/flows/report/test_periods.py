"""The report beyond its month, against the hand-made warehouse of conftest: the trend of a
`--months` range, and the month in progress projected from a known run rate."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.report.data import load_report_data
from flows.report.periods import load_periods
from flows.warehouse import connect_read_only

APP = (
    "/subscriptions/aaaaaaaa-0000-4000-8000-000000000001/resourcegroups/rg/providers/"
    "microsoft.compute/virtualmachines/vm-app-01"
)
SUB_A = "aaaaaaaa-0000-4000-8000-000000000001"
NOVEMBER = date(2026, 11, 1)


def config_for(tmp_path: Path, warehouse: Path) -> Path:
    config = tmp_path / "mdecost.toml"
    config.write_text(
        f'[warehouse]\npath = "{warehouse}"\n[report]\npath = "{tmp_path / "reports"}"\n'
    )
    return config


def test_months_renders_the_trend_of_the_range_and_the_report_of_its_last_month(
    warehouse, tmp_path
):
    config = config_for(tmp_path, warehouse)
    result = CliRunner().invoke(
        app, ["report", "--months", "2026-09..2026-10", "--format", "html", "-c", str(config)]
    )
    assert result.exit_code == 0, result.output
    page = (tmp_path / "reports" / "2026-10" / "report.html").read_text(encoding="utf-8")
    # Asked for, September is shown though incomplete (the default trend has complete months).
    assert re.findall(r'<tr data-month="([\d-]+)">', page) == ["2026-09-01", "2026-10-01"]
    assert '<td class="num" data-billed="14.4">$14.40</td>' in page  # September's estate row


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--months", "2026-10..2026-09"], "2026-10 is after 2026-09"),
        (["--months", "2026-09"], "must look like YYYY-MM..YYYY-MM"),
        (["--months", "2026-09..2026-10", "--month", "2026-10"], "not both"),
    ],
)
def test_a_wrong_range_is_one_line(warehouse, tmp_path, arguments, message):
    result = CliRunner().invoke(
        app, ["report", *arguments, "-c", str(config_for(tmp_path, warehouse))]
    )
    assert result.exit_code == 2
    assert message in result.output


def in_progress(warehouse: Path, directory: Path) -> Path:
    """The hand-made warehouse, collected at 2026-11-15 12:00 with vm-app-01 (P2) running and
    billed 2.00 a day on November 1..14 (on top of conftest's 0.48 on the 1st), 24 h a day,
    November 2 a free-trial day."""
    path = directory / "warehouse.duckdb"
    shutil.copy(warehouse, path)
    days = [NOVEMBER + timedelta(days=k) for k in range(14)]
    with duckdb.connect(str(path)) as con:
        con.execute("UPDATE build_info SET history_end = TIMESTAMPTZ '2026-11-15 12:00:00+00'")
        con.executemany(
            "INSERT INTO defender_charges_daily (usage_date, subscription_id, resource_id, "
            "plan, billed_hours, billed_cost, currency, attribution) "
            "VALUES (?, ?, ?, 'P2', 24.0, 2.00, 'USD', 'resource')",
            [(day, SUB_A, APP) for day in days],
        )
        con.executemany(
            "INSERT INTO machine_hours_daily VALUES (?, ?, ?, ?)",
            [(day, APP, SUB_A, 24.0) for day in days] + [(date(2026, 11, 15), APP, SUB_A, 12.0)],
        )
        con.executemany(
            "INSERT INTO machine_plans_daily VALUES (?, ?, ?, 'P2', 'billed', ?)",
            [(day, APP, SUB_A, day == date(2026, 11, 2)) for day in [*days, date(2026, 11, 15)]],
        )
        con.execute(
            "INSERT INTO power_intervals VALUES "
            f"('{APP}', 'running', TIMESTAMPTZ '2026-11-01 00:00:00+00', "
            "TIMESTAMPTZ '2026-11-15 12:00:00+00', true), "
            "('/subscriptions/x/vm-batch', 'deallocated', TIMESTAMPTZ '2026-11-01 00:00:00+00', "
            "TIMESTAMPTZ '2026-11-15 12:00:00+00', false)"
        )
        con.execute(
            "INSERT INTO licensing_comparison_monthly (month, subscription_id, resource_id, "
            "machine_key, machine_name, plan, seat_option, seat_cost, mde_component_cost, "
            "currency) VALUES (DATE '2026-11-01', ?, ?, ?, 'vm-app-01', 'P2', "
            "'mde_for_servers', 5.00, 2.18, 'USD')",
            [SUB_A, APP, APP],
        )
    return path


def test_the_month_in_progress_is_projected_at_the_last_seven_days_run_rate(warehouse, tmp_path):
    path = in_progress(warehouse, tmp_path)
    with connect_read_only(path) as con:
        data = load_report_data(con, date(2026, 10, 1), str(path))
        mtd = load_periods(con, data.month, data.assumptions, "USD").month_to_date
    assert mtd is not None
    assert mtd.month == NOVEMBER
    assert mtd.as_of == datetime(2026, 11, 15, 12, tzinfo=UTC)
    assert mtd.machines_billable_now == 1  # vm-app-01 runs; the deallocated one does not count
    # Billed: 14 x 2.00 + conftest's 0.48 on the 1st = 28.48 through the 14th; the 8th..14th
    # average 2.00; 16 days left: 28.48 + 32.00 = 60.48.
    assert mtd.billed.through == date(2026, 11, 14)
    assert mtd.billed.month_to_date == pytest.approx(28.48)
    assert mtd.billed.run_rate_per_day == pytest.approx(2.00)
    assert mtd.billed.days_left == 16
    assert mtd.billed.projected == pytest.approx(60.48)
    # Hours at list (P2 0.02; the USD rate, not the EUR one): 24 h x 0.02 = 0.48 a day, the
    # trial day (2nd) at 0 and the 15th not whole: 13 x 0.48 = 6.24; + 16 x 0.48 = 13.92.
    assert mtd.hourly_list.through == date(2026, 11, 14)
    assert mtd.hourly_list.month_to_date == pytest.approx(6.24)
    assert mtd.hourly_list.projected == pytest.approx(13.92)
    # Keeping P2 with a seat: 24 h x (0.02 - 0.00672 P1 rate as MDE component) = 0.31872 a
    # day: 13 x 0.31872 = 4.14336, + 16 x 0.31872 = 9.24288; one seat 5.00 on top.
    assert mtd.seats == 1
    assert mtd.like_for_like_to_date == pytest.approx(5.00 + 4.14336)
    assert mtd.like_for_like_projected == pytest.approx(5.00 + 9.24288)


def test_the_month_in_progress_is_its_own_section(warehouse, tmp_path):
    from flows.report import render_report

    path = in_progress(warehouse, tmp_path)
    rendered = render_report(path, date(2026, 10, 1), tmp_path / "reports", formats=["html"])
    page = rendered.html.read_text(encoding="utf-8")
    section = page[page.index('<section id="month-to-date"') :]
    assert section.startswith('<section id="month-to-date" data-month="2026-11-01">')
    assert 'data-projected="60.48' in section
    assert "run rate of the last 7 days" in section
    # The complete month's headline is untouched: October's figures come before it.
    assert page.index('id="headline"') < page.index('id="month-to-date"')


def test_the_workbook_has_the_showback_and_the_trend():
    """Showback rows of a hand-made month: two groups and the untagged, in the report's order."""
    from flows.report.periods import Periods, Showback, ShowbackGroup, TrendMonth
    from flows.report.xlsx import _showback_table, _trend_table

    periods = Periods(
        trends=[TrendMonth(date(2026, 10, 1), True, 30.0, 10.0, 18.0, 25.0, 3, 0.5)],
        showback=[
            Showback(
                "tag:CostCenter",
                [
                    ShowbackGroup("value", "CC-1", 2, 100.0, 20.0, 1.0, 15.0),
                    ShowbackGroup("missing", None, 1, 10.0, 10.0, 0.0, 9.0),
                ],
            )
        ],
        month_to_date=None,
    )
    assert _showback_table(periods).to_pylist() == [
        {"group_key": "tag:CostCenter", "group_kind": "value", "group_value": "CC-1",
         "machines": 2, "billable_hours": 100.0, "billed_cost": 20.0, "allocated_cost": 1.0,
         "like_for_like_cost": 15.0},
        {"group_key": "tag:CostCenter", "group_kind": "missing", "group_value": None,
         "machines": 1, "billable_hours": 10.0, "billed_cost": 10.0, "allocated_cost": 0.0,
         "like_for_like_cost": 9.0},
    ]  # fmt: skip
    assert _trend_table(periods).column("billed_cost").to_pylist() == [30.0]


def test_no_machine_name_can_close_the_json_block():
    import json

    import polars as pl

    from flows.report.sections import machines_json

    hostile = "</script><script>alert(1)</script> & \u2028"
    text = str(machines_json(pl.DataFrame({"name": [hostile]})))
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text)["columns"]["name"] == [hostile]
