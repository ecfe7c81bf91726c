"""comparison.xlsx read back with openpyxl: its totals are the warehouse's, to the cent."""

from __future__ import annotations

import duckdb
import openpyxl
import pytest

from transforms.contract import VIEWS

MACHINE_HEADER = [
    "month", "subscription_id", "resource_id", "machine_key", "machine_name", "machine_kind",
    "plan", "plan_days_p1", "plan_days_p2", "trial_days", "billable_hours", "hours_in_month",
    "utilization", "billed_hours", "billed_cost", "hourly_cost", "mde_component_cost",
    "seat_option", "seat_cost", "per_hour_savings", "break_even_utilization", "cheaper",
    "currency",
]  # fmt: skip


def cents(value: float) -> int:
    return round(value * 100)


@pytest.fixture(scope="module")
def workbook(rendered):
    return openpyxl.load_workbook(rendered.xlsx, data_only=True)


def table(sheet) -> tuple[list[str], list[dict], dict]:
    """(header, data rows as dicts, the totals row as a dict) of a machines/findings sheet."""
    rows = list(sheet.iter_rows(values_only=True))
    header = list(rows[0])
    body = [dict(zip(header, row, strict=True)) for row in rows[1:-1]]
    totals = dict(zip(header, rows[-1], strict=True))
    return header, body, totals


def test_sheets_in_order(workbook):
    # no showback rows in the hand-made warehouse: no showback sheet; the trend has October
    assert workbook.sheetnames == ["summary", "machines", "findings", "options", "trends"]


def test_the_options_sheet_holds_the_months_licensing_options(workbook):
    rows = list(workbook["options"].iter_rows(values_only=True))
    assert list(rows[0]) == list(VIEWS["licensing_options_monthly"]["columns"])
    body = [dict(zip(rows[0], row, strict=True)) for row in rows[1:-1]]
    assert len(body) == 33  # 5 scope x plan pairs x 6 options, and 3 P1-instead-of-P2 rows
    estate_p2 = [
        row
        for row in body
        if row["subscription_id"] is None
        and row["plan"] == "P2"
        and row["option"] == "seats_plus_hourly_remainder"
        and row["seat_rule"] == "reassign_90d"
    ]
    assert [cents(row["cost"]) for row in estate_p2] == [3457]  # 34.5748


def test_machine_totals_match_the_warehouse_to_the_cent(workbook, warehouse, expected):
    header, body, totals = table(workbook["machines"])
    assert header == MACHINE_HEADER
    assert len(body) == 6  # October's machines only; September's row stays out
    assert totals["month"] == "Total"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        sums = dict(
            zip(
                expected.machine_totals,
                con.execute(
                    "SELECT sum(billable_hours), sum(billed_hours), sum(billed_cost), "
                    "sum(hourly_cost), sum(seat_cost), sum(per_hour_savings) "
                    "FROM licensing_comparison_monthly WHERE month = ?",
                    [expected.month],
                ).fetchall()[0],
                strict=True,
            )
        )
    for column, total in expected.machine_totals.items():
        assert cents(totals[column]) == cents(total) == cents(sums[column]), column
        # The cells hold values, and they add up to the totals row.
        cells = sum(row[column] for row in body if row[column] is not None)
        assert cents(cells) == cents(total), column


def test_findings_total_matches_the_warehouse(workbook, expected):
    header, body, totals = table(workbook["findings"])
    assert header == [
        "resource_id", "subscription_id", "machine_name", "finding", "detail", "amount",
        "currency",
    ]  # fmt: skip
    assert len(body) == 5
    assert cents(totals["amount"]) == cents(expected.findings_total)
    # Largest amount first; the estate-wide unclaimed MDE benefit has no machine.
    assert (body[0]["finding"], body[0]["resource_id"], body[0]["amount"]) == (
        "mde_benefit_unclaimed",
        None,
        5.0,
    )


def test_summary_headline_figures(workbook, expected):
    sheet = workbook["summary"]
    measures = {
        row[0].strip(): row[1]
        for row in sheet.iter_rows(min_row=3, max_col=2, values_only=True)
        if row[0] and row[1] is not None
    }
    billed = measures["Defender for Servers billed (Cost Management)"]
    assert cents(billed) == cents(expected.billed_all_charges)
    assert cents(measures["of which allocated from subscription-level charges"]) == 500
    assert cents(measures["of which not attributed to a machine"]) == 150
    assert cents(measures["Per-hour price of observed billable hours"]) == 2445  # 24.44984
    # Per plan, like for like (the conftest's PLAN_SCOPES): P2 billed 21.98 against keeping P2
    # with 4 MDE seats per quarter, 34.5748 (12.5948 more); P1 2.49984 against 5.00.
    assert cents(measures["P2: billed"]) == 2198
    keep = "keep the plan, MDE part by mde_for_servers seats (reassign_90d)"
    assert cents(measures[f"P2: {keep}"]) == 3457
    assert cents(measures["P2: difference (keep + seats - billed)"]) == 1259
    assert cents(measures["P2: the same hours on Plan 1"]) == 738  # 1097.5 x 0.00672
    assert cents(measures["P1: billed"]) == 250
    assert measures[f"P1: {keep}"] == 5.0
    assert measures["Month complete"] == "yes"
    assert measures["Machines (distinct)"] == 5
    assert measures["Peak concurrent billable machines"] == 4
    assert measures["Hours billed (Cost Management)"] == 1546.0
    assert measures["Findings"] == 5
    assert measures["Currency"] == "USD"


def test_summary_subscriptions_and_estate_row(workbook, expected):
    rows = list(workbook["summary"].iter_rows(values_only=True))
    header_at = next(i for i, row in enumerate(rows) if row[0] == "subscription_id")
    by_subscription = {row[0]: row for row in rows[header_at + 1 :] if row[0]}
    estate = by_subscription.pop("Estate (all subscriptions)")
    assert len(by_subscription) == 2
    billed = rows[header_at].index("billed_cost")
    assert cents(estate[billed]) == cents(expected.billed_all_charges)
    subscriptions_billed = sum(row[billed] for row in by_subscription.values())
    assert cents(subscriptions_billed) == cents(expected.billed_all_charges)


def test_number_formats_frozen_headers_and_filters(workbook):
    sheet = workbook["machines"]
    header = [cell.value for cell in sheet[1]]
    second = {name: sheet.cell(row=2, column=i + 1) for i, name in enumerate(header)}
    assert second["billed_cost"].number_format == '"$"#,##0.00'
    assert second["per_hour_savings"].number_format == '"$"#,##0.00'
    assert second["billable_hours"].number_format == "#,##0.00"
    assert second["utilization"].number_format == "0.0%"
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == "A1:W7"  # 23 columns, header + 6 machines
    assert workbook["findings"].freeze_panes == "A2"
    assert workbook["findings"].auto_filter.ref == "A1:G6"
    assert workbook["summary"].freeze_panes == "A3"


def test_totals_are_subtotal_formulas_that_follow_the_filter(rendered):
    sheet = openpyxl.load_workbook(rendered.xlsx)["machines"]
    assert sheet["O8"].value == "=SUBTOTAL(109,O2:O7)"  # billed_cost
