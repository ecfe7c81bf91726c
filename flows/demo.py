"""`mdecost demo`: the whole product, end to end, on a simulated estate, in about a minute.

The simulated Azure estate is served over HTTPS on loopback and mdecost talks to it through the
same SDK clients, collectors, build and report as in production. It shows a new user's first
run: the Activity Log keeps only 90 days, but the simulated estate also feeds a Log Analytics
workspace (`AzureActivity`, as a diagnostic setting does), named in `[history]`, so one
collection at the present reaches back `HISTORY_FULL_MONTHS` full months: the older months from
the workspace, the last 90 days from the Activity Log. A refresh then re-collects the report
month (restatement), builds the warehouse and renders the report for the last full month.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from rich.table import Table

from flows import warehouse
from flows.collect import collect
from flows.pipeline import RefreshSummary, first_of_month, refresh
from flows.report.data import ReportData
from flows.report.summary import summary_lines
from flows.simulator.server import simulated_azure

DEFAULT_STATE_DIR = Path("data/demo")
HISTORY_FULL_MONTHS = 12


def history_start(now: datetime) -> date:
    """The first day of the first of the `HISTORY_FULL_MONTHS` full months before `now`."""
    month = first_of_month(now.date())
    for _ in range(HISTORY_FULL_MONTHS):
        month = first_of_month(month - timedelta(days=1))
    return month


@dataclass(frozen=True)
class DemoResult:
    config_path: Path
    refresh: RefreshSummary
    report_month: date
    report_data: ReportData | None
    # The months the warehouse holds (fleet_comparison_monthly), oldest first.
    months: list[date]


def run_demo(
    state_dir: Path = DEFAULT_STATE_DIR,
    machines: int = 48,
    seed: int = 7,
    now: datetime | None = None,
    progress=print,
) -> DemoResult:
    """Simulate, collect a year of history in one first run, refresh, build and report.

    `state_dir` is emptied first: the demo's lake, warehouse and reports describe this run's
    simulated estate only, and never mix with a real tenant's default `data/lake`.
    """
    now = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    if state_dir.exists():
        shutil.rmtree(state_dir)
    start = history_start(now)
    with simulated_azure(
        seed=seed,
        machines=machines,
        months=HISTORY_FULL_MONTHS + 1,
        now=now,
        state_dir=state_dir,
        history=True,
    ) as sim:
        progress(f"simulated Azure estate: {machines} machines, serving on {sim.arm_endpoint}")
        progress(
            f"first run: collecting {start:%b %Y} .. {now:%Y-%m-%d}; power events older than "
            "90 days from the Log Analytics workspace, the rest from the Activity Log"
        )
        collect(
            start=start, end=now.date() + timedelta(days=1), as_of=now, config_file=sim.config_path
        )
        report_month = first_of_month(first_of_month(now.date()) - timedelta(days=1))
        progress(f"refreshing {report_month:%B %Y} (restatement) to {now:%Y-%m-%d %H:%M} UTC")
        summary = refresh(
            start=report_month,
            end=now.date() + timedelta(days=1),
            as_of=now,
            config_file=sim.config_path,
            report_month=report_month,
        )
    report_data = summary.report.data if summary.report else None
    months = (
        warehouse.query(
            summary.build.warehouse,
            "SELECT DISTINCT month FROM fleet_comparison_monthly ORDER BY month",
        )
        .column("month")
        .to_pylist()
    )
    return DemoResult(sim.config_path, summary, report_month, report_data, months)


def summary_table(result: DemoResult) -> Table:
    """What the demo found, for the terminal: the month's headline, findings, where to look."""
    table = Table(title=f"Defender for Servers, {result.report_month:%B %Y} (simulated estate)")
    table.add_column("measure")
    table.add_column("value", justify="right", overflow="fold")
    data = result.report_data
    if data is not None:
        for measure, value in summary_lines(data):
            table.add_row(measure, value)
    full = [month for month in result.months if month <= result.report_month]
    if full:
        table.add_row(
            "power history in the warehouse",
            f"{len(full)} full months ({full[0]:%b %Y} .. {full[-1]:%b %Y}) and the month to date",
        )
    build = result.refresh.build
    table.add_row("warehouse", str(build.warehouse))
    if result.refresh.report is not None:
        table.add_row("report", str(result.refresh.report.html or result.refresh.report.directory))
    table.caption = f'query it: mdecost sql --config {result.config_path} "SELECT * FROM findings"'
    return table
