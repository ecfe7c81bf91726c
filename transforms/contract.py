"""The warehouse contract: every view's grain, columns, polars types and one-line descriptions.

FinOps analysts write SQL against these names, so they are declared once, here, and every
transform ends with `conform_view`, which refuses a frame whose columns or types drift from the
declaration instead of casting silently. The data dictionary is generated from `VIEWS`.

Conventions (DESIGN.md): times are UTC, intervals half-open `[start, end)`, `month` is the first
day of the month, resource ids are lower-cased, every money column has a `currency` beside it.
Columns beyond DESIGN.md's key columns (`machine_key`, `vm_id`, ...) are documented additions.
"""

from __future__ import annotations

from typing import Final, TypedDict

import polars as pl

UTC_TIMESTAMP: Final = pl.Datetime("us", "UTC")


class ViewSpec(TypedDict):
    grain: str
    columns: dict[str, tuple[pl.DataType, str]]


VIEWS: Final[dict[str, ViewSpec]] = {
    "machines": {
        "grain": "one row per machine resource id; a VM moved to another resource group or "
        "subscription has one row per id, sharing its machine_key",
        "columns": {
            "resource_id": (pl.String(), "Lower-cased ARM resource id of the machine."),
            "machine_key": (
                pl.String(),
                "One key per physical machine: the VM's vmId when known (it survives a move), "
                "else the resource id.",
            ),
            "subscription_id": (pl.String(), "Lower-cased subscription GUID the id lives in."),
            "resource_group": (pl.String(), "Lower-cased resource group name."),
            "machine_name": (
                pl.String(),
                "Machine name (from the id, lower-cased, for machines seen only in events).",
            ),
            "machine_kind": (pl.String(), "vm, vmss_instance or arc."),
            "vm_id": (pl.String(), "Azure vmId (null for machines seen only in events)."),
            "scale_set_name": (pl.String(), "Scale set of a vmss_instance, else null."),
            "location": (pl.String(), "Azure region."),
            "size": (pl.String(), "VM size (SKU)."),
            "os_type": (pl.String(), "Windows or Linux."),
            "created_at": (
                UTC_TIMESTAMP,
                "Creation time: timeCreated from Compute, else the start of the creating write "
                "in the Activity Log; null if unknown (created before the events window).",
            ),
            "deleted_at": (
                UTC_TIMESTAMP,
                "Time the delete operation succeeded; null while the machine exists.",
            ),
            "moved_at": (
                UTC_TIMESTAMP,
                "When this id was superseded by another id with the same vmId (a move); null "
                "otherwise. Billable time after it counts on the new id.",
            ),
            "other_resource_ids": (
                pl.List(pl.String()),
                "The machine's other resource ids (before or after a move); empty if none.",
            ),
            "last_seen_at": (
                UTC_TIMESTAMP,
                "Latest inventory snapshot that listed this id; null for machines seen only in "
                "the Activity Log and cost data (deleted before any snapshot).",
            ),
            "mde_sensor": (
                pl.Boolean(),
                "True if the MDE.Windows / MDE.Linux extension is installed; null if unknown. "
                "A machine no inventory snapshot listed (deleted before mdecost's first run, "
                "known only from its Activity Log events, e.g. from [history]) has no "
                "extension list: its sensor is unknown (null), never a no_mde_sensor finding.",
            ),
            "defender_plan": (
                pl.String(),
                "Defender for Servers plan now in force from the pricings snapshot (P1, P2; "
                "a resource-level setting beats the subscription's); null = off. For a machine "
                "deleted before the first snapshot only its subscription's plan is known here; "
                "the plan it was billed under comes from its charges "
                "(licensing_comparison_monthly.plan).",
            ),
        },
    },
    "power_intervals": {
        "grain": "machine x interval of constant power state, half-open [start_at, end_at)",
        "columns": {
            "resource_id": (pl.String(), "Lower-cased machine resource id."),
            "state": (
                pl.String(),
                "Power state: creating, starting, running, stopping, stopped, deallocating, "
                "deallocated, deleting (Arc: connected, disconnected, ...; unknown if the "
                "inventory had no power state).",
            ),
            "start_at": (UTC_TIMESTAMP, "Interval start (inclusive)."),
            "end_at": (UTC_TIMESTAMP, "Interval end (exclusive)."),
            "billable": (
                pl.Boolean(),
                "True if Defender for Servers bills this state (running, stopping, stopped; "
                "Arc: connected).",
            ),
        },
    },
    "machine_hours_daily": {
        "grain": "machine x UTC day on which the machine existed",
        "columns": {
            "usage_date": (pl.Date(), "UTC day."),
            "resource_id": (pl.String(), "Lower-cased machine resource id."),
            "subscription_id": (pl.String(), "Subscription of the machine."),
            "billable_hours": (
                pl.Float64(),
                "Billable hours that day: fractional by default, or whole started clock hours "
                "with partial_hours = round_up_clock_hour; 0 if it existed but was not billable.",
            ),
        },
    },
    "defender_charges_daily": {
        "grain": "machine x day x plan x attribution (unattributed rows: subscription x day x "
        "plan, resource_id null)",
        "columns": {
            "usage_date": (pl.Date(), "UTC day of the charge."),
            "subscription_id": (pl.String(), "Subscription charged (null if unknown)."),
            "resource_id": (pl.String(), "Machine the charge is attributed to; null if none."),
            "plan": (pl.String(), "Defender for Servers plan: P1 or P2."),
            "billed_hours": (
                pl.Float64(),
                "Billed quantity in hours (consumed quantity, or its share when allocated).",
            ),
            "billed_cost": (pl.Float64(), "Billed cost (or its share when allocated)."),
            "currency": (pl.String(), "Billing currency of billed_cost."),
            "attribution": (
                pl.String(),
                "resource: charged on the machine's id; allocated: a share of a subscription-"
                "level (or scale-set-level) charge, in proportion to billable hours that day; "
                "unattributed: could not be split (no billable machine that day).",
            ),
        },
    },
    "licensing_comparison_monthly": {
        "grain": "machine (machine_key) x month",
        "columns": {
            "month": (pl.Date(), "First day of the month."),
            "subscription_id": (pl.String(), "Subscription of the machine's id that month."),
            "resource_id": (
                pl.String(),
                "The machine's resource id that month (the latest one if it moved).",
            ),
            "machine_key": (pl.String(), "One key per physical machine (see machines)."),
            "machine_name": (pl.String(), "Machine name."),
            "machine_kind": (pl.String(), "vm, vmss_instance or arc."),
            "plan": (
                pl.String(),
                "Plan that month: the plan with most billed hours, else the pricings snapshot; "
                "null = not covered by Defender for Servers.",
            ),
            "billable_hours": (pl.Float64(), "Billable hours in the month (sum of daily)."),
            "hours_in_month": (pl.Int64(), "Days in the month x 24."),
            "utilization": (pl.Float64(), "billable_hours / hours_in_month."),
            "billed_hours": (
                pl.Float64(),
                "Defender hours billed to the machine (resource + allocated), in `currency`.",
            ),
            "billed_cost": (pl.Float64(), "Defender cost billed to the machine, in `currency`."),
            "hourly_cost": (
                pl.Float64(),
                "Billable hours priced at the plan's rate in force each day; null if no plan "
                "(or the price book has no rate for some day).",
            ),
            "seat_option": (pl.String(), "Seat licensing option compared against."),
            "seat_cost": (
                pl.Float64(),
                "One seat's price for the month (a day-weighted mean if the price changed).",
            ),
            "per_hour_savings": (
                pl.Float64(),
                "seat_cost - hourly_cost: positive means per-hour billing is cheaper.",
            ),
            "break_even_utilization": (
                pl.Float64(),
                "seat_cost / (hourly rate x hours_in_month): the utilization above which a seat "
                "is cheaper.",
            ),
            "cheaper": (pl.String(), "per_hour or per_seat (ties: per_hour); null if no plan."),
            "currency": (pl.String(), "Currency of every money column."),
        },
    },
    "fleet_comparison_monthly": {
        "grain": "subscription x month, plus one row per month with subscription_id null for the "
        "whole estate (a machine moved between subscriptions counts in both subscriptions, once "
        "in the estate)",
        "columns": {
            "month": (pl.Date(), "First day of the month."),
            "subscription_id": (pl.String(), "Subscription; null for the estate row."),
            "machines_distinct": (
                pl.Int64(),
                "Covered machines with billable time in the month (one seat each).",
            ),
            "peak_concurrent_machines": (
                pl.Int64(),
                "Most covered machines billable in the same clock hour (seats if reassignable).",
            ),
            "billable_hours": (pl.Float64(), "Billable hours of the covered machines."),
            "hourly_cost": (pl.Float64(), "Their billable hours priced at the rates in force."),
            "billed_cost": (
                pl.Float64(),
                "Every Defender for Servers charge in scope, unattributed included, in currency.",
            ),
            "seat_option": (pl.String(), "Seat licensing option compared against."),
            "seat_cost_distinct": (pl.Float64(), "machines_distinct x seat price."),
            "seat_cost_peak": (pl.Float64(), "peak_concurrent_machines x seat price."),
            "currency": (pl.String(), "Currency of every money column."),
        },
    },
    "findings": {
        "grain": "finding: machine x month x kind (estate x month for double_licensed)",
        "columns": {
            "resource_id": (pl.String(), "Machine concerned; null for estate-wide findings."),
            "subscription_id": (pl.String(), "Its subscription; null for estate-wide findings."),
            "month": (pl.Date(), "First day of the month."),
            "finding": (
                pl.String(),
                "billed_while_not_billable, billable_not_billed, no_mde_sensor, "
                "double_licensed or defender_off.",
            ),
            "detail": (pl.String(), "What was seen, in words and figures."),
            "amount": (
                pl.Float64(),
                "Money at stake (see the data dictionary per finding); null for defender_off.",
            ),
            "currency": (pl.String(), "Currency of amount."),
        },
    },
}


class ContractError(ValueError):
    """A transform produced a frame that does not match its view's declared columns."""


# Sums that must not depend on row order are added as decimals with this many places: exactly,
# so in any order. Each value is rounded to 1e-12 first, far below a cent or a second.
ORDER_FREE_SUM_PLACES: Final = 12


def order_free_sum(column: str) -> pl.Expr:
    """The sum of `column`, the same to the last bit whatever order the rows arrive in.

    Polars adds a large group in parallel pieces, in no fixed order, so a float sum can differ
    in its last bits between two builds of the same lake (and sorting first does not help: the
    optimiser drops a sort before a sum). Decimal addition is exact, hence order-free.
    """
    return pl.col(column).cast(pl.Decimal(38, ORDER_FREE_SUM_PLACES)).sum().cast(pl.Float64)


def view_schema(view: str) -> pl.Schema:
    """The polars schema of `view`, in contract column order."""
    return pl.Schema({name: dtype for name, (dtype, _) in VIEWS[view]["columns"].items()})


def empty_view(view: str) -> pl.LazyFrame:
    """A frame with the view's columns and no rows."""
    return pl.LazyFrame(schema=view_schema(view))


def conform_view(frame: pl.LazyFrame, view: str) -> pl.LazyFrame:
    """Select `view`'s columns in contract order, or raise ContractError naming the drift.

    The check runs on the lazy schema (no data is read). A column whose type polars could not
    infer (all-null, `pl.Null`) is cast to the declared type; any other mismatch is an error.
    """
    expected = view_schema(view)
    actual = frame.collect_schema()
    if missing := [name for name in expected if name not in actual]:
        raise ContractError(f"view {view}: missing column(s) {', '.join(missing)}")
    if unexpected := [name for name in actual if name not in expected]:
        raise ContractError(f"view {view}: unexpected column(s) {', '.join(unexpected)}")
    columns = []
    for name, dtype in expected.items():
        if actual[name] == pl.Null:
            columns.append(pl.col(name).cast(dtype))
        elif actual[name] != dtype:
            raise ContractError(f"view {view}: column {name} is {actual[name]}, expected {dtype}")
        else:
            columns.append(pl.col(name))
    return frame.select(columns)
