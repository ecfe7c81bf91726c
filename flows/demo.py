"""`mdecost demo`: the whole product, end to end, on a simulated estate, in about a minute.

The simulated Azure estate is served over HTTPS on loopback and mdecost talks to it through the
same SDK clients, collectors, build and report as in production. History is built up the way a
real deployment builds it: the Activity Log keeps only 90 days, so the lake accumulates power
events run after run. The demo replays those runs: with the simulator's clock set to the start
of each of the last three full months' following month, it collects that month; then, at the
present, a refresh re-collects the restatement window and the month to date, builds the
warehouse and renders the report for the last full month.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from rich.table import Table

from flows.collect import collect
from flows.pipeline import RefreshSummary, first_of_month, refresh
from flows.report.data import ReportData
from flows.report.summary import summary_lines
from flows.simulator import simulated_azure

DEFAULT_STATE_DIR = Path("data/demo")
REPLAYED_FULL_MONTHS = 3
# A replayed collection stands where the daily refresh would: early on the next month's 1st.
REPLAY_HOUR = timedelta(hours=3)


def next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def _at(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), UTC)


def replay_months(now: datetime) -> list[date]:
    """The first days of the last `REPLAYED_FULL_MONTHS` full months before `now`, oldest first."""
    months = [first_of_month(now.date())]
    for _ in range(REPLAYED_FULL_MONTHS):
        months.insert(0, first_of_month(months[0] - timedelta(days=1)))
    return months[:-1]


@dataclass(frozen=True)
class DemoResult:
    config_path: Path
    refresh: RefreshSummary
    report_month: date
    report_data: ReportData | None


def run_demo(
    state_dir: Path = DEFAULT_STATE_DIR,
    machines: int = 48,
    seed: int = 7,
    now: datetime | None = None,
    progress=print,
) -> DemoResult:
    """Simulate, replay three months of collections, refresh to now, build and report.

    `state_dir` is emptied first: the demo's lake, warehouse and reports describe this run's
    simulated estate only, and never mix with a real tenant's default `data/lake`.
    """
    now = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    if state_dir.exists():
        shutil.rmtree(state_dir)
    months = replay_months(now)
    with simulated_azure(
        seed=seed, machines=machines, months=REPLAYED_FULL_MONTHS + 2, now=now, state_dir=state_dir
    ) as sim:
        progress(f"simulated Azure estate: {machines} machines, serving on {sim.arm_endpoint}")
        for index, month in enumerate(months):
            clock = min(_at(next_month(month)) + REPLAY_HOUR, now)
            sim.set_clock(clock)
            # Like the daily refresh, each run re-collects the previous month too: its last
            # days were restated after the previous run.
            restated = months[max(index - 1, 0)]
            progress(
                f"collecting {restated:%b} .. {month:%b %Y} as the refresh of {clock:%Y-%m-%d}"
            )
            collect(start=restated, end=next_month(month), as_of=clock, config_file=sim.config_path)
        sim.set_clock(now)
        report_month = months[-1]
        progress(f"refreshing {report_month:%B %Y} (restatement) to {now:%Y-%m-%d %H:%M} UTC")
        summary = refresh(
            start=report_month,
            end=now.date() + timedelta(days=1),
            as_of=now,
            config_file=sim.config_path,
            report_month=report_month,
        )
    report_data = summary.report.data if summary.report else None
    return DemoResult(sim.config_path, summary, report_month, report_data)


def summary_table(result: DemoResult) -> Table:
    """What the demo found, for the terminal: the month's headline, findings, where to look."""
    table = Table(title=f"Defender for Servers, {result.report_month:%B %Y} (simulated estate)")
    table.add_column("measure")
    table.add_column("value", justify="right", overflow="fold")
    data = result.report_data
    if data is not None:
        for measure, value in summary_lines(data):
            table.add_row(measure, value)
    build = result.refresh.build
    table.add_row("warehouse", str(build.warehouse))
    if result.refresh.report is not None:
        table.add_row("report", str(result.refresh.report.html or result.refresh.report.directory))
    table.caption = f'query it: mdecost sql --config {result.config_path} "SELECT * FROM findings"'
    return table
