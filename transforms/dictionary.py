"""The data dictionary: every warehouse table and column with its meaning.

The contract views' descriptions live with their types in `transforms.contract.VIEWS`; the
tables passed through from the lake (`costs`), the price book (`prices`) and the build record
(`build_info`) are described here. The warehouse carries these as DuckDB comments and
`docs/warehouse.md` is generated from them (`mdecost docs`); a test keeps both in step with the
code, so the dictionary cannot drift.
"""

from __future__ import annotations

from typing import Final

from transforms.contract import VIEWS

PASS_THROUGH: Final[dict[str, dict[str, object]]] = {
    "costs": {
        "grain": "one cost row as collected (Query API, daily) or imported (export files), "
        "FOCUS-aligned in snake_case",
        "columns": {
            "charge_period_start": "Start of the charge period (UTC; a day for daily rows).",
            "charge_period_end": "End of the charge period, exclusive (UTC).",
            "subscription_id": "Lower-cased subscription GUID the row belongs to.",
            "sub_account_id": "FOCUS SubAccountId: /subscriptions/<guid> (lower-cased).",
            "resource_id": "Lower-cased resource id as billed: a machine (VM, scale-set "
            "instance, Arc machine), a scale set, the subscription's Microsoft.Security/pricings/"
            "VirtualMachines id, a multicloud connector, or the name of a server onboarded "
            "directly through Defender for Endpoint (not an ARM id).",
            "resource_type": "Resource type of the billed resource.",
            "service_name": "Service name as Cost Management reports it.",
            "meter_category": "Meter category (Defender has been 'Security Center', 'Azure "
            "Defender', 'Microsoft Defender for Cloud').",
            "meter_subcategory": "Meter subcategory.",
            "sku_meter": "Meter name (Defender for Servers: 'Standard P1 Node', 'Standard P2 "
            "Node', and variants such as 'Standard P2 Node - MDATP Benefit').",
            "charge_description": "FOCUS ChargeDescription where the source has one.",
            "charge_category": "Usage, Purchase, Tax, Credit or Adjustment (FOCUS).",
            "consumed_quantity": "Quantity consumed, divided by the unit's pricing block size.",
            "consumed_unit": "Unit of consumed_quantity after block-size normalisation.",
            "x_unit_of_measure": "The unit of measure as the source spelled it (e.g. '10 Hours').",
            "billed_cost": "Cost billed, in billing_currency.",
            "effective_cost": "Cost after commitment amortisation, in billing_currency.",
            "billing_currency": "ISO 4217 currency of the money columns.",
            "cost_type": "ActualCost, AmortizedCost (Query API, EA/MCA) or FocusCost.",
            "cost_source": "query (Cost Management Query API) or export (imported files).",
            "tenant_id": "The Entra tenant of the subscription, from `subscriptions`; for a "
            "subscription no collection has listed, the tenant the row was collected in (as "
            "the lake has it; null for imported export files and rows collected before tenants "
            "were recorded).",
            "ingested_at": "When mdecost collected or imported the row (UTC).",
            "source": "Which collector or export layout produced the row.",
            "scope": "The Azure scope or billing account the row was read from.",
            "lake_file": "The lake partition file the row was read from, relative to the lake "
            "(raw/costs/source=.../month=.../...): which collection or import delivered it.",
        },
    },
    "subscriptions": {
        "grain": "one row per subscription the credential reads, from the latest collection "
        "that saw it: join on subscription_id to show names beside GUIDs",
        "columns": {
            "snapshot_at": "When the collection listed the subscription (UTC).",
            "subscription_id": "Lower-cased subscription GUID.",
            "display_name": "The subscription's display name.",
            "state": "Enabled, Warned, PastDue, Disabled or Deleted, as Azure lists it.",
            "tenant_id": "The Entra tenant the subscription belongs to.",
            "management_group_path": "Management groups from the root down to the "
            "subscription's, by display name, joined by ' / ' (null: not readable).",
            "ingested_at": "When mdecost collected the row (UTC).",
            "source": "The API the row came from (subscriptions).",
            "scope": "The scope listed (/subscriptions).",
        },
    },
    "prices": {
        "grain": "one price book entry: an option's rate over an effective period",
        "columns": {
            "option": "defender_servers_p1, defender_servers_p2 (hourly) or a seat option "
            "(mde_for_servers, defender_business_servers, custom).",
            "kind": "hourly (per server-hour) or seat (per server per month).",
            "unit": "Unit of the rate: '1/Hour' or '1/Month'.",
            "rate": "Price per unit after discounts and overrides, in currency.",
            "currency": "ISO 4217 currency of the rate.",
            "effective_from": "First day the rate is in force.",
            "effective_to": "Day the rate stops being in force (exclusive); null: still in force.",
            "source": "Where the rate comes from (list price, Retail Prices API, config).",
        },
    },
    "build_info": {
        "grain": "one row: the build that produced this warehouse",
        "columns": {
            "built_at": "When the warehouse was built (UTC).",
            "lake_fingerprint": "Digest of the lake partitions the build read.",
            "history_start": "Start of the power history the lake holds (UTC).",
            "history_end": "The present as the last collection saw it (UTC).",
            "currency": "Currency the comparisons are priced in.",
            "seat_option": "Seat option compared against per-hour billing.",
            "partial_hours": "How partial hours count: fractional or round_up_clock_hour.",
            "cost_precedence": "How the build picks one cost source where the lake holds more "
            "than one for a subscription and month.",
            "cost_overlaps": "Where sources overlapped: what was counted and what left out (JSON "
            "list, empty when nothing overlapped).",
            "seat_prices": "Seat price overrides from the configuration (JSON).",
            "discounts": "Percent discounts from the configuration (JSON).",
            "seats_owned": "Seats already owned per seat option (JSON).",
            "seat_term": "Seat term priced: annual or monthly.",
            "monthly_term_uplift_percent": "Uplift of a monthly-term seat over an annual one.",
            "seat_reassignment_days": "Days before a seat may move to another server.",
            "mde_component": "MDE component rate per plan from the configuration (JSON; "
            "empty: the P1 rate).",
            "seat_eligibility": "Seat options marked eligible or not (JSON; empty: eligible).",
            "mde_benefit_from": "Day Microsoft approved the MDE benefit (null: none).",
        },
    },
}


def table_comments() -> dict[str, str]:
    """Each warehouse table's grain, for COMMENT ON TABLE."""
    comments = {name: f"Grain: {spec['grain']}." for name, spec in VIEWS.items()}
    comments.update({name: f"Grain: {spec['grain']}." for name, spec in PASS_THROUGH.items()})
    return comments


# Every table with a subscription_id also says the tenant (several tenants share one lake).
TENANT_COLUMN: Final = "tenant_id"
TENANT_COMMENT: Final = (
    "The Entra tenant of the subscription (from `subscriptions`; null when no collection has "
    "listed the subscription)."
)


def column_comments() -> dict[str, dict[str, str]]:
    """Each warehouse column's description, for COMMENT ON COLUMN."""
    comments = {
        name: {column: text for column, (_, text) in spec["columns"].items()}
        for name, spec in VIEWS.items()
    }
    for name, spec in PASS_THROUGH.items():
        columns = spec["columns"]
        assert isinstance(columns, dict)
        comments[name] = dict(columns)
    for columns in comments.values():
        if "subscription_id" in columns and TENANT_COLUMN not in columns:
            columns[TENANT_COLUMN] = TENANT_COMMENT
    return comments


def tenant_tables() -> list[str]:
    """The tables the build gives a tenant_id column (they have a subscription_id)."""
    return [
        name
        for name, columns in column_comments().items()
        if "subscription_id" in columns and name != "subscriptions"
    ]


def markdown() -> str:
    """The data dictionary as Markdown (docs/warehouse.md)."""
    lines = [
        "# The mdecost warehouse: data dictionary",
        "",
        "Generated from the code by `mdecost docs`; a test fails when it is out of date.",
        "All times are UTC, intervals are half-open `[start, end)`, `month` is the first day",
        "of the month, resource ids are lower-cased, and every money column has its currency",
        "beside it.",
        "",
    ]
    grains = table_comments()
    for name, columns in column_comments().items():
        lines += [f"## `{name}`", "", grains[name], "", "| column | meaning |", "| --- | --- |"]
        lines += [f"| `{column}` | {text} |" for column, text in columns.items()]
        lines.append("")
    return "\n".join(lines)
