"""The lake writer: schema enforced, partitions replaced whole, staging files never read."""

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from flows.lake import dataset_files, partition_path, scan_dataset, write_partition
from transforms.schemas import POWER_EVENTS, SchemaError

WHEN = datetime(2026, 10, 3, 8, 0, tzinfo=UTC)


def events(count: int, status: str = "Succeeded") -> pa.Table:
    rows = {
        "event_data_id": [f"e{i}" for i in range(count)],
        "correlation_id": [f"c{i}" for i in range(count)],
        "event_at": [WHEN] * count,
        "resource_id": [
            "/subscriptions/s/resourcegroups/rg/providers/microsoft.compute/virtualmachines/v"
        ]
        * count,
        "subscription_id": ["s"] * count,
        "resource_group": ["rg"] * count,
        "operation_name": ["Microsoft.Compute/virtualMachines/start/action"] * count,
        "operation": ["start"] * count,
        "status": [status] * count,
        "ingested_at": [WHEN] * count,
        "source": ["test"] * count,
        "scope": ["/subscriptions/s"] * count,
    }
    return pa.Table.from_pydict(rows, schema=POWER_EVENTS)


def test_rewriting_a_partition_replaces_it_whole(tmp_path):
    partition = {"month": "2026-10", "subscription_id": "s"}
    write_partition(tmp_path, "power_events", partition, events(3), "first run")
    write_partition(tmp_path, "power_events", partition, events(2, "Failed"), "second run")
    frame = scan_dataset(tmp_path, "power_events").collect()
    assert frame.height == 2
    assert frame["status"].to_list() == ["Failed", "Failed"]
    assert dataset_files(tmp_path, "power_events") == [
        partition_path(tmp_path, "power_events", partition)
    ]


def test_an_empty_table_empties_the_partition(tmp_path):
    partition = {"month": "2026-10", "subscription_id": "s"}
    write_partition(tmp_path, "power_events", partition, events(3), "first run")
    write_partition(tmp_path, "power_events", partition, events(0), "restated run")
    assert scan_dataset(tmp_path, "power_events").collect().height == 0


def test_a_table_off_schema_is_refused_and_the_old_partition_stays(tmp_path):
    partition = {"month": "2026-10", "subscription_id": "s"}
    write_partition(tmp_path, "power_events", partition, events(3), "first run")
    extra = events(1).append_column("surprise", pa.array([1]))
    with pytest.raises(SchemaError, match="bad batch: power_events has unexpected column"):
        write_partition(tmp_path, "power_events", partition, extra, "bad batch")
    retyped = events(1).set_column(8, "status", pa.array([1]))
    with pytest.raises(SchemaError, match=r"power_events.status is int64, expected string"):
        write_partition(tmp_path, "power_events", partition, retyped, "bad batch")
    assert scan_dataset(tmp_path, "power_events").collect().height == 3


def test_staging_files_left_by_a_crash_are_not_read(tmp_path):
    partition = {"month": "2026-10", "subscription_id": "s"}
    target = write_partition(tmp_path, "power_events", partition, events(2), "run")
    (target.parent / ".data.parquet.deadbeef.tmp").write_bytes(b"half-written")
    assert scan_dataset(tmp_path, "power_events").collect().height == 2


def test_a_dataset_never_written_scans_as_empty_with_its_columns(tmp_path):
    frame = scan_dataset(tmp_path, "power_events").collect()
    assert frame.height == 0
    assert frame.columns == POWER_EVENTS.names


def test_partition_values_cannot_escape_the_lake(tmp_path):
    with pytest.raises(ValueError, match=r"partition value month='\.\./x'"):
        partition_path(tmp_path, "costs", {"month": "../x"})
