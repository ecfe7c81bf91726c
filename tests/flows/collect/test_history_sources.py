"""The history sources' pure parts, by hand: the query, both status spellings, one row per event
across sources, and which months a run needs and which sources cover them."""

import json
from datetime import UTC, date, datetime

import polars as pl
import pytest

from flows.collect import archive_storage, log_analytics
from flows.collect.activity_log import WindowError, check_window, with_provenance
from flows.collect.history import (
    Coverage,
    check_coverage,
    coverage_lines,
    history_months,
    merged_partition,
)
from flows.collect.scopes import Month
from transforms.billing import power_operation_names
from transforms.event_sources import one_row_per_event

SUB = "6513270e-269e-4d37-b2a7-4de452e6b438"
VM = f"/subscriptions/{SUB}/resourceGroups/RG-A/providers/Microsoft.Compute/virtualMachines/Web-1"
SINCE = datetime(2026, 1, 1, tzinfo=UTC)
UNTIL = datetime(2026, 2, 1, tzinfo=UTC)
AS_OF = datetime(2026, 11, 15, 12, tzinfo=UTC)  # retention floor 2026-08-17 12:00


def test_the_query_asks_for_the_power_operations_without_case_in_a_half_open_span():
    text = log_analytics.query([SUB], SINCE, UNTIL)
    lines = text.splitlines()
    assert lines[0] == "AzureActivity"
    assert "| where TimeGenerated >= datetime(2026-01-01T00:00:00.000000Z)" in lines
    assert "| where TimeGenerated < datetime(2026-02-01T00:00:00.000000Z)" in lines
    operations = next(line for line in lines if "OperationNameValue" in line)
    assert operations.startswith("| where OperationNameValue in~ (")
    # Every operation billing.py names, in Azure's spelling (6 verbs x VMs and scale-set VMs
    # at least, and an Arc machine's write and delete), compared without case by `in~`.
    compute = operations.count('"Microsoft.Compute/')
    arc = operations.count('"Microsoft.HybridCompute/machines/')
    assert (compute, arc) == (len(power_operation_names()) - 2, 2)
    assert compute >= 12
    assert '"Microsoft.Compute/virtualMachines/powerOff/action"' in operations
    assert f'| where SubscriptionId in~ ("{SUB}")' in lines


def _row(event_id, at, operation, status, correlation="c1", resource=VM.upper()):
    return {
        "TimeGenerated": at,
        "EventDataId": event_id,
        "CorrelationId": correlation,
        "OperationNameValue": operation,
        "ActivityStatusValue": status,
        "_ResourceId": resource,
        "SubscriptionId": SUB.upper(),
    }


def test_both_status_spellings_and_any_case_of_operation_names_are_read():
    at = datetime(2026, 1, 5, 8, tzinfo=UTC)
    rows = [
        # A diagnostic setting's spelling, upper-case operation name.
        _row("e1", at, "MICROSOFT.COMPUTE/VIRTUALMACHINES/START/ACTION", "Start"),
        _row("e2", at, "MICROSOFT.COMPUTE/VIRTUALMACHINES/START/ACTION", "Accept"),
        _row("e3", at, "MICROSOFT.COMPUTE/VIRTUALMACHINES/START/ACTION", "Success"),
        # The legacy connector's spelling.
        _row("e4", at, "Microsoft.Compute/virtualMachines/deallocate/action", "Started", "c2"),
        _row("e5", at, "microsoft.compute/virtualmachines/deallocate/action", "Failed", "c2"),
        _row("e6", at, "MICROSOFT.COMPUTE/VIRTUALMACHINES/POWEROFF/ACTION", "Failure", "c3"),
        # Not a power operation; a status no spelling knows.
        _row("e7", at, "MICROSOFT.COMPUTE/DISKS/WRITE", "Success", "c4"),
        _row("e8", at, "MICROSOFT.COMPUTE/VIRTUALMACHINES/RESTART/ACTION", "Active", "c5"),
    ]
    frames = log_analytics.power_events_frames(rows, since=SINCE, until=UNTIL)
    assert list(frames) == [SUB]
    frame = frames[SUB].sort("event_data_id")
    assert frame["event_data_id"].to_list() == ["e1", "e2", "e3", "e4", "e5", "e6"]
    assert frame["status"].to_list() == [
        "Started",
        "Accepted",
        "Succeeded",
        "Started",
        "Failed",
        "Failed",
    ]
    assert frame["operation"].to_list() == ["start"] * 3 + ["deallocate"] * 2 + ["power_off"]
    assert frame["resource_id"].unique().to_list() == [VM.lower()]


def _events(*specs):
    """(event id, source, status, minute) rows of one start of VM, correlation c1."""
    frames = []
    for event_id, source, status, minute in specs:
        frame = log_analytics.power_events_frames(
            [
                _row(
                    event_id,
                    datetime(2026, 1, 5, 8, minute, tzinfo=UTC),
                    "MICROSOFT.COMPUTE/VIRTUALMACHINES/START/ACTION",
                    status,
                )
            ],
            since=SINCE,
            until=UNTIL,
        )[SUB]
        frames.append(
            with_provenance(frame, ingested_at=SINCE, scope=f"/subscriptions/{SUB}", source=source)
        )
    return pl.concat(frames)


def test_an_event_held_by_several_sources_keeps_the_most_trusted_row_only():
    events = _events(
        ("api-started", "activity_log", "Started", 0),
        ("la-started", "log_analytics", "Start", 0),
        ("archive-started", "archive_storage", "Start", 0),
        ("la-succeeded", "log_analytics", "Success", 2),
        ("archive-succeeded", "archive_storage", "Success", 2),
        ("archive-accepted", "archive_storage", "Accept", 1),
    )
    kept = one_row_per_event(events).sort("event_at")
    # Started: the API's; Accepted: only the archive has it; Succeeded: Log Analytics over
    # the archive.
    assert kept["event_data_id"].to_list() == ["api-started", "archive-accepted", "la-succeeded"]


def test_a_history_source_replaces_its_own_rows_of_the_span_and_keeps_the_others():
    existing = _events(
        ("api-started", "activity_log", "Started", 0),
        ("la-old-succeeded", "log_analytics", "Success", 2),
    )
    fresh = _events(("la-started", "log_analytics", "Start", 0))
    merged = merged_partition(existing, {"log_analytics": fresh}, since=SINCE, until=UNTIL).sort(
        "event_at"
    )
    # The workspace no longer answers the Succeeded: its old row goes; its Started is the API's.
    assert merged["event_data_id"].to_list() == ["api-started"]
    assert (
        merged_partition(None, {"log_analytics": fresh.clear()}, since=SINCE, until=UNTIL) is None
    )


def test_history_months_are_those_that_begin_before_the_retention_floor():
    assert history_months(date(2026, 6, 10), AS_OF) == [
        Month(2026, 6),
        Month(2026, 7),
        Month(2026, 8),
    ]
    assert history_months(date(2026, 9, 1), AS_OF) == []
    # Aug 18 is after the floor (Aug 17 12:00): the Activity Log holds all of the window.
    assert history_months(date(2026, 8, 18), AS_OF) == []
    assert history_months(date(2026, 8, 17), AS_OF) == [Month(2026, 8)]


def test_coverage_says_which_source_covers_which_months_and_refuses_the_rest():
    months = history_months(date(2026, 3, 1), AS_OF)  # Mar .. Aug
    coverages = [
        Coverage("log_analytics", "Log Analytics workspace w1", Month(2026, 5)),
        Coverage("archive_storage", "archive https://a/insights-activity-logs", Month(2026, 4)),
        Coverage("log_analytics", "Log Analytics workspace w2 (403 Forbidden)", None),
    ]
    assert coverage_lines(months, coverages) == [
        "Log Analytics workspace w1 covers 2026-05 .. 2026-08",
        "archive https://a/insights-activity-logs covers 2026-04 .. 2026-08",
        "Log Analytics workspace w2 (403 Forbidden) covers no month",
    ]
    with pytest.raises(WindowError) as refused:
        check_coverage(date(2026, 3, 1), AS_OF, months, coverages)
    message = str(refused.value)
    assert message.startswith("--start 2026-03-01: no power history covers 2026-03 (")
    assert "Use --start 2026-04-01 or later" in message
    check_coverage(date(2026, 4, 1), AS_OF, history_months(date(2026, 4, 1), AS_OF), coverages)


def test_archive_records_in_both_layouts_with_a_stable_made_up_event_id():
    record = {
        "time": "2026-01-05T08:00:00.1234567Z",
        "resourceId": VM.upper(),
        "operationName": "MICROSOFT.COMPUTE/VIRTUALMACHINES/START/ACTION",
        "category": "Administrative",
        "resultType": "Start",
        "correlationId": "c1",
    }
    lines = (json.dumps(record) + "\n" + json.dumps({**record, "resultType": "Success"})).encode()
    wrapped = json.dumps({"records": [record]}, indent=2).encode()
    assert len(archive_storage.parse_records(lines, "blob")) == 2
    assert archive_storage.parse_records(wrapped, "blob") == [record]
    first = archive_storage.wire_event(record)["eventDataId"]
    assert first == archive_storage.wire_event(dict(record))["eventDataId"]
    assert first != archive_storage.wire_event({**record, "resultType": "Success"})["eventDataId"]
    with pytest.raises(archive_storage.ArchiveFormatError, match=r"blob line 3: not a JSON"):
        archive_storage.parse_records(lines + b"\n{oops", "blob")
    assert archive_storage.blob_hour(
        f"resourceId=/SUBSCRIPTIONS/{SUB.upper()}/y=2026/m=01/d=05/h=08/m=00/PT1H.json"
    ) == datetime(2026, 1, 5, 8, tzinfo=UTC)


def test_an_old_start_is_left_to_the_sources_only_when_history_is_configured():
    with pytest.raises(WindowError, match=r"name it in \[history\]"):
        check_window(date(2026, 1, 1), date(2026, 2, 1), AS_OF)
    check_window(date(2026, 1, 1), date(2026, 2, 1), AS_OF, history=True)
    with pytest.raises(WindowError, match="must be after"):
        check_window(date(2026, 1, 1), date(2026, 1, 1), AS_OF, history=True)
