"""The scheduled flows: their windows, their deployments, and the demo end to end."""

import json
import re
from datetime import UTC, date, datetime
from pathlib import Path

import openpyxl
import pytest
import yaml

from flows import warehouse
from flows.demo import history_start, run_demo, summary_table
from flows.pipeline import (
    DAILY_REFRESH_CRON,
    MONTHLY_REPORT_CRON,
    daily_window,
    deployments,
    previous_full_month,
)

REPO = Path(__file__).resolve().parents[2]


def test_the_daily_window_covers_the_restatement_window_and_the_last_success():
    now = datetime(2026, 11, 28, 3, tzinfo=UTC)
    # 35 days before Nov 28 is Oct 24; the end is exclusive, so tomorrow.
    assert daily_window(now, None, 35) == (date(2026, 10, 24), date(2026, 11, 29))
    # A refresh that last succeeded on Oct 10 reaches back to it ...
    assert daily_window(now, datetime(2026, 10, 10, 3, tzinfo=UTC), 35)[0] == date(2026, 10, 10)
    # ... but never past the 90-day Activity Log (Nov 28 - 89 days = Aug 31).
    assert daily_window(now, datetime(2026, 6, 1, tzinfo=UTC), 35)[0] == date(2026, 8, 31)


def test_the_monthly_report_defaults_to_the_previous_full_month():
    assert previous_full_month(datetime(2026, 12, 5, 6, tzinfo=UTC)) == date(2026, 11, 1)
    assert previous_full_month(datetime(2027, 1, 1, tzinfo=UTC)) == date(2026, 12, 1)


def test_both_deployments_exist_with_their_schedules_and_parameters():
    served = {deployment.name: deployment for deployment in deployments(Path("/etc/mdecost.toml"))}
    assert set(served) == {"daily-refresh", "monthly-finance-report"}
    daily, monthly = served["daily-refresh"], served["monthly-finance-report"]
    assert [s.schedule.cron for s in daily.schedules] == ["0 3 * * *"] == [DAILY_REFRESH_CRON]
    assert [s.schedule.cron for s in monthly.schedules] == ["0 6 5 * *"] == [MONTHLY_REPORT_CRON]
    assert {s.schedule.timezone for s in [*daily.schedules, *monthly.schedules]} == {"UTC"}
    assert daily.parameters == monthly.parameters == {"config_file": "/etc/mdecost.toml"}

    declared = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
    by_name = {item["name"]: item for item in declared}
    assert by_name["daily-refresh"]["entrypoint"] == "flows/pipeline.py:daily_refresh"
    assert by_name["daily-refresh"]["schedules"] == [{"cron": "0 3 * * *", "timezone": "UTC"}]
    assert by_name["monthly-finance-report"]["schedules"] == [
        {"cron": "0 6 5 * *", "timezone": "UTC"}
    ]


def test_the_demo_collects_twelve_full_months_on_its_first_run():
    # Nov 28 2026: the last full month is October; twelve full months begin Nov 1 2025.
    assert history_start(datetime(2026, 11, 28, 14, tzinfo=UTC)) == date(2025, 11, 1)
    assert history_start(datetime(2027, 1, 1, tzinfo=UTC)) == date(2026, 1, 1)


@pytest.fixture(scope="module")
def demo(prefect_harness, tmp_path_factory):
    return run_demo(
        state_dir=tmp_path_factory.mktemp("demo") / "state",
        machines=12,
        now=datetime(2026, 11, 28, 14, tzinfo=UTC),
        progress=lambda line: None,
    )


def test_the_demo_builds_the_warehouse_and_reports_the_last_full_month(demo):
    assert demo.report_month == date(2026, 10, 1)
    report = demo.refresh.report
    assert report.html.exists() and report.csv.exists() and report.xlsx.exists()
    assert report.directory.name == "2026-10"
    months = (
        warehouse.query(
            demo.refresh.build.warehouse,
            "SELECT DISTINCT month FROM fleet_comparison_monthly ORDER BY month",
        )
        .column("month")
        .to_pylist()
    )
    # Twelve full months (Nov 2025 .. Oct 2026) from one first run, and November to date.
    assert months == [date(2025, 11, 1)] + [date(2025, 12, 1)] + [
        date(2026, month, 1) for month in range(1, 12)
    ]
    assert demo.months == months


def test_the_workbook_totals_match_the_warehouse_to_the_cent(demo):
    """Summed independently: the warehouse in SQL, the workbook cell by cell with openpyxl."""
    totals = warehouse.query(
        demo.refresh.build.warehouse,
        "SELECT sum(billable_hours) AS hours, sum(hourly_cost) AS hourly, "
        "sum(billed_cost) AS billed FROM licensing_comparison_monthly "
        "WHERE month = DATE '2026-10-01'",
    ).to_pylist()[0]
    sheet = openpyxl.load_workbook(demo.refresh.report.xlsx, data_only=True)["machines"]
    rows = list(sheet.iter_rows(values_only=True))
    header = list(rows[0])
    machine_rows = [row for row in rows[1:] if row[header.index("resource_id")]]
    for column, expected in (
        ("billable_hours", totals["hours"]),
        ("hourly_cost", totals["hourly"]),
        ("billed_cost", totals["billed"]),
    ):
        cells = [row[header.index(column)] or 0.0 for row in machine_rows]
        assert round(sum(cells), 2) == round(expected, 2), column


def test_the_demo_report_shows_trends_showback_month_to_date_and_the_planted_anomaly(demo):
    page = demo.refresh.report.html.read_text(encoding="utf-8")
    # Trends: the twelve complete months, Nov 2025 .. Oct 2026.
    trend_months = re.findall(r'<tr data-month="(\d{4}-\d{2})-01">', page)
    assert trend_months == ["2025-11", "2025-12"] + [f"2026-{m:02d}" for m in range(1, 11)]
    # Showback by cost centre (the simulator's config: group_by tag:CostCenter, resource_group).
    assert 'data-showback-key="tag:CostCenter"' in page
    assert 'data-showback-key="resource_group"' in page
    # The month in progress, apart: November 2026 to date (the demo's now is Nov 28 14:00).
    assert '<section id="month-to-date" data-month="2026-11-01">' in page
    assert "run rate of the last 7 days" in page
    # Case 12: Shared Services' workspace billed all October: 31 days x 12 servers x 24 h x
    # 0.02 = 178.56 on top of its machines, with no billable hours: a cost_anomaly.
    anomalies = warehouse.query(
        demo.refresh.build.warehouse,
        "SELECT subscription_id, amount FROM findings WHERE finding = 'cost_anomaly' "
        "AND month = DATE '2026-10-01' AND subscription_id IS NOT NULL",
    ).to_pylist()
    assert len(anomalies) == 1
    assert anomalies[0]["amount"] > 178.56 * 0.9
    assert "<code>cost_anomaly</code>" in page


def test_the_demo_summary_names_the_warehouse_and_the_report(demo):
    table = summary_table(demo)
    rows = dict(zip(table.columns[0]._cells, table.columns[1]._cells, strict=True))
    assert rows["warehouse"] == str(demo.refresh.build.warehouse)
    assert rows["report"] == str(demo.refresh.report.html)
    # The answer per plan, like for like, and the peak only as a lower bound.
    assert rows["month"] == "October 2026 (complete)"
    assert any(key.startswith("Plan 2 kept, MDE part by") for key in rows)
    assert "peak machines at once (lower bound, not a licence count)" in rows
    assert rows["power history in the warehouse"] == (
        "12 full months (Nov 2025 .. Oct 2026) and the month to date"
    )


def test_the_refresh_left_a_summary_and_a_top_savings_table_as_artifacts(demo):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(
                    any_=["mdecost-summary-2026-10", "mdecost-top-savings-2026-10"]
                )
            )
        )
    by_type = {artifact.type: artifact for artifact in artifacts}
    assert set(by_type) == {"markdown", "table"}
    assert "Defender for Servers, October 2026" in by_type["markdown"].data
    table = by_type["table"].data
    rows = json.loads(table) if isinstance(table, str) else table
    assert rows and {"machine", "plan", "per_hour_savings_USD"} <= set(rows[0])
