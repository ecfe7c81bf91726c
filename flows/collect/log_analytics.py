"""Power events from a Log Analytics workspace: the `AzureActivity` table a diagnostic setting
feeds, read month by month through the Logs query API (`azure-monitor-query`).

Why: the Activity Log keeps 90 days, so a first run could only rebuild the last two or three
months. Workspaces fed by a diagnostic setting keep the same events for a year or more (the CIS
benchmark and landing-zone guidance ask for it), so a first run can reach back that far.

What is asked (one query per workspace and span, `query`): the rows of the power operations
mdecost reads (`billing.power_operation_names`, compared without case with `in~`: a diagnostic
setting writes `OperationNameValue` in upper case), of the run's subscriptions, in `[since,
until)`, projected to the columns `activity_log.power_events_frame` needs. Statuses arrive as a
diagnostic setting spells them (Start / Accept / Success / Failure) or as the legacy connector
did (Started / ...); `power_events_frame` reads both (`billing.event_status_expr`).
`TimeGenerated` of an Activity Log record is the event's `eventTimestamp`, so the rows line up
with the Activity Log API's across the 90-day seam.

Limits (Learn: azure-monitor/service-limits, "Log Analytics query API"): an answer holds at most
500,000 rows and about 100 MB; a larger result comes back as 200 with the rows that fitted and
an error `PartialError` (the SDK's `LogsQueryPartialResult`). A partial answer is never kept:
its span is cut in two and each half asked again, down to `MIN_SPAN`. Rate limits answer 429:
azure-core retries those that carry `Retry-After`; `fetch_rows` retries the rest, bounded by
`[collect] max_retries` and `max_retry_wait_seconds`, counted in the chunk's `ThrottleStats`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import polars as pl
from azure.core.exceptions import HttpResponseError
from azure.monitor.query import LogsQueryClient, LogsQueryStatus

from flows.collect import activity_log
from flows.collect.throttling import (
    THROTTLED,
    RetriesExhausted,
    RetryLimits,
    ThrottleStats,
    wait_before_retry,
)
from transforms.billing import ACTIVITY_TABLE, power_operation_names

SOURCE: Final = "log_analytics"
# The narrowest span a partial answer is cut to; a minute of one estate's power operations that
# still overflows an answer is not an estate mdecost can read this way.
MIN_SPAN: Final = timedelta(minutes=1)
# The columns asked for, in the order `_wire_event` reads them.
COLUMNS: Final = (
    "TimeGenerated",
    "EventDataId",
    "CorrelationId",
    "OperationNameValue",
    "ActivityStatusValue",
    "_ResourceId",
    "SubscriptionId",
)


class PartialAnswer(RuntimeError):
    """A span as narrow as `MIN_SPAN` still came back partial: it cannot be read whole."""


@dataclass
class QueryStats(ThrottleStats):
    """What one chunk's queries met: ThrottleStats plus the queries sent and the splits made."""

    queries: int = 0
    splits: int = 0


def _kql_instant(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("datetime(%Y-%m-%dT%H:%M:%S.%fZ)")


def _kql_strings(values: Iterable[str]) -> str:
    return ", ".join(f'"{value}"' for value in values)


def query(subscription_ids: Sequence[str], since: datetime, until: datetime) -> str:
    """The KQL for the power events of `subscription_ids` in `[since, until)`.

    The time bounds are in the query as well as in the request's timespan: the timespan's end
    is inclusive, the query's is not, so an event exactly at a split point is read once.
    """
    return "\n".join(
        (
            ACTIVITY_TABLE,
            f"| where TimeGenerated >= {_kql_instant(since)}",
            f"| where TimeGenerated < {_kql_instant(until)}",
            f"| where OperationNameValue in~ ({_kql_strings(power_operation_names())})",
            f"| where SubscriptionId in~ ({_kql_strings(subscription_ids)})",
            f"| project {', '.join(COLUMNS)}",
        )
    )


def earliest_query() -> str:
    """The KQL for the time of the workspace's earliest Activity Log record (any operation):
    how far back the workspace's retention reaches, whatever the machines did."""
    return f"{ACTIVITY_TABLE}\n| summarize Earliest = min(TimeGenerated)"


def _ask(
    client: LogsQueryClient,
    workspace_id: str,
    text: str,
    span: tuple[datetime, datetime],
    *,
    limits: RetryLimits,
    stats: QueryStats,
    what: str,
    log: logging.Logger | logging.LoggerAdapter,
    sleep: Callable[[float], None],
) -> Any:
    """One query, retried while the service answers 429 (see the module docstring)."""
    attempt = 0
    while True:
        stats.queries += 1
        try:
            return client.query_workspace(workspace_id, text, timespan=span)
        except HttpResponseError as error:
            if error.status_code != THROTTLED:
                raise
            stats.throttled += 1
            if attempt >= limits.max_retries:
                raise RetriesExhausted(
                    f"{what}: still 429 throttled after {limits.max_retries} retries; run again "
                    "later, or raise [collect] max_retries"
                ) from None
            wait_before_retry(
                getattr(error.response, "headers", None) or {},
                attempt,
                limits=limits,
                stats=stats,
                what=f"{what}: 429 throttled",
                log=log,
                sleep=sleep,
            )
            attempt += 1


def fetch_rows(
    client: LogsQueryClient,
    workspace_id: str,
    subscription_ids: Sequence[str],
    since: datetime,
    until: datetime,
    *,
    limits: RetryLimits,
    stats: QueryStats,
    log: logging.Logger | logging.LoggerAdapter,
    origin: str,
    sleep: Callable[[float], None] = time.sleep,
) -> list[dict[str, Any]]:
    """Every `COLUMNS` row of the power events in `[since, until)`, each a dict by column name.

    Spans whose answer is partial are halved and asked again (oldest first), so the rows come
    back complete or not at all: `PartialAnswer` names the span that cannot be read whole.
    """
    rows: list[dict[str, Any]] = []
    spans = [(since, until)]
    while spans:
        lo, hi = spans.pop(0)
        what = (
            f"{origin}: workspace {workspace_id} [{lo:%Y-%m-%dT%H:%M:%SZ}, {hi:%Y-%m-%dT%H:%M:%SZ})"
        )
        answer = _ask(
            client,
            workspace_id,
            query(subscription_ids, lo, hi),
            (lo, hi),
            limits=limits,
            stats=stats,
            what=what,
            log=log,
            sleep=sleep,
        )
        if answer.status == LogsQueryStatus.PARTIAL:
            if hi - lo <= MIN_SPAN:
                raise PartialAnswer(
                    f"{what}: the answer is partial even for {MIN_SPAN} "
                    f"({answer.partial_error.code}: {answer.partial_error.message}); "
                    "collect fewer subscriptions per run (--scope), or read this history from "
                    "the diagnostic setting's storage account ([[history.storage]])"
                )
            middle = lo + (hi - lo) / 2
            middle -= timedelta(microseconds=middle.microsecond)
            stats.splits += 1
            log.info("%s: partial answer, asking each half", what)
            spans[0:0] = [(lo, middle), (middle, hi)]
            continue
        for table in answer.tables:
            rows.extend(dict(zip(table.columns, row, strict=True)) for row in table.rows)
    return rows


def earliest_record(
    client: LogsQueryClient,
    workspace_id: str,
    since: datetime,
    until: datetime,
    *,
    limits: RetryLimits,
    log: logging.Logger | logging.LoggerAdapter,
    sleep: Callable[[float], None] = time.sleep,
) -> datetime | None:
    """When the workspace's earliest `AzureActivity` record in `[since, until)` was generated,
    or None when it holds none there."""
    answer = _ask(
        client,
        workspace_id,
        earliest_query(),
        (since, until),
        limits=limits,
        stats=QueryStats(),
        what=f"workspace {workspace_id}: earliest AzureActivity record",
        log=log,
        sleep=sleep,
    )
    tables = answer.tables if answer.status == LogsQueryStatus.SUCCESS else answer.partial_data
    for table in tables:
        for row in table.rows:
            value = row["Earliest"]
            if isinstance(value, datetime):
                return value.astimezone(UTC)
    return None


def _timestamp(value: Any) -> Any:
    """The SDK turns datetime columns into datetimes (a value it cannot parse stays text)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return value


def power_events_frames(
    rows: Iterable[dict[str, Any]], *, since: datetime, until: datetime
) -> dict[str, pl.DataFrame]:
    """`COLUMNS` rows -> POWER_EVENTS rows without provenance, per subscription id (lower-cased),
    shaped by the same rules as the Activity Log API's (`activity_log.power_events_frame`)."""
    by_subscription: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        subscription_id = str(row.get("SubscriptionId") or "").lower()
        by_subscription.setdefault(subscription_id, []).append(
            {
                "eventDataId": row.get("EventDataId"),
                "correlationId": row.get("CorrelationId"),
                "eventTimestamp": _timestamp(row.get("TimeGenerated")),
                "resourceId": row.get("_ResourceId"),
                "operationName": row.get("OperationNameValue"),
                "status": row.get("ActivityStatusValue"),
            }
        )
    return {
        subscription_id: activity_log.power_events_frame(
            events, subscription_id=subscription_id, since=since, until=until
        )
        for subscription_id, events in by_subscription.items()
        if subscription_id
    }
