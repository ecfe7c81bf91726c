"""Resource groups' tags, read through the real ResourceManagementClient from the simulated
estate, land beside each machine's own tags in the inventory, and the `machines` view merges
them as Cost Management's tag inheritance does."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import polars as pl
import pytest

from flows.azure_clients import AzureClients
from flows.collect.inventory import fetch_inventory, fetch_resource_group_tags, inventory_table
from transforms.tags import effective_tags, tag_value

pytestmark = pytest.mark.simulator


def subscription_named(estate, name):
    return next(s for s in estate.subscription_specs if s.display_name == name)


def test_resource_group_tags_are_collected_and_inherited(simulator):
    estate = simulator.estate
    production = subscription_named(estate, "Contoso Production")
    clients = AzureClients(simulator.settings())
    origin = f"inventory of /subscriptions/{production.subscription_id}"
    groups = fetch_resource_group_tags(clients.resources(production.subscription_id), origin=origin)
    # The simulated estate tags Production's web group (profiles._GROUP_TAGS), not its data group.
    assert json.loads(groups["rg-prod-web"]) == {"CostCenter": "CC-4004", "environment": "prod"}
    assert json.loads(groups["rg-prod-data"]) == {}
    fetched = fetch_inventory(
        clients.compute(production.subscription_id),
        production.subscription_id,
        logging.getLogger("test"),
        origin=origin,
    )
    now = datetime(2026, 11, 15, 12, tzinfo=UTC)
    table = pl.from_arrow(
        inventory_table(
            fetched.records,
            snapshot_at=now,
            ingested_at=now,
            scope=f"/subscriptions/{production.subscription_id}",
            resource_group_tags=groups,
        )
    )
    web = table.filter(pl.col("resource_group") == "rg-prod-web")
    assert web.height > 0
    assert set(web["resource_group_tags"]) == {groups["rg-prod-web"]}
    # A scale-set instance carries only environment and owner: it inherits the group's cost
    # centre; a VM with its own costCenter keeps it (names compare without case).
    merged = (
        web.lazy()
        .with_columns(effective_tags("tags", "resource_group_tags"))
        .select("resource_id", cost_centre=tag_value("CostCenter"))
        .collect()
    )
    for resource_id, cost_centre in merged.iter_rows():
        machine = estate.machine_by_id[resource_id].machine
        assert cost_centre == machine.tags.get("costCenter", "CC-4004"), resource_id
    instances = web.filter(pl.col("machine_kind") == "vmss_instance")
    assert instances.height > 0
