"""Azure Arc machines and connectors collected from the simulated estate through the real SDKs
(Hybrid Compute, Security), then their status history rebuilt from the daily snapshots.

Case 11 of the estate (flows/simulator/cases.py), in Contoso Production: SQL-OnPrem-01 loses its
connection on 2026-10-12 at 02:00 and is back on 10-13 at 10:00; Legacy-OnPrem-03 has been
Expired since 09-01; Files-OnPrem-02 has no MDE extension; Decom-OnPrem-04 is removed on 10-26;
an AWS EC2 instance and a GCP instance come through their connectors. The daily refresh
collects at 00:00 on 10-11 .. 10-14.
"""

from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from flows.collect import collect_connectors, collect_inventory
from flows.lake import scan_dataset
from transforms.machines import machines
from transforms.power import machine_hours_daily, power_intervals

pytestmark = pytest.mark.simulator

CLOCKS = [datetime(2026, 10, day, tzinfo=UTC) for day in (11, 12, 13, 14)]
WINDOW_START, WINDOW_END = CLOCKS[0], CLOCKS[-1]


@pytest.fixture
def lake(simulator, tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("MDECOST_LAKE__PATH", str(tmp_path))
    production = simulator.estate.connector_specs[0].subscription.subscription_id
    scope = f"/subscriptions/{production}"
    for clock in CLOCKS:
        simulator.set_clock(clock)
        for task in (collect_inventory, collect_connectors):
            result = task.fn(simulator.config_path, scope, clock, clock)
            assert result.failure is None
    return tmp_path


def test_daily_collection_yields_the_arc_machines_statuses_and_billable_hours(lake):
    inventory = scan_dataset(lake, "inventory")
    events = scan_dataset(lake, "power_events")
    view = machines(inventory, events, scan_dataset(lake, "pricings")).collect()
    arc = view.filter(pl.col("machine_kind") == "arc").sort("machine_name")
    assert arc.select("machine_name", "provider", "os_type", "mde_sensor").rows() == [
        ("Decom-OnPrem-04", "on_premises", "Linux", True),
        ("Files-OnPrem-02", "on_premises", "Linux", False),
        ("Legacy-OnPrem-03", "on_premises", "Windows", True),
        ("SQL-OnPrem-01", "on_premises", "Windows", True),
        ("gcp-web-01", "gcp", "Linux", True),
        ("i-0a1b2c3d4e5f60718", "aws", "Linux", True),
    ]
    # The VMs of the same subscription run in Azure.
    assert set(view.filter(pl.col("machine_kind") != "arc")["provider"]) == {"azure"}

    intervals = power_intervals(inventory, events, window_start=WINDOW_START, window_end=WINDOW_END)
    ids = dict(arc.select("machine_name", "resource_id").rows())

    def timeline(name: str) -> list[tuple]:
        rows = intervals.filter(pl.col("resource_id") == ids[name]).collect()
        return rows.select("state", "start_at", "end_at", "billable").rows()

    # The snapshot of 10-13 says Disconnected since 10-12 02:00, that of 10-14 Connected since
    # 10-13 10:00: both changes are exact.
    assert timeline("SQL-OnPrem-01") == [
        ("connected", WINDOW_START, datetime(2026, 10, 12, 2, tzinfo=UTC), True),
        (
            "disconnected",
            datetime(2026, 10, 12, 2, tzinfo=UTC),
            datetime(2026, 10, 13, 10, tzinfo=UTC),
            False,
        ),
        ("connected", datetime(2026, 10, 13, 10, tzinfo=UTC), WINDOW_END, True),
    ]
    assert timeline("Legacy-OnPrem-03") == [("expired", WINDOW_START, WINDOW_END, False)]

    hours = machine_hours_daily(intervals, view.lazy()).collect()
    by_machine = dict(hours.group_by("resource_id").agg(pl.col("billable_hours").sum()).rows())
    # SQL-OnPrem-01: 24 h on 10-11, 2 h on 10-12 (00:00-02:00), 14 h on 10-13 (10:00-24:00) =
    # 40 h; Legacy-OnPrem-03 Expired: 0 h; the four others Connected: 3 x 24 = 72 h each.
    assert {name: by_machine[resource_id] for name, resource_id in ids.items()} == {
        "SQL-OnPrem-01": 40.0,
        "Legacy-OnPrem-03": 0.0,
        "Files-OnPrem-02": 72.0,
        "Decom-OnPrem-04": 72.0,
        "gcp-web-01": 72.0,
        "i-0a1b2c3d4e5f60718": 72.0,
    }
    sql_days = hours.filter(pl.col("resource_id") == ids["SQL-OnPrem-01"])
    assert sql_days.select("usage_date", "billable_hours").rows() == [
        (date(2026, 10, 11), 24.0),
        (date(2026, 10, 12), 2.0),
        (date(2026, 10, 13), 14.0),
    ]


def test_connectors_are_collected_with_their_cloud_and_plan(lake):
    connectors = scan_dataset(lake, "connectors").collect()
    latest = connectors.filter(pl.col("snapshot_at") == WINDOW_END).sort("connector_name")
    assert latest.select(
        "connector_name", "cloud", "hierarchy_identifier", "defender_plan"
    ).rows() == [
        ("aws-contoso-prod", "aws", "123456789012", "P2"),
        ("gcp-contoso-web", "gcp", "987654321098", "P2"),
    ]
