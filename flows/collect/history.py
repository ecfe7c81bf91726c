"""Power history older than the Activity Log's 90 days, from where a diagnostic setting keeps it:
Log Analytics workspaces (`log_analytics`) and archive storage accounts (`archive_storage`).

Which months: every month of the window that starts before the Activity Log's retention floor
(`history_months`), each read whole up to `as_of`. The month the floor falls in is read from
both the history sources and the Activity Log API; the events both hold are one event, the API's
row (`transforms.event_sources`).

Coverage: before anything is collected, each source is asked how far back it reaches (a
workspace's earliest `AzureActivity` record, an archive's earliest month folder); a source
covers every month from that record's month on, the same whole-month reading the lake's own
history window makes (`transforms.marts.history_window`). The run says which source covers
which months, and refuses, naming them, the months nothing covers: uptime is rebuilt backwards
from the present, so a gap would make every earlier month wrong, not just the gap.

A month's partitions (`month=/subscription_id=`) are rebuilt from the fresh rows of each source
(`event_sources.merged_source_month`): a source's earlier rows of the span are replaced, every
other source's rows stay. One task per month reads every source, so no two tasks ever write the
same partition at once; the Activity Log API's task for that month waits for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

import polars as pl

from flows.collect.activity_log import WindowError, retention_floor
from flows.collect.scopes import Month
from transforms.event_sources import merged_source_month


@dataclass(frozen=True)
class Coverage:
    """What one source holds: `first` is the earliest month it has records for (None: none)."""

    source: str
    name: str
    first: Month | None


def history_months(start: date, as_of: datetime) -> list[Month]:
    """The window's months that begin before the Activity Log's retention floor at `as_of`;
    none when the window starts after the floor (the Activity Log holds all of it)."""
    floor = retention_floor(as_of)
    if datetime(start.year, start.month, start.day, tzinfo=UTC) >= floor:
        return []
    months = []
    month = Month.of(start)
    while month.start < floor:
        months.append(month)
        month = month.next()
    return months


def history_span(month: Month, as_of: datetime) -> tuple[datetime, datetime]:
    """`[since, until)` a history source is read for: the whole month, up to `as_of`."""
    return month.start, min(month.end, as_of)


def _span_label(months: Sequence[Month]) -> str:
    if not months:
        return "no month"
    if len(months) == 1:
        return months[0].label
    return f"{months[0].label} .. {months[-1].label}"


def coverage_lines(months: Sequence[Month], coverages: Sequence[Coverage]) -> list[str]:
    """One line per source: which of `months` it covers (for the run's log)."""
    lines = []
    for coverage in coverages:
        covered = [
            month
            for month in months
            if coverage.first is not None and coverage.first.start <= month.start
        ]
        lines.append(f"{coverage.name} covers {_span_label(covered)}")
    return lines


def check_coverage(
    start: date, as_of: datetime, months: Sequence[Month], coverages: Sequence[Coverage]
) -> None:
    """Raise WindowError naming the months of `months` no source covers, and what does."""
    uncovered = [
        month
        for month in months
        if not any(c.first is not None and c.first.start <= month.start for c in coverages)
    ]
    if not uncovered:
        return
    holdings = "; ".join(
        f"{c.name} holds {'from ' + c.first.label if c.first else 'no Activity Log record'}"
        for c in coverages
    )
    floor = retention_floor(as_of)
    later = [
        c.first for c in coverages if c.first is not None and c.first.start > uncovered[-1].start
    ]
    earliest = min(later, key=lambda month: month.start).first_day if later else floor.date()
    raise WindowError(
        f"--start {start}: no power history covers {_span_label(uncovered)} (the Activity Log "
        f"keeps events from {floor:%Y-%m-%dT%H:%MZ}; {holdings}). Use --start {earliest} or "
        "later, or name a source that holds those months in [history]."
    )


def merged_partition(
    existing: pl.DataFrame | None,
    fresh_by_source: dict[str, pl.DataFrame],
    *,
    since: datetime,
    until: datetime,
) -> pl.DataFrame | None:
    """A month partition after the history sources re-read `[since, until)`, or None when
    there is nothing to write (no rows before, none now)."""
    frames = [frame for frame in fresh_by_source.values() if frame.height]
    if existing is None:
        if not frames:
            return None
        existing = frames[0].clear()
    merged = existing
    for source, fresh in fresh_by_source.items():
        merged = merged_source_month(merged, fresh, source=source, since=since, until=until)
    return merged
