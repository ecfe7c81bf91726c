"""Explicit schemas of every raw lake dataset, declared once and enforced on write.

The lake is the source of truth (DESIGN.md); these schemas are its contract. Collectors build
tables with exactly these columns and types; `conform` refuses anything else with an error that
names the dataset and the column, instead of silently casting whatever arrived.

Conventions: times are UTC `timestamp[us, tz=UTC]`; resource ids are lower-cased in
`resource_id`; money is float64 with its currency beside it; every row carries provenance
(`ingested_at`, `source`, `scope`).
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa

UTC_TIMESTAMP: Final = pa.timestamp("us", tz="UTC")

_PROVENANCE: Final = [
    pa.field("ingested_at", UTC_TIMESTAMP, nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("scope", pa.string(), nullable=False),
]
PROVENANCE_COLUMNS: Final = tuple(field.name for field in _PROVENANCE)

# One row per machine (VM, scale-set instance, Arc machine) seen in a snapshot.
INVENTORY: Final = pa.schema(
    [
        pa.field("snapshot_at", UTC_TIMESTAMP, nullable=False),
        pa.field("resource_id", pa.string(), nullable=False),
        pa.field("subscription_id", pa.string(), nullable=False),
        pa.field("resource_group", pa.string(), nullable=False),
        pa.field("machine_name", pa.string(), nullable=False),
        pa.field("machine_kind", pa.string(), nullable=False),
        pa.field("vm_id", pa.string()),
        pa.field("scale_set_name", pa.string()),
        pa.field("location", pa.string()),
        pa.field("size", pa.string()),
        pa.field("os_type", pa.string()),
        pa.field("tags", pa.string()),
        # The resource group's tags (JSON object), inherited where the machine has none.
        pa.field("resource_group_tags", pa.string()),
        pa.field("created_at", UTC_TIMESTAMP),
        pa.field("power_state", pa.string()),
        pa.field("mde_sensor", pa.bool_(), nullable=False),
        pa.field("mde_extension_type", pa.string()),
        # Where the server runs (billing.PROVIDERS); null in partitions written before Arc.
        pa.field("provider", pa.string()),
        # Arc: `lastStatusChange`, when the status in `power_state` began; null for VMs.
        pa.field("status_changed_at", UTC_TIMESTAMP),
        # The Entra tenant the snapshot was collected from; null in partitions written before
        # tenants were recorded, or when the credential's tenant is not configured.
        pa.field("tenant_id", pa.string()),
        *_PROVENANCE,
    ]
)

# Defender for Cloud multicloud connectors (`Microsoft.Security/securityConnectors`) per
# subscription snapshot: which cloud account each connects, and the Defender for Servers plan its
# offerings set (null when it has no Defender for Servers offering).
CONNECTORS: Final = pa.schema(
    [
        pa.field("snapshot_at", UTC_TIMESTAMP, nullable=False),
        pa.field("subscription_id", pa.string(), nullable=False),
        pa.field("connector_id", pa.string(), nullable=False),
        pa.field("connector_name", pa.string(), nullable=False),
        pa.field("cloud", pa.string()),
        pa.field("hierarchy_identifier", pa.string()),
        pa.field("defender_plan", pa.string()),
        *_PROVENANCE,
    ]
)

# Defender for Servers plan (`Microsoft.Security/pricings/VirtualMachines`) per subscription
# and per resource override.
PRICINGS: Final = pa.schema(
    [
        pa.field("snapshot_at", UTC_TIMESTAMP, nullable=False),
        pa.field("subscription_id", pa.string(), nullable=False),
        pa.field("pricing_id", pa.string(), nullable=False),
        pa.field("level", pa.string(), nullable=False),
        pa.field("resource_id", pa.string()),
        pa.field("pricing_tier", pa.string(), nullable=False),
        pa.field("sub_plan", pa.string()),
        pa.field("inherited", pa.bool_()),
        pa.field("inherited_from", pa.string()),
        pa.field("enablement_time", UTC_TIMESTAMP),
        # freeTrialRemainingTime at snapshot_at (ISO 8601 duration on the wire); null if absent.
        pa.field("free_trial_remaining", pa.duration("us")),
        *_PROVENANCE,
    ]
)

# Activity Log events of compute power operations, every status kept.
POWER_EVENTS: Final = pa.schema(
    [
        pa.field("event_data_id", pa.string(), nullable=False),
        pa.field("correlation_id", pa.string(), nullable=False),
        pa.field("event_at", UTC_TIMESTAMP, nullable=False),
        pa.field("resource_id", pa.string(), nullable=False),
        pa.field("subscription_id", pa.string(), nullable=False),
        pa.field("resource_group", pa.string(), nullable=False),
        pa.field("operation_name", pa.string(), nullable=False),
        pa.field("operation", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        *_PROVENANCE,
    ]
)

# Cost rows, FOCUS-aligned in snake_case, from the Query API or from export files.
# `consumed_quantity` is already divided by the pricing block size of `x_unit_of_measure`.
COSTS: Final = pa.schema(
    [
        pa.field("charge_period_start", UTC_TIMESTAMP, nullable=False),
        pa.field("charge_period_end", UTC_TIMESTAMP, nullable=False),
        pa.field("subscription_id", pa.string()),
        pa.field("sub_account_id", pa.string()),
        pa.field("resource_id", pa.string()),
        pa.field("resource_type", pa.string()),
        pa.field("service_name", pa.string()),
        pa.field("meter_category", pa.string()),
        pa.field("meter_subcategory", pa.string()),
        pa.field("sku_meter", pa.string()),
        pa.field("charge_description", pa.string()),
        pa.field("charge_category", pa.string()),
        pa.field("consumed_quantity", pa.float64()),
        pa.field("consumed_unit", pa.string()),
        pa.field("x_unit_of_measure", pa.string()),
        pa.field("billed_cost", pa.float64(), nullable=False),
        pa.field("effective_cost", pa.float64(), nullable=False),
        pa.field("billing_currency", pa.string(), nullable=False),
        pa.field("cost_type", pa.string(), nullable=False),
        pa.field("cost_source", pa.string(), nullable=False),
        # The Entra tenant the Query API was asked in; null for imported export files and in
        # partitions written before tenants were recorded.
        pa.field("tenant_id", pa.string()),
        *_PROVENANCE,
    ]
)

# Retail Prices API rows for Defender for Servers (written by `mdecost prices refresh`).
RETAIL_PRICES: Final = pa.schema(
    [
        pa.field("meter_id", pa.string(), nullable=False),
        pa.field("meter_name", pa.string(), nullable=False),
        pa.field("sku_name", pa.string(), nullable=False),
        pa.field("product_name", pa.string(), nullable=False),
        pa.field("service_name", pa.string(), nullable=False),
        pa.field("arm_region_name", pa.string()),
        pa.field("unit_of_measure", pa.string(), nullable=False),
        pa.field("unit_price", pa.float64(), nullable=False),
        pa.field("retail_price", pa.float64(), nullable=False),
        pa.field("currency_code", pa.string(), nullable=False),
        pa.field("effective_start_date", UTC_TIMESTAMP, nullable=False),
        pa.field("price_type", pa.string(), nullable=False),
        *_PROVENANCE,
    ]
)

# The price book in force: one row per option and effective period, discounts and the user's
# overrides already applied (pricing/ builds it; transforms price months with it). `kind` is
# `hourly` (rate per server-hour) or `seat` (rate per server per month). `effective_to` is
# exclusive; null means still in force.
PRICE_BOOK: Final = pa.schema(
    [
        pa.field("option", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("unit", pa.string(), nullable=False),
        pa.field("rate", pa.float64(), nullable=False),
        pa.field("currency", pa.string(), nullable=False),
        pa.field("effective_from", pa.date32(), nullable=False),
        pa.field("effective_to", pa.date32()),
        pa.field("source", pa.string(), nullable=False),
    ]
)

# One row per subscription the credential reads, per snapshot: names for people, GUIDs for joins.
SUBSCRIPTIONS: Final = pa.schema(
    [
        pa.field("snapshot_at", UTC_TIMESTAMP, nullable=False),
        pa.field("subscription_id", pa.string(), nullable=False),
        pa.field("display_name", pa.string()),
        pa.field("state", pa.string()),
        pa.field("tenant_id", pa.string()),
        pa.field("management_group_path", pa.string()),
        *_PROVENANCE,
    ]
)

# The warehouse's `costs`: the lake's cost rows as they are, each with the partition file it was
# read from, relative to the lake (so an incremental build replaces one file's rows).
WAREHOUSE_COSTS: Final = COSTS.append(pa.field("lake_file", pa.string(), nullable=False))

DATASETS: Final = {
    "inventory": INVENTORY,
    "pricings": PRICINGS,
    "connectors": CONNECTORS,
    "power_events": POWER_EVENTS,
    "costs": COSTS,
    "retail_prices": RETAIL_PRICES,
    "subscriptions": SUBSCRIPTIONS,
}


class SchemaError(ValueError):
    """A table does not match its dataset's declared schema."""


def conform(table: pa.Table, dataset: str, origin: str) -> pa.Table:
    """Return `table` in the exact column order and types of `dataset`, or raise SchemaError.

    Columns may arrive in any order; a missing or unexpected column, a type that differs from the
    declared one (other than a null-typed column of an empty or all-null batch), or a null in a
    non-nullable column is refused, naming `origin` (the file or request it came from).
    """
    schema = DATASETS[dataset]
    arrived = set(table.column_names)
    expected = set(schema.names)
    if missing := sorted(expected - arrived):
        raise SchemaError(f"{origin}: {dataset} is missing column(s) {', '.join(missing)}")
    if unexpected := sorted(arrived - expected):
        raise SchemaError(f"{origin}: {dataset} has unexpected column(s) {', '.join(unexpected)}")
    columns = []
    for field in schema:
        column = table.column(field.name)
        if column.type != field.type:
            if not pa.types.is_null(column.type):
                raise SchemaError(
                    f"{origin}: {dataset}.{field.name} is {column.type}, expected {field.type}"
                )
            column = column.cast(field.type)
        if not field.nullable and column.null_count:
            raise SchemaError(
                f"{origin}: {dataset}.{field.name} has {column.null_count} null value(s)"
            )
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)
