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

from transforms.tags import TAG_DTYPE

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
            "provider": (
                pl.String(),
                "Where the server runs: azure (VMs, scale-set instances), on_premises, aws, gcp "
                "(Arc machines: Hybrid Compute's cloudMetadata.provider, else "
                "detectedProperties.cloudprovider; AWS EC2 and GCP instances a Defender for "
                "Cloud connector protects are auto-provisioned Arc machines). Null for an Arc "
                "machine no inventory snapshot listed.",
            ),
            "created_at": (
                UTC_TIMESTAMP,
                "Creation time: timeCreated from Compute (Arc: systemData.createdAt), else the "
                "start of the creating write in the Activity Log; null if unknown (created "
                "before the events window).",
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
            "tags": (
                TAG_DTYPE,
                "Tags as Cost Management's tag inheritance sees them (a DuckDB MAP, "
                "tags['CostCenter']): the machine's own (a scale-set instance's as Compute "
                "lists it), plus its resource group's for every name it lacks (names compared "
                "without case, the machine's value wins); empty for machines seen only in "
                "events. From the latest inventory snapshot.",
            ),
        },
    },
    "power_intervals": {
        "grain": "machine x interval of constant power state, half-open [start_at, end_at); "
        "a whole scale set's operations (start, deallocate, powerOff, restart, delete, logged on "
        "the set's id) act on every instance that existed when they started",
        "columns": {
            "resource_id": (pl.String(), "Lower-cased machine resource id."),
            "state": (
                pl.String(),
                "Power state: creating, starting, running, stopping, stopped, deallocating, "
                "deallocated, deleting; Arc machines: connected, disconnected, error, expired "
                "(Hybrid Compute status); unknown if the inventory had no power state. An Arc "
                "machine exists from its registration (Hybrid Compute write, or "
                "systemData.createdAt) to its delete, but the Activity Log logs no heartbeats: "
                "each "
                "daily inventory snapshot gives its status and lastStatusChange, when that "
                "status began, so the last change before each snapshot is exact and any "
                "earlier change since the previous snapshot is not seen (a disconnection that "
                "began and ended between two snapshots is invisible). Gap assumption: between "
                "two pieces of evidence the earlier status holds until the next "
                "lastStatusChange (a status that began and ended unseen counts for nothing); "
                "before a machine's first change (from its creation, systemData.createdAt) it "
                "was connected, except that an Expired status was Disconnected for the 45 days "
                "before it.",
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
            "benefit": (
                pl.String(),
                "Meter variant: mde for 'Standard P1/P2 Node - MDATP Benefit' (the Defender for "
                "Endpoint for Servers benefit, already discounted), any other variant's text, "
                "null for the standard meter.",
            ),
            "billed_hours": (
                pl.Float64(),
                "Billed quantity in hours (consumed quantity, or its share when allocated).",
            ),
            "billed_cost": (pl.Float64(), "Billed cost (or its share when allocated)."),
            "currency": (pl.String(), "Billing currency of billed_cost."),
            "attribution": (
                pl.String(),
                "resource: charged on the machine's id; allocated: a share of a subscription-"
                "level (or scale-set-level) charge, in proportion to billable hours that day, "
                "among the machines that plan covered that day; unattributed: on no machine "
                "(see attribution_detail), counted in the fleet's billed cost only.",
            ),
            "attribution_detail": (
                pl.String(),
                "Why: machine, subscription_pricing, scale_set, no_covered_machine (a pooled "
                "charge with no billable machine covered by its plan that day), unknown_machine "
                "(a VM, scale-set instance or Arc machine id never collected), connector (a "
                "Defender for Cloud multicloud connector's id), direct_onboarding (a server "
                "onboarded directly through Defender for Endpoint: the cost row names it by a "
                "non-ARM id, its name or MDE device id; an unconfirmed reading, see "
                "transforms/billing.py), non_machine_resource (a workspace, another resource), "
                "no_resource_id.",
            ),
            "charged_resource_id": (
                pl.String(),
                "Lower-cased id the cost rows carried (the machine, the pool, or the "
                "unattributed resource); null if none.",
            ),
        },
    },
    "machine_plans_daily": {
        "grain": "machine x UTC day (the days of machine_hours_daily, plus days a machine with no "
        "power timeline was charged)",
        "columns": {
            "usage_date": (pl.Date(), "UTC day."),
            "resource_id": (pl.String(), "Lower-cased machine resource id."),
            "subscription_id": (pl.String(), "Subscription of the machine."),
            "plan": (
                pl.String(),
                "Defender for Servers plan covering the machine that day (P1, P2); null = not "
                "covered (off, Free, or before the plan's enablementTime day).",
            ),
            "plan_source": (
                pl.String(),
                "Evidence, strongest first: billed (the meter billed to the machine that day), "
                "pricings_history (the pricings snapshot in force that day: resource, then "
                "scale set, then subscription setting), earliest_snapshot (a day before the "
                "first snapshot: that snapshot, assumed in force back to its enablementTime); "
                "null = no evidence.",
            ),
            "trial": (
                pl.Boolean(),
                "A covered day of the subscription's free trial (30 days from first enablement, "
                "end read from freeTrialRemainingTime): priced at 0, never billable_not_billed.",
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
                "Plan shown for the month: the plan of machine_plans_daily on most of its "
                "billable days (then most covered days; a tie goes to P2); null = not covered "
                "on any day of the month.",
            ),
            "plan_days_p1": (pl.Int64(), "Days of the month covered by P1."),
            "plan_days_p2": (pl.Int64(), "Days of the month covered by P2."),
            "trial_days": (pl.Int64(), "Covered days inside the free trial (priced at 0)."),
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
                "Each covered day's billable hours priced at that day's plan and rate (trial "
                "days at 0, uncovered days not at all); null if no plan (or the price book has "
                "no rate for some covered day).",
            ),
            "mde_component_cost": (
                pl.Float64(),
                "The MDE part of hourly_cost: covered, non-trial billable hours x the day's MDE "
                "component rate ([pricing.mde_component], default the P1 rate); what an MDE "
                "seat would replace.",
            ),
            "seat_option": (pl.String(), "Seat licensing option compared against."),
            "seat_cost": (
                pl.Float64(),
                "One seat for the month, at the rate in force on the month's first day (a seat "
                "is bought for the whole month), at the configured seat term.",
            ),
            "per_hour_savings": (
                pl.Float64(),
                "seat_cost - mde_component_cost: positive means paying the MDE part by the hour "
                "is cheaper than a seat (like for like: the plan's other features are paid by "
                "the hour either way).",
            ),
            "break_even_utilization": (
                pl.Float64(),
                "seat_cost / (MDE component rate x hours_in_month, the rate summed day by day): "
                "the utilization above which a seat is cheaper for the MDE part.",
            ),
            "cheaper": (
                pl.String(),
                "per_hour or per_seat for the MDE part (ties: per_hour); null if no plan.",
            ),
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
                "Machines with billable time on days a plan covered them (one seat each).",
            ),
            "peak_concurrent_machines": (
                pl.Int64(),
                "Most covered machines billable in the same clock hour. Not licensable: a lower "
                "bound (seats are reassignable only every 90 days; see licensing_options_monthly).",
            ),
            "billable_hours": (pl.Float64(), "Billable hours of the covered machines."),
            "hourly_cost": (pl.Float64(), "Their billable hours priced at the rates in force."),
            "billed_cost": (
                pl.Float64(),
                "Every Defender for Servers charge in scope, unattributed included, in currency.",
            ),
            "unattributed_cost": (
                pl.Float64(),
                "The part of billed_cost on no machine (defender_charges_daily attribution "
                "unattributed).",
            ),
            "machines_with_mde_benefit": (
                pl.Int64(),
                "Covered machines billed on an MDE benefit meter in the month.",
            ),
            "seat_option": (pl.String(), "Seat licensing option compared against."),
            "seat_cost_distinct": (pl.Float64(), "machines_distinct x seat price."),
            "seat_cost_peak": (
                pl.Float64(),
                "peak_concurrent_machines x seat price. Not licensable: a lower bound.",
            ),
            "currency": (pl.String(), "Currency of every money column."),
        },
    },
    "licensing_options_monthly": {
        "grain": "month x scope (a subscription, or the estate: subscription_id null) x plan x "
        "option x seat option x seat rule: every figure a report states, like for like",
        "columns": {
            "month": (pl.Date(), "First day of the month."),
            "subscription_id": (pl.String(), "Subscription; null for the estate."),
            "plan": (pl.String(), "The Defender for Servers plan of the machines priced: P1, P2."),
            "option": (
                pl.String(),
                "billed (the charges as billed), hourly_list (billable hours x list rate), "
                "seats_plus_hourly_remainder (keep Defender for Servers, bring MDE seats: seats "
                "x seat price + hours x (plan rate - MDE component rate)), seats_only "
                "(Defender for Servers off, seats alone), p1_instead_of_p2 (P2 hours at the P1 "
                "rate).",
            ),
            "seat_option": (
                pl.String(),
                "Seat product of the seat options (mde_for_servers, defender_business_servers); "
                "null otherwise.",
            ),
            "seat_rule": (
                pl.String(),
                "per_machine (a seat per covered machine with billable time in the month) or "
                "reassign_<N>d (seats fixed per block of calendar months at least "
                "seat_reassignment_days long, 90 days: quarters; licensable); null for hourly "
                "options.",
            ),
            "machines": (
                pl.Int64(),
                "Machines with billable time on days this plan covered them in the month.",
            ),
            "seats": (pl.Int64(), "Seats the seat rule counts; null for hourly options."),
            "billable_hours": (pl.Float64(), "Their billable hours on those days."),
            "cost": (
                pl.Float64(),
                "What the option costs for the month, in currency (seats at the configured "
                "term's price of the month's first day).",
            ),
            "billed": (pl.Float64(), "The billed Defender for Servers cost of those machines."),
            "cost_vs_billed": (
                pl.Float64(),
                "cost - billed: negative means the option would have cost less than the bill.",
            ),
            "month_complete": (
                pl.Boolean(),
                "False for the month in progress and for a month whose cost data has not "
                "reached its last day (the scope's own last billed day): not for headlines.",
            ),
            "eligible": (
                pl.Boolean(),
                "False when a rule excludes the option ([pricing.seat_eligibility], the "
                "60-server cap of Defender for Business servers).",
            ),
            "eligibility_note": (
                pl.String(),
                "What the option assumes, needs and loses, in words.",
            ),
            "currency": (pl.String(), "Currency of every money column."),
        },
    },
    "showback_monthly": {
        "grain": "month x group key ([report] group_by: subscription, management_group, "
        "resource_group, tag:<name>) x group: the Defender for Servers bill by whose machines "
        "it was; the rows of one month and key add up to the estate's billed_cost",
        "columns": {
            "month": (pl.Date(), "First day of the month."),
            "group_key": (
                pl.String(),
                "The grouping, as configured: subscription, management_group, resource_group or "
                "tag:<name> (the tag's name matched without case).",
            ),
            "group_kind": (
                pl.String(),
                "value (machines with a value for the key), missing (machines without the tag: "
                "untagged cost, a group of its own; under management_group, subscriptions with "
                "no known management group path) or unattributed (charges on no machine; under "
                "subscription and management_group they belong to their subscription's group).",
            ),
            "group_value": (
                pl.String(),
                "The tag value, resource group, subscription or management group path (e.g. "
                "'Tenant Root Group / Production', as subscriptions.management_group_path); "
                "null for missing and unattributed.",
            ),
            "machines": (
                pl.Int64(),
                "Machines (machine_key) with billable hours or charges in the group that month "
                "(a VM moved during the month counts in the groups of both its ids; under "
                "management_group, the sum of its subscriptions' counts: a VM moved between two "
                "subscriptions of one management group counts twice).",
            ),
            "billable_hours": (pl.Float64(), "Their billable hours."),
            "billed_cost": (
                pl.Float64(),
                "Defender for Servers charges attributed to the group's machines (on their ids "
                "and their allocated shares), or the unattributed charges.",
            ),
            "allocated_cost": (
                pl.Float64(),
                "Of billed_cost, the shares of subscription-level (or scale-set-level) charges "
                "allocated to the group's machines by billable hours.",
            ),
            "like_for_like_cost": (
                pl.Float64(),
                "Keeping the plan with one MDE seat per machine with covered billable hours: "
                "seat_cost + hourly_cost - mde_component_cost of licensing_comparison_monthly.",
            ),
            "currency": (pl.String(), "Currency of every money column."),
        },
    },
    "findings": {
        "grain": "finding: machine x month x kind (estate x month for mde_benefit_unclaimed; "
        "subscription x month for a subscription's cost_anomaly and plan_changed; showback "
        "group x month for a group's cost_anomaly)",
        "columns": {
            "resource_id": (
                pl.String(),
                "Machine concerned; null for subscription-wide, group and estate-wide findings.",
            ),
            "subscription_id": (
                pl.String(),
                "Its subscription (the subscription of a subscription-wide finding); null for "
                "showback group and estate-wide findings.",
            ),
            "month": (pl.Date(), "First day of the month."),
            "finding": (
                pl.String(),
                "billed_while_not_billable (a machine with a power timeline billed more hours "
                "than it was billable that day; never a charge on no machine), "
                "billable_not_billed (billable on a covered, non-trial day with no charge, up "
                "to its subscription's own last billed day), no_mde_sensor, "
                "mde_benefit_unclaimed (MDE seats owned while machines pay the full rate, no "
                "MDATP benefit meter), mde_benefit_not_applied (full-rate meters after the "
                "configured benefit approval day), stopped_allocated (billable while stopped "
                "but allocated: deallocating would not be billed), defender_off, "
                "duplicate_onboarding (an Arc machine also charged, the same days, as a server "
                "of its name onboarded directly through Defender for Endpoint), cost_anomaly (a "
                "complete month's billed cost of a subscription or showback group moved more than "
                "[report] anomaly_threshold_percent against the median of the 3 months before it "
                "without a matching change in billable hours; the figures in detail) or "
                "plan_changed (a machine's plan, or a subscription's for at least half its "
                "machines on one day, changed from the day before). A day's "
                "billed and billable hours closer than 0.01 h (fractional hours) or 1 h (whole "
                "clock hours) agree.",
            ),
            "detail": (
                pl.String(),
                "What was seen, in words and figures (billable_not_billed: the cost-data "
                "cut-off it was judged through: the subscription's last billed day when it "
                "falls in the finding's month, else the month's last day).",
            ),
            "amount": (
                pl.Float64(),
                "Money at stake: the excess's share of the billed cost, the unbilled or stopped "
                "hours at each day's plan rate, the month's hourly_cost, or the MDE component "
                "that the benefit would discount, the directly onboarded duplicate's charges; "
                "for cost_anomaly what billable hours do not "
                "explain (billed - median billed x hours / median hours; null for a showback "
                "group, whose money its subscriptions' findings count); null for defender_off "
                "and plan_changed.",
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
    return exact_sum(pl.col(column)).cast(pl.Float64)


def exact_sum(values: pl.Expr) -> pl.Expr:
    """The decimal sum of `values`, before `order_free_sum` turns it back into a float: partial
    sums kept as decimals add up later (per machine, then per scope) to exactly the one sum."""
    return values.cast(pl.Decimal(38, ORDER_FREE_SUM_PLACES)).sum()


def exact_sum_or_null(column: str) -> pl.Expr:
    """`exact_sum` of `column`, null when any part is null: a missing rate must not look like
    a cheap month."""
    return pl.when(pl.col(column).is_null().any()).then(None).otherwise(exact_sum(pl.col(column)))


def order_free_sum_or_null(column: str) -> pl.Expr:
    """`order_free_sum` of `column`, null when any part is null."""
    return exact_sum_or_null(column).cast(pl.Float64)


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
