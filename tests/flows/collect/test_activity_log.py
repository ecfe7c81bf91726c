"""Activity Log events -> power_events rows; the retention refusal; month merging."""

import json
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from flows.azure_clients import AzureClients
from flows.collect.activity_log import (
    WindowError,
    check_window,
    collected_span,
    event_filter,
    fetch_events,
    merged_month,
    power_event_months,
    power_events_frame,
    with_provenance,
)
from flows.collect.scopes import Month
from transforms.schemas import POWER_EVENTS, conform

SPECS = Path(__file__).parents[2] / "fixtures" / "azure-specs"
SUB = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
VM = f"/subscriptions/{SUB}/resourceGroups/RG-A/providers/Microsoft.Compute/virtualMachines/Web01"
VMSS_VM = (
    f"/subscriptions/{SUB}/resourceGroups/RG-B/providers/Microsoft.Compute/"
    "virtualMachineScaleSets/pool/virtualMachines/3"
)
AS_OF = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
INGESTED = datetime(2026, 11, 15, 12, 5, tzinfo=UTC)


def event(event_id, at, resource, operation, status, correlation="c1"):
    return {
        "eventDataId": event_id,
        "correlationId": correlation,
        "eventTimestamp": at,
        "resourceId": resource,
        "operationName": {"value": operation, "localizedValue": operation},
        "status": {"value": status, "localizedValue": status},
        "subscriptionId": SUB,
    }


def test_a_window_older_than_the_retention_is_refused_with_what_to_do():
    # 90 days before 2026-11-15T12:00Z is 2026-08-17T12:00Z: the earliest whole day is the 18th.
    with pytest.raises(WindowError) as refused:
        check_window(date(2026, 8, 17), date(2026, 9, 1), AS_OF)
    assert str(refused.value) == (
        "--start 2026-08-17 is older than the Activity Log's 90-day retention at "
        "2026-11-15T12:00Z: power events before 2026-08-17T12:00Z can no longer be collected. "
        "Use --start 2026-08-18 or later; power events already in the lake from earlier runs "
        "are kept. Older ones can be read from a Log Analytics workspace or storage account a "
        "diagnostic setting fills: name it in [history]."
    )
    check_window(date(2026, 8, 18), date(2026, 9, 1), AS_OF)


def test_empty_and_future_windows_are_refused():
    with pytest.raises(WindowError, match="--end 2026-10-01 must be after --start 2026-10-01"):
        check_window(date(2026, 10, 1), date(2026, 10, 1), AS_OF)
    with pytest.raises(WindowError, match="--start 2026-11-16 is not before"):
        check_window(date(2026, 11, 16), date(2026, 11, 20), AS_OF)


def test_power_events_are_collected_from_the_window_start_month_up_to_as_of():
    assert [m.label for m in power_event_months(date(2026, 9, 10), AS_OF)] == [
        "2026-09",
        "2026-10",
        "2026-11",
    ]
    midnight = datetime(2026, 11, 1, tzinfo=UTC)
    assert [m.label for m in power_event_months(date(2026, 10, 2), midnight)] == ["2026-10"]
    # A whole month within retention; the current month up to as_of; a month cut by the floor.
    assert collected_span(Month(2026, 10), AS_OF) == (
        datetime(2026, 10, 1, tzinfo=UTC),
        datetime(2026, 11, 1, tzinfo=UTC),
    )
    assert collected_span(Month(2026, 11), AS_OF) == (datetime(2026, 11, 1, tzinfo=UTC), AS_OF)
    assert collected_span(Month(2026, 8), AS_OF)[0] == datetime(2026, 8, 17, 12, tzinfo=UTC)


def test_the_filter_is_one_the_activity_log_accepts():
    assert event_filter(datetime(2026, 10, 1, tzinfo=UTC), AS_OF, "Microsoft.Compute") == (
        "eventTimestamp ge '2026-10-01T00:00:00.000000Z' and "
        "eventTimestamp le '2026-11-15T12:00:00.000000Z' and "
        "resourceProvider eq 'Microsoft.Compute'"
    )


def test_arc_machines_are_read_from_their_own_provider_s_events(simulator):
    # Case 11's AWS instance is registered 2026-10-05 09:30:00-09:30:40 (a Hybrid Compute
    # write: Started, Succeeded) and Decom-OnPrem-04 removed 10-26 14:00:00-14:00:20 (a delete:
    # Started, Accepted, Succeeded): 5 events, read through the SDK with the Hybrid Compute
    # filter, none with the Compute one.
    production = simulator.estate.connector_specs[0].subscription.subscription_id
    monitor = AzureClients(simulator.settings()).monitor(production)
    since, until = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
    rows = power_events_frame(
        fetch_events(monitor, since, until, origin="test"),
        subscription_id=production,
        since=since,
        until=until,
    )
    arc = rows.filter(pl.col("resource_id").str.contains("/microsoft.hybridcompute/machines/"))
    assert arc.sort("event_at").select("operation", "status").rows() == [
        ("write", "Started"),
        ("write", "Succeeded"),
        ("delete", "Started"),
        ("delete", "Accepted"),
        ("delete", "Succeeded"),
    ]


def test_only_power_operations_in_the_span_are_kept_every_status_ids_lower_cased():
    since, until = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
    events = [
        event(
            "e1",
            "2026-10-02T08:00:00.1234567Z",
            VM,
            "Microsoft.Compute/virtualMachines/start/action",
            "Started",
        ),
        event(
            "e2",
            "2026-10-02T08:00:01Z",
            VM,
            "Microsoft.Compute/virtualMachines/start/action",
            "Accepted",
        ),
        event(
            "e3",
            "2026-10-02T08:01:30+00:00",
            VM,
            "Microsoft.Compute/virtualMachines/start/action",
            "Succeeded",
        ),
        event(
            "e4",
            "2026-10-05T20:00:00Z",
            VMSS_VM.upper(),
            "MICROSOFT.COMPUTE/VIRTUALMACHINESCALESETS/VIRTUALMACHINES/DEALLOCATE/ACTION",
            "Failed",
            correlation="c2",
        ),
        # Not power operations: a disk write and the scale set's own write.
        event("e5", "2026-10-03T00:00:00Z", VM, "Microsoft.Compute/disks/write", "Succeeded"),
        event(
            "e6",
            "2026-10-03T00:00:00Z",
            VMSS_VM,
            "Microsoft.Compute/virtualMachineScaleSets/write",
            "Succeeded",
        ),
        # Outside [since, until): the upper bound is exclusive.
        event(
            "e7",
            "2026-11-01T00:00:00Z",
            VM,
            "Microsoft.Compute/virtualMachines/deallocate/action",
            "Started",
        ),
        # The same event paged twice is kept once.
        event(
            "e1",
            "2026-10-02T08:00:00.1234567Z",
            VM,
            "Microsoft.Compute/virtualMachines/start/action",
            "Started",
        ),
    ]
    frame = power_events_frame(events, subscription_id=SUB.upper(), since=since, until=until)
    assert frame["event_data_id"].to_list() == ["e1", "e2", "e3", "e4"]
    assert frame["status"].to_list() == ["Started", "Accepted", "Succeeded", "Failed"]
    assert frame["operation"].to_list() == ["start", "start", "start", "deallocate"]
    assert frame["resource_id"].to_list() == [VM.lower()] * 3 + [VMSS_VM.lower()]
    assert frame["resource_group"].to_list() == ["rg-a"] * 3 + ["rg-b"]
    assert frame["subscription_id"].unique().to_list() == [SUB]
    assert frame["correlation_id"].to_list() == ["c1", "c1", "c1", "c2"]
    # Seven fractional digits are truncated to the microsecond.
    assert frame["event_at"][0] == datetime(2026, 10, 2, 8, 0, 0, 123456, tzinfo=UTC)


def test_the_rest_spec_example_event_is_not_a_power_event():
    example = json.loads((SPECS / "GetActivityLogsFiltered.json").read_text())
    events = example["responses"]["200"]["body"]["value"]
    frame = power_events_frame(
        events, subscription_id=SUB, since=datetime(2015, 1, 1, tzinfo=UTC), until=AS_OF
    )
    assert frame.height == 0


def _rows(*specs):
    events = [
        event(event_id, at, VM, "Microsoft.Compute/virtualMachines/start/action", "Succeeded")
        for event_id, at in specs
    ]
    frame = power_events_frame(
        events, subscription_id=SUB, since=datetime(2000, 1, 1, tzinfo=UTC), until=AS_OF
    )
    return with_provenance(frame, ingested_at=INGESTED, scope=f"/subscriptions/{SUB}")


def test_a_month_keeps_lake_events_outside_the_span_and_replaces_those_inside():
    # The lake holds Aug 10 (now older than the retention floor Aug 17 12:00), Aug 20 and Aug 25.
    existing = _rows(
        ("old", "2026-08-10T00:00:00Z"),
        ("a", "2026-08-20T00:00:00Z"),
        ("gone", "2026-08-25T00:00:00Z"),
    )
    # The re-collection of [Aug 17 12:00, Sep 1) returns Aug 20 and a new Aug 30 event only.
    fresh = _rows(("a", "2026-08-20T00:00:00Z"), ("new", "2026-08-30T00:00:00Z"))
    since, until = collected_span(Month(2026, 8), AS_OF)
    table = merged_month(existing, fresh, since, until)
    assert conform(table, "power_events", "merged month").schema == POWER_EVENTS
    assert table.column("event_data_id").to_pylist() == ["old", "a", "new"]
