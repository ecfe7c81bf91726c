"""Security pricings wire JSON -> pricings rows (string booleans, inheritance)."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flows.collect.pricings import flag, pricing_record, pricings_table, trial_remaining
from transforms.schemas import PRICINGS, conform

SPECS = Path(__file__).parents[2] / "fixtures" / "azure-specs"
SUB = "20ff7fc3-e762-44dd-bd96-b71116dcdc23"
VM = f"/subscriptions/{SUB}/resourceGroups/DEMO/providers/Microsoft.Compute/virtualMachines/VM-1"
WHEN = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)


def example(name):
    return json.loads((SPECS / name).read_text())["responses"]["200"]["body"]


def test_booleans_arrive_as_strings_or_booleans():
    assert [flag("True"), flag("false"), flag(True), flag(None)] == [True, False, True, None]
    with pytest.raises(ValueError, match="expected True or False, got 'maybe'"):
        flag("maybe")


def test_trial_remaining_reads_iso_8601_durations():
    assert trial_remaining("P29DT23H30M") == timedelta(days=29, hours=23, minutes=30)
    assert trial_remaining("PT0S") == timedelta(0)
    assert trial_remaining(None) is None
    with pytest.raises(ValueError, match="'thirty days' is not an ISO 8601 duration"):
        trial_remaining("thirty days")


def test_subscription_and_resource_level_pricings_from_the_spec_examples():
    subscription = pricing_record(
        example("GetPricingByNameVirtualMachines_example.json"),
        subscription_id=SUB,
        resource_id=None,
    )
    machine = pricing_record(
        example("GetResourcePricingByNameVirtualMachines_example.json"),
        subscription_id=SUB,
        resource_id=VM,
    )
    assert subscription == {
        "subscription_id": SUB,
        "pricing_id": f"/subscriptions/{SUB}/providers/microsoft.security/pricings/virtualmachines",
        "level": "subscription",
        "resource_id": None,
        "pricing_tier": "Standard",
        "sub_plan": "P2",
        "inherited": None,
        "inherited_from": None,
        "enablement_time": "2023-03-01T12:42:42.1921106Z",
        "free_trial_remaining": timedelta(0),  # "PT0S" in the example
    }
    assert machine["level"] == "resource"
    assert machine["resource_id"] == VM.lower()
    assert (machine["inherited"], machine["inherited_from"]) == (True, f"/subscriptions/{SUB}")
    table = conform(
        pricings_table(
            [machine, subscription],
            snapshot_at=WHEN,
            ingested_at=WHEN,
            scope=f"/subscriptions/{SUB}",
        ),
        "pricings",
        "test",
    )
    assert table.schema == PRICINGS
    assert table.column("level").to_pylist() == ["subscription", "resource"]
    assert table.column("enablement_time").to_pylist()[0] == datetime(
        2023, 3, 1, 12, 42, 42, 192110, tzinfo=UTC
    )
