"""Power events from the Activity Log: compute power operations, every status, month by month.

Uptime is rebuilt backwards from the present (DESIGN "Billing semantics"), so a run collects the
events of its window AND everything after it up to `as_of`. The Activity Log keeps 90 days
(`billing.ACTIVITY_LOG_RETENTION_DAYS`): a window starting earlier is refused, because what is
gone cannot be collected and a silently short history would bill machines wrongly.

Month partitions and what a run replaces (decided here, relied on by transforms):
- A run re-collects WHOLE months: for each month from the window's first month to `as_of`'s, it
  reads `[max(month start, retention floor), min(month end, as_of))` - the "collected span".
- The month's partition is rebuilt as: the fresh events of the collected span, plus the events
  already in the lake OUTSIDE that span (older than the retention floor, or later than `as_of` when
  a run replays an earlier instant). So history that has aged out of Azure is never lost, events
  of the span are replaced rather than appended (no duplicates), and the whole partition is still
  written atomically by the lake writer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any, Final

import polars as pl
import pyarrow as pa

from flows.collect.paging import follow_pages
from flows.collect.scopes import Month
from flows.collect.tables import arrow_table
from transforms.billing import (
    ACTIVITY_LOG_RETENTION_DAYS,
    EVENT_RESOURCE_PROVIDERS,
    event_status_expr,
    power_operation,
    power_operation_names,
)
from transforms.event_sources import one_row_per_event
from transforms.schemas import POWER_EVENTS

SOURCE: Final = "activity_log"
# Only what the POWER_EVENTS schema needs; $select keeps pages small.
EVENT_SELECT: Final = ",".join(
    (
        "eventDataId",
        "correlationId",
        "eventTimestamp",
        "resourceId",
        "operationName",
        "status",
        "subscriptionId",
    )
)
# Azure's operation names (lower-cased) -> mdecost's verb, from the one list billing.py owns.
_VERB_BY_OPERATION: Final = {
    name.lower(): power_operation(name) for name in power_operation_names()
}
_TIMESTAMP_FORMAT: Final = "%Y-%m-%dT%H:%M:%S%.f%#z"
_SORT_KEYS: Final = ["event_at", "resource_id", "event_data_id"]


class WindowError(ValueError):
    """The collection window cannot be collected; the message says why and what to use."""


def retention_floor(as_of: datetime) -> datetime:
    """The oldest instant the Activity Log still holds at `as_of`."""
    return as_of - timedelta(days=ACTIVITY_LOG_RETENTION_DAYS)


def check_window(start: date, end: date, as_of: datetime, *, history: bool = False) -> None:
    """Refuse an empty window, one starting after `as_of`, or one older than the retention.

    With `history` (a `[history]` source is configured) an older window is left to the flow,
    which asks the sources which months they hold (`flows.collect.history`).
    """
    if end <= start:
        raise WindowError(f"--end {end} must be after --start {start} (--end is exclusive)")
    window_start = datetime(start.year, start.month, start.day, tzinfo=UTC)
    if window_start >= as_of:
        raise WindowError(
            f"--start {start} is not before the collection instant {as_of:%Y-%m-%dT%H:%MZ}"
        )
    floor = retention_floor(as_of)
    if window_start < floor and not history:
        earliest = (floor + timedelta(days=1)).date() if floor.time() else floor.date()
        raise WindowError(
            f"--start {start} is older than the Activity Log's {ACTIVITY_LOG_RETENTION_DAYS}-day "
            f"retention at {as_of:%Y-%m-%dT%H:%MZ}: power events before {floor:%Y-%m-%dT%H:%MZ} "
            f"can no longer be collected. Use --start {earliest} or later; power events already "
            "in the lake from earlier runs are kept. Older ones can be read from a Log Analytics "
            "workspace or storage account a diagnostic setting fills: name it in [history]."
        )


def power_event_months(start: date, as_of: datetime) -> list[Month]:
    """The months whose power events a run re-collects: the window's first month up to the one
    `as_of` falls in (a month starting exactly at `as_of` has nothing to collect yet)."""
    months = [Month.of(start)]
    while months[-1].end < as_of:
        months.append(months[-1].next())
    return months


def collected_span(month: Month, as_of: datetime) -> tuple[datetime, datetime]:
    """`[since, until)`: the part of `month` the Activity Log still holds at `as_of`."""
    return max(month.start, retention_floor(as_of)), min(month.end, as_of)


def _odata_instant(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_filter(since: datetime, until: datetime, provider: str) -> str:
    """The `$filter` for `provider`'s events in `[since, until]` (Azure's `le` is inclusive: the
    upper bound is re-applied exclusively when the rows are read)."""
    return (
        f"eventTimestamp ge '{_odata_instant(since)}' and "
        f"eventTimestamp le '{_odata_instant(until)}' and "
        f"resourceProvider eq '{provider}'"
    )


def fetch_events(
    monitor: Any, since: datetime, until: datetime, *, origin: str
) -> Iterator[dict[str, Any]]:
    """The Activity Log events (wire format) of compute and Arc machines in `[since, until]`,
    read through `monitor` (a MonitorManagementClient) page by page, only the `EVENT_SELECT`
    fields: one listing per provider of `billing.EVENT_RESOURCE_PROVIDERS` (a `$filter` names
    one resource provider), Compute first.

    A listing whose nextLinks make no progress raises `paging.EndlessPaging` naming `origin`
    (scope and month) before the month's partition is touched.
    """
    for provider in EVENT_RESOURCE_PROVIDERS:
        list_events = partial(
            monitor.activity_logs.list,
            filter=event_filter(since, until, provider),
            select=EVENT_SELECT,
        )
        what = (
            "Activity Log list"
            if provider == EVENT_RESOURCE_PROVIDERS[0]
            else (f"Activity Log list ({provider})")
        )
        for event in follow_pages(list_events, f"{origin}: {what}"):
            yield event.serialize(keep_readonly=True)


def _value(localizable: Any) -> str | None:
    if isinstance(localizable, Mapping):
        return localizable.get("value")
    return localizable


def power_events_frame(
    events: Iterable[Mapping[str, Any]],
    *,
    subscription_id: str,
    since: datetime,
    until: datetime,
) -> pl.DataFrame:
    """Activity Log events (wire format) -> POWER_EVENTS rows without provenance.

    Keeps power operations of VMs, scale-set VMs and Arc machines only, every status, events in
    `[since, until)`; resource ids lower-cased; statuses in the Activity Log's spelling whatever
    spelling they came in (`billing.event_status_expr`: the history sources spell them as a
    diagnostic setting does); sorted by time, resource, event id. An event lacking an id, time,
    resource or a known status cannot be used and is dropped (never guessed).
    """
    columns: dict[str, list[Any]] = {
        "event_data_id": [],
        "correlation_id": [],
        "event_at": [],
        "resource_id": [],
        "operation_name": [],
        "status": [],
    }
    # The SDK yields events one by one: this loop only unpacks them into columns.
    for event in events:
        columns["event_data_id"].append(event.get("eventDataId"))
        columns["correlation_id"].append(event.get("correlationId"))
        columns["event_at"].append(event.get("eventTimestamp"))
        columns["resource_id"].append(event.get("resourceId"))
        columns["operation_name"].append(_value(event.get("operationName")))
        columns["status"].append(_value(event.get("status")))
    raw = pl.DataFrame(columns, schema={name: pl.String for name in columns})
    # Vectorised `billing.normalise_resource_id` (lower-cased, no trailing slash).
    resource_id = (
        pl.col("resource_id").str.strip_chars().str.strip_chars_end("/").str.to_lowercase()
    )
    return (
        raw.with_columns(
            operation=pl.col("operation_name")
            .str.to_lowercase()
            .replace_strict(_VERB_BY_OPERATION, default=None, return_dtype=pl.String),
            event_at=pl.col("event_at").str.to_datetime(
                _TIMESTAMP_FORMAT, time_unit="us", time_zone="UTC"
            ),
            resource_id=resource_id,
            status=event_status_expr(pl.col("status")),
        )
        .filter(
            pl.col("operation").is_not_null(),
            pl.all_horizontal(
                pl.col(name).is_not_null()
                for name in ("event_data_id", "correlation_id", "event_at", "resource_id", "status")
            ),
            pl.col("event_at") >= since,
            pl.col("event_at") < until,
        )
        .with_columns(
            subscription_id=pl.lit(subscription_id.lower()),
            resource_group=pl.col("resource_id").str.extract(r"/resourcegroups/([^/]+)/", 1),
        )
        .unique(subset="event_data_id", keep="first", maintain_order=True)
        .sort(_SORT_KEYS)
    )


def with_provenance(
    frame: pl.DataFrame, *, ingested_at: datetime, scope: str, source: str = SOURCE
) -> pl.DataFrame:
    return frame.with_columns(
        ingested_at=pl.lit(ingested_at, dtype=pl.Datetime("us", "UTC")),
        source=pl.lit(source),
        scope=pl.lit(scope),
    )


def merged_month(
    existing: pl.DataFrame, fresh: pl.DataFrame, since: datetime, until: datetime
) -> pa.Table:
    """The month partition after a run: `existing` outside `[since, until)` plus `fresh`.

    Both frames carry every POWER_EVENTS column. An event id present in both keeps the fresh row;
    an event a history source (Log Analytics, archive storage) also holds keeps the Activity
    Log's row (`event_sources.one_row_per_event`).
    """
    kept = existing.filter((pl.col("event_at") < since) | (pl.col("event_at") >= until))
    kept = kept.filter(~pl.col("event_data_id").is_in(fresh["event_data_id"].implode()))
    columns = POWER_EVENTS.names
    merged = one_row_per_event(
        pl.concat([kept.select(columns), fresh.select(columns)], how="vertical")
    )
    return arrow_table(merged.sort(_SORT_KEYS), POWER_EVENTS)
