"""The report's numbers as read from the hand-made warehouse, and the errors a wrong month,
warehouse or currency gives."""

from __future__ import annotations

import shutil
from datetime import date

import duckdb
import pytest

from flows.report import ReportDataError, render_report
from flows.report.data import load_report_data, month_bounds
from flows.warehouse import WarehouseMissingError


@pytest.fixture(scope="module")
def october(warehouse, expected):
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return load_report_data(con, date(2026, 10, 17), str(warehouse))


def test_month_bounds_are_half_open():
    assert month_bounds(date(2026, 12, 31)) == (date(2026, 12, 1), date(2027, 1, 1))
    assert month_bounds(date(2026, 2, 10)) == (date(2026, 2, 1), date(2026, 3, 1))


def test_headline(october, expected):
    headline = october.headline
    assert october.month == expected.month  # any day of the month names the month
    assert headline.billed_cost == pytest.approx(expected.billed_all_charges)
    assert headline.allocated_cost == pytest.approx(5.00)
    assert headline.unattributed_cost == pytest.approx(1.50)
    # Charges dated 2026-09-30 and 2026-11-01 stay out: 744 + 100 + 5 + 250 + 372 + 75.
    assert headline.billed_hours == pytest.approx(1546.0)
    assert headline.hourly_cost == pytest.approx(24.44984)
    assert (headline.seat_cost_distinct, headline.seat_cost_peak) == (25.0, 20.0)
    assert headline.difference_distinct == pytest.approx(25.0 - expected.billed_all_charges)
    assert headline.difference_peak == pytest.approx(20.0 - expected.billed_all_charges)
    assert headline.findings_count == 5
    assert headline.currency == "USD"


def test_the_answer_is_per_plan_like_for_like(october):
    # See the conftest's PLAN_SCOPES: each plan's billed cost against keeping the plan with
    # MDE seats fixed per quarter for its MDE part; the P2 -> P1 what-if beside it.
    p1, p2 = october.plan_answers
    assert (p1.plan, p1.machines, p1.seats) == ("P1", 1, 1)
    assert (p1.billed, p1.like_for_like) == (pytest.approx(2.49984), pytest.approx(5.0))
    assert p1.p1_instead is None
    assert (p2.plan, p2.machines, p2.seats, p2.seats_per_machine) == ("P2", 4, 4, 4)
    assert p2.billed == pytest.approx(21.98)
    assert p2.like_for_like == pytest.approx(34.5748)
    assert p2.difference == pytest.approx(12.5948)
    assert p2.seats_only == pytest.approx(20.0)
    assert p2.p1_instead == pytest.approx(1097.5 * 0.00672)
    assert october.month_complete
    assert [(a.subscription_id, a.plan) for a in october.subscription_answers] == [
        ("aaaaaaaa-0000-4000-8000-000000000001", "P2"),  # billed 16.98
        ("bbbbbbbb-0000-4000-8000-000000000002", "P2"),  # 5.00
        ("bbbbbbbb-0000-4000-8000-000000000002", "P1"),  # 2.49984
    ]
    assert october.subscription_answers[0].like_for_like == pytest.approx(26.24816)
    assert october.options.num_rows == 5 * 6 + 3  # 6 rows a scope and plan, P2's P1 what-if
    assert october.assumptions.seat_rule == "reassign_90d"


def test_utilization_buckets_and_break_even(october, expected):
    # 3/744, 100/744, 250.5/744, 372/744 = 50% exactly, and two machines at 744/744 = 100%.
    assert [(b.lower_percent, b.upper_percent) for b in october.utilization][:2] == [
        (0, 10),
        (10, 20),
    ]
    assert october.utilization[-1].label == "90\N{EN DASH}100%"
    assert [b.machines for b in october.utilization] == [1, 1, 0, 1, 0, 1, 0, 0, 0, 2]
    assert [(b.plan, b.utilization) for b in october.break_even] == [
        ("P1", pytest.approx(expected.p1_break_even)),
        ("P2", pytest.approx(expected.p2_break_even)),
    ]


def test_savings_and_overpayments_are_ranked(october):
    assert [m.machine_name for m in october.top_savings] == [
        "vm-old-03",  # 4.94
        "vm-batch-02",  # 3.00
        "arc-onprem-01",  # 2.50016
    ]
    assert [m.machine_name for m in october.top_overpayments] == ["vm-app-01", "scale-1_0"]


def test_findings_by_kind_count_findings_without_amount(october, expected):
    assert [(k.finding, k.count, k.amount) for k in october.finding_kinds] == [
        ("mde_benefit_unclaimed", 1, 5.0),
        ("no_mde_sensor", 1, pytest.approx(2.49984)),
        ("billed_while_not_billable", 1, pytest.approx(0.04)),
        ("billable_not_billed", 1, pytest.approx(0.01)),
        ("defender_off", 1, 0.0),
    ]
    assert october.findings_total == pytest.approx(expected.findings_total)
    names = dict(
        zip(
            october.findings.column("finding").to_pylist(),
            october.findings.column("machine_name").to_pylist(),
            strict=True,
        )
    )
    assert names["no_mde_sensor"] == "arc-onprem-01"  # joined from `machines`


def test_prices_in_force_during_the_month_only(october):
    # P1 0.0065 ended on 2026-10-01 (exclusive), the 3.00 seat starts on 2026-11-01, and the
    # EUR list price is not the report's currency.
    assert [
        (row["option"], row["rate"], row["effective_from"]) for row in october.prices.to_pylist()
    ] == [
        ("defender_servers_p1", 0.00672, date(2026, 10, 1)),
        ("defender_servers_p2", 0.02, date(2024, 1, 1)),
        ("mde_for_servers", 5.0, date(2024, 1, 1)),
    ]
    assert october.seat_options == ["mde_for_servers"]


def test_a_month_without_data_names_the_month_the_warehouse_and_the_months_present(
    warehouse, tmp_path
):
    with pytest.raises(ReportDataError) as raised:
        render_report(warehouse, date(2026, 12, 1), tmp_path)
    message = str(raised.value)
    assert "2026-12" in message
    assert str(warehouse) in message
    assert "months present: 2026-09, 2026-10" in message
    assert "--start 2026-12-01 --end 2027-01-01" in message
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_missing_warehouse_says_to_build_one(tmp_path):
    with pytest.raises(WarehouseMissingError, match="mdecost build"):
        render_report(tmp_path / "absent.duckdb", date(2026, 10, 1), tmp_path)


def test_mixed_currencies_are_refused(warehouse, tmp_path):
    copy = tmp_path / "mixed.duckdb"
    shutil.copy(warehouse, copy)
    with duckdb.connect(str(copy)) as con:
        con.execute(
            "UPDATE defender_charges_daily SET currency = 'EUR' WHERE attribution = 'unattributed'"
        )
    with pytest.raises(ReportDataError, match="currencies EUR, USD"):
        render_report(copy, date(2026, 10, 1), tmp_path / "reports")


def test_a_warehouse_without_a_view_says_to_rebuild(warehouse, tmp_path):
    copy = tmp_path / "partial.duckdb"
    shutil.copy(warehouse, copy)
    with duckdb.connect(str(copy)) as con:
        con.execute("DROP TABLE prices")
    with pytest.raises(ReportDataError, match=r"prices.*mdecost build"):
        render_report(copy, date(2026, 10, 1), tmp_path / "reports")


def test_the_fleet_by_provider_and_the_charges_on_no_machine_by_reason(warehouse, tmp_path):
    # The October machines, arc-onprem-01 on premises and the others in Azure:
    # Azure: app, batch, old, nodefender, scale-1_0 = 5 machines, 744 + 100 + 3 + 744 + 250.5 =
    # 1841.5 h, billed 14.88 + 2.00 + 0.10 + 0 + 5.00 = 21.98, hourly 14.88 + 2.00 + 0.06 + 5.01
    # = 21.95; on premises: arc-onprem-01, 372 h, 2.49984 billed and hourly. The 1.50 on no
    # machine is a connector's.
    copy = tmp_path / "providers.duckdb"
    shutil.copy(warehouse, copy)
    with duckdb.connect(str(copy)) as con:
        con.execute(
            "UPDATE machines SET provider = CASE machine_kind WHEN 'arc' THEN 'on_premises' "
            "ELSE 'azure' END"
        )
        con.execute(
            "UPDATE defender_charges_daily SET attribution_detail = 'connector' "
            "WHERE attribution = 'unattributed'"
        )
    with duckdb.connect(str(copy), read_only=True) as con:
        data = load_report_data(con, date(2026, 10, 1), str(copy))
    rows = [
        (p.provider, p.machines, p.arc_machines, p.billable_hours, p.billed_cost, p.hourly_cost)
        for p in data.providers
    ]
    assert rows == [
        ("azure", 5, 0, pytest.approx(1841.5), pytest.approx(21.98), pytest.approx(21.95)),
        ("on_premises", 1, 1, pytest.approx(372.0), pytest.approx(2.49984), pytest.approx(2.49984)),
    ]
    assert data.unattributed_by_reason == {"connector": pytest.approx(1.50)}
    html = render_report(copy, date(2026, 10, 1), tmp_path / "reports").html.read_text()
    assert "Where the servers run" in html
    assert "On premises (Azure Arc)" in html
    assert "on multicloud connectors $1.50" in html
