"""The flows mdecost's users run: refresh a window, refresh daily, report monthly.

Each flow only orchestrates: `collect` (Azure -> lake) and `build` (lake -> warehouse) are
flows of their own, run here as subflows; the report renderer turns the warehouse into the
finance report. Every run leaves Prefect artifacts: a markdown summary of the month and a table
of the machines where per-hour billing saves the most.

Schedules (see `deployments`): `daily-refresh` at 03:00 UTC re-collects the trailing restatement
window (Cost Management restates days after the fact) and the power events since the last
successful refresh; `monthly-finance-report` on the 5th at 06:00 UTC, after the month's cost
data has settled, reports the previous full month and mails it to `[report.email]` if set.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError
from prefect.schedules import Cron

from flows import warehouse
from flows.build import BuildSummary, build, built_fingerprint, lake_fingerprint
from flows.collect import CollectIncomplete, CollectSummary, collect
from flows.config import Settings, load_settings
from flows.lake import fsync_directory
from flows.report import ReportPaths, render_report
from flows.report.data import ReportData, load_report_data
from flows.report.summary import summary_lines
from transforms.billing import ACTIVITY_LOG_RETENTION_DAYS

DAILY_REFRESH_CRON = "0 3 * * *"
MONTHLY_REPORT_CRON = "0 6 5 * *"
LAST_REFRESH_FILE = Path("state") / "last_refresh.json"


def _logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("mdecost.pipeline")


def first_of_month(day: date) -> date:
    return day.replace(day=1)


def previous_full_month(now: datetime) -> date:
    """The first day of the last month that has ended by `now`."""
    return first_of_month(first_of_month(now.date()) - timedelta(days=1))


def daily_window(
    now: datetime, last_refresh: datetime | None, restatement_days: int
) -> tuple[date, date]:
    """[start, end) of a daily refresh: the restatement window, reaching back to the last
    successful refresh if that is earlier, never past the Activity Log's retention."""
    today = now.date()
    start = today - timedelta(days=restatement_days)
    if last_refresh is not None:
        start = min(start, last_refresh.date())
    oldest_readable = (now - timedelta(days=ACTIVITY_LOG_RETENTION_DAYS - 1)).date()
    return max(start, oldest_readable), today + timedelta(days=1)


def read_last_refresh(settings: Settings) -> datetime | None:
    """The instant of the last successful refresh, or None: none yet, or a record that cannot
    be read (empty after a crash of an older mdecost, edited by hand), which is logged and
    ignored, so the refresh falls back to the restatement window rather than failing daily."""
    path = settings.lake.folder / LAST_REFRESH_FILE
    if not path.exists():
        return None
    try:
        as_of = datetime.fromisoformat(json.loads(path.read_text())["as_of"])
    except (ValueError, KeyError, TypeError, OSError) as error:
        _logger().warning(
            "%s cannot be read (%s); refreshing the restatement window only", path, error
        )
        return None
    return as_of


def write_last_refresh(settings: Settings, as_of: datetime) -> None:
    """Record a successful refresh: written beside, synced, then renamed and the folder synced,
    so a crash leaves the old record or the new one, never an empty file."""
    path = settings.lake.folder / LAST_REFRESH_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with staging.open("w") as handle:
            handle.write(json.dumps({"as_of": as_of.isoformat()}))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    fsync_directory(path.parent)


@dataclass(frozen=True)
class RefreshSummary:
    collect: CollectSummary
    build: BuildSummary
    report: ReportPaths | None

    def lines(self) -> list[str]:
        lines = [*self.collect.lines(), *self.build.lines()]
        if self.report is not None:
            lines.append(f"report {self.report.directory}")
        return lines


@task(cache_policy=NO_CACHE)
def publish_artifacts(warehouse_path: Path, month: date) -> ReportData | None:
    """A markdown summary of `month` and a table of the machines per-hour billing saves most on."""
    try:
        with warehouse.connect_read_only(warehouse_path) as con:
            data = load_report_data(con, month, str(warehouse_path))
    except LookupError as error:
        _logger().warning(f"no artifacts for {month:%Y-%m}: {error}")
        return None
    money = data.headline.currency
    create_markdown_artifact(
        key=f"mdecost-summary-{month:%Y-%m}",
        description=f"Defender for Servers, per hour vs per seat, {month:%B %Y}",
        markdown="\n".join(
            [
                f"# Defender for Servers, {month:%B %Y}",
                "",
                "| measure | value |",
                "| --- | --- |",
                *(f"| {measure} | {value} |" for measure, value in summary_lines(data)),
            ]
        ),
    )
    create_table_artifact(
        key=f"mdecost-top-savings-{month:%Y-%m}",
        description="Machines where the MDE part costs least by the hour against one seat",
        table=[
            {
                "machine": saving.machine_name,
                "subscription": saving.subscription_id,
                "plan": saving.plan,
                "utilization": round(saving.utilization, 4),
                f"per_hour_savings_{money}": round(saving.per_hour_savings, 2),
            }
            for saving in data.top_savings
        ],
    )
    return data


@task(cache_policy=NO_CACHE)
def render_finance_report(settings: Settings, month: date) -> ReportPaths:
    """report.html, comparison.csv and comparison.xlsx for `month`."""
    paths = render_report(
        settings.warehouse.path, month, settings.report.path, pricing=settings.pricing
    )
    _logger().info(f"report for {month:%Y-%m} written to {paths.directory}")
    return paths


@flow(name="refresh")
def refresh(
    start: date,
    end: date,
    scopes: list[str] | None = None,
    as_of: datetime | None = None,
    config_file: Path | None = None,
    force: bool = False,
    report_month: date | None = None,
) -> RefreshSummary:
    """Collect [start, end) from Azure into the lake, rebuild the warehouse, optionally report.

    A scope that could not be read does not stop the build of what was read; the run then
    fails at the end, naming the scopes, so a schedule shows it.
    """
    settings = load_settings(config_file)
    instant = as_of or datetime.now(UTC)
    incomplete: CollectIncomplete | None = None
    try:
        collected = collect(
            start=start, end=end, scopes=scopes, as_of=instant, config_file=config_file, force=force
        )
    except CollectIncomplete as error:
        incomplete, collected = error, error.summary
    built = build(config_file=config_file)
    report = render_finance_report(settings, report_month) if report_month else None
    publish_artifacts(settings.warehouse.path, report_month or first_of_month(instant.date()))
    if incomplete is not None:
        raise incomplete
    write_last_refresh(settings, instant)
    return RefreshSummary(collected, built, report)


@flow(name="daily-refresh")
def daily_refresh(config_file: Path | None = None) -> RefreshSummary:
    """The trailing restatement window of costs and the power events since the last successful
    refresh, then a build."""
    settings = load_settings(config_file)
    now = datetime.now(UTC)
    start, end = daily_window(now, read_last_refresh(settings), settings.collect.restatement_days)
    return refresh(start=start, end=end, as_of=now, config_file=config_file)


@flow(name="monthly-finance-report")
def monthly_finance_report(
    month: date | None = None, config_file: Path | None = None
) -> ReportPaths:
    """Rebuild if the lake changed since the last build, then render the report for `month`
    (default: the previous full month)."""
    settings = load_settings(config_file)
    month = first_of_month(month) if month else previous_full_month(datetime.now(UTC))
    if built_fingerprint(settings.warehouse.path) != lake_fingerprint(settings.lake.location()):
        build(config_file=config_file)
    paths = render_finance_report(settings, month)
    publish_artifacts(settings.warehouse.path, month)
    if settings.report.email is not None:
        mail_report(settings, paths)
    return paths


@task(cache_policy=NO_CACHE)
def mail_report(settings: Settings, paths: ReportPaths) -> list[str]:
    """Send the report to `[report.email]` recipients (HTML headline, files attached)."""
    from flows.report.mail import send_report

    assert settings.report.email is not None
    recipients = send_report(paths, settings.report.email)
    _logger().info(f"report for {paths.month:%Y-%m} mailed to {len(recipients)} recipient(s)")
    return recipients


def deployments(config_file: Path | None = None) -> list:
    """The two scheduled deployments, served together by `mdecost serve`."""
    parameters = {"config_file": str(config_file)} if config_file else {}
    return [
        daily_refresh.to_deployment(
            name="daily-refresh",
            schedules=[Cron(DAILY_REFRESH_CRON, timezone="UTC")],
            parameters=parameters,
            description="Re-collect the restatement window and new power events, rebuild.",
            tags=["mdecost"],
        ),
        monthly_finance_report.to_deployment(
            name="monthly-finance-report",
            schedules=[Cron(MONTHLY_REPORT_CRON, timezone="UTC")],
            parameters=parameters,
            description="The previous month's finance report, after cost data settles.",
            tags=["mdecost"],
        ),
    ]
