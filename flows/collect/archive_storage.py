"""Power events from archive storage: the Activity Log as a diagnostic setting writes it to a
storage account (`azure-storage-blob`).

Layout (`billing.ARCHIVE_CONTAINER`): one blob per subscription and hour,
`resourceId=/SUBSCRIPTIONS/<ID>/y=YYYY/m=MM/d=DD/h=HH/m=00/PT1H.json`, holding one JSON record
per line (since November 2018) or one `{"records": [...]}` document (before); both are read.
A record is the diagnostic-settings form of an event (Learn: azure-monitor/essentials/
activity-log-schema, "Schema from storage account and event hubs"): `time`, `resourceId`,
`operationName`, `resultType` (Start / Accept / Success / Failure), `correlationId`, in the case
Azure wrote them (ids and operation names upper-cased). It carries no event id, so one is made
from what identifies the event (`event_data_id`), the same for the same record in any blob.

A month is listed with one prefix per subscription (`y=YYYY/m=MM/`); a blob whose hour lies
outside the span asked for is not downloaded.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import polars as pl
from azure.storage.blob import ContainerClient

from flows.collect import activity_log
from flows.collect.scopes import Month

SOURCE: Final = "archive_storage"
_HOUR_PATH: Final = re.compile(r"/y=(\d{4})/m=(\d{2})/d=(\d{2})/h=(\d{2})/m=00/[^/]+\.json$")
_YEAR: Final = re.compile(r"/y=(\d{4})/$")
_MONTH: Final = re.compile(r"/m=(\d{2})/$")


class ArchiveFormatError(ValueError):
    """A blob that is not Activity Log JSON; the message names the blob and the line."""


def subscription_prefix(subscription_id: str) -> str:
    return f"resourceId=/SUBSCRIPTIONS/{subscription_id.upper()}/"


def month_prefix(subscription_id: str, month: Month) -> str:
    return f"{subscription_prefix(subscription_id)}y={month.year:04d}/m={month.month:02d}/"


def blob_hour(name: str) -> datetime | None:
    """The hour a blob holds, read from its path; None for a blob of another layout."""
    match = _HOUR_PATH.search(name)
    if match is None:
        return None
    year, month, day, hour = (int(part) for part in match.groups())
    return datetime(year, month, day, hour, tzinfo=UTC)


def parse_records(data: bytes, origin: str) -> list[dict[str, Any]]:
    """The records of one blob: JSON lines, or one `{"records": [...]}` document."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ArchiveFormatError(
            f"{origin}: not UTF-8 text; is this an Activity Log archive?"
        ) from None
    try:
        whole = json.loads(text)
    except ValueError:
        whole = None
    if isinstance(whole, dict) and isinstance(whole.get("records"), list):
        return [record for record in whole["records"] if isinstance(record, dict)]
    records: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise ArchiveFormatError(
                f"{origin} line {number}: not a JSON record; Activity Log archives hold one "
                'record per line or one {"records": [...]} document'
            ) from None
        if isinstance(record, dict) and isinstance(record.get("records"), list):
            records.extend(item for item in record["records"] if isinstance(item, dict))
        elif isinstance(record, dict):
            records.append(record)
    return records


def event_data_id(record: Mapping[str, Any]) -> str:
    """A stable id for a record that has none: a digest of what identifies the event."""
    key = "|".join(
        str(record.get(name) or "").lower()
        for name in ("resourceId", "correlationId", "operationName", "resultType", "time")
    )
    return "archive-" + hashlib.sha256(key.encode()).hexdigest()[:32]


def wire_event(record: Mapping[str, Any]) -> dict[str, Any]:
    """An archive record in the Activity Log API's field names (`power_events_frame` reads them)."""
    return {
        "eventDataId": record.get("eventDataId") or event_data_id(record),
        "correlationId": record.get("correlationId"),
        "eventTimestamp": record.get("time"),
        "resourceId": record.get("resourceId"),
        "operationName": record.get("operationName"),
        "status": record.get("resultType"),
    }


def fetch_records(
    container: ContainerClient,
    subscription_id: str,
    since: datetime,
    until: datetime,
) -> Iterator[dict[str, Any]]:
    """Every record of the subscription's blobs whose hour overlaps `[since, until)`."""
    month = Month(since.year, since.month)
    while month.start < until:
        for blob in container.list_blobs(name_starts_with=month_prefix(subscription_id, month)):
            hour = blob_hour(blob.name)
            if hour is None or hour + timedelta(hours=1) <= since or hour >= until:
                continue
            data = container.download_blob(blob.name).readall()
            yield from parse_records(data, f"{container.container_name}/{blob.name}")
        month = month.next()


def power_events_frame(
    records: Sequence[Mapping[str, Any]], *, subscription_id: str, since: datetime, until: datetime
) -> pl.DataFrame:
    """Archive records -> POWER_EVENTS rows without provenance (the Activity Log API's rules)."""
    return activity_log.power_events_frame(
        (wire_event(record) for record in records),
        subscription_id=subscription_id,
        since=since,
        until=until,
    )


def earliest_month(container: ContainerClient, subscription_ids: Sequence[str]) -> Month | None:
    """The earliest month any of the subscriptions has a folder for, or None (two listings per
    subscription, by folder: years, then the earliest year's months)."""
    earliest: Month | None = None
    for subscription_id in subscription_ids:
        prefix = subscription_prefix(subscription_id)
        years = sorted(
            int(match.group(1))
            for item in container.walk_blobs(name_starts_with=prefix, delimiter="/")
            if (match := _YEAR.search(item.name))
        )
        if not years:
            continue
        months = sorted(
            int(match.group(1))
            for item in container.walk_blobs(
                name_starts_with=f"{prefix}y={years[0]:04d}/", delimiter="/"
            )
            if (match := _MONTH.search(item.name))
        )
        if months:
            found = Month(years[0], months[0])
            if earliest is None or found.start < earliest.start:
                earliest = found
    return earliest
