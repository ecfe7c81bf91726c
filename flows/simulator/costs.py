"""The estate's cost data, row by row as the Cost Management Query API reports it.

Built from the true billable hours and the plan of each machine-day (`plans`) with polars (never
a loop per machine-day): Defender for Servers rows (per machine or per subscription pricing id),
VM compute rows (scale sets on the scale set's id), OS disk and storage account rows, the
deliberate anomalies, and two versions of every day: the incomplete first report and the final,
restated one. The billing cases of issue 11:
- each machine-day is billed on that day's plan; days before an enablement are not billed;
- free-trial days are billed on the standard meter with their hours at cost 0 (mdecost's choice:
  Azure's retail list also has zero-priced "Standard P2 Trial Node" meters, which real cost data
  may use instead);
- from a machine's benefit approval day, the "... - MDATP Benefit" meter at the reduced rate;
- Defender for Servers charged on a Log Analytics workspace (`WorkspaceCharge`);
- a moved machine's move day is billed under the subscription it left, with its new id;
- a subscription's `cost_lag` delays all its rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

import polars as pl

from flows.simulator.catalog import (
    BLOB_GB,
    BLOB_METER,
    BLOB_USD_PER_GB_MONTH,
    DEFENDER_METER_NAME,
    DEFENDER_METER_SUBCATEGORY,
    MDE_BENEFIT_USD_PER_HOUR,
    OS_DISK_METER,
    OS_DISK_USD_PER_MONTH,
    VM_SIZES,
    VM_UNIT,
    meter_id,
)
from flows.simulator.model import (
    MICROSECONDS_PER_HOUR,
    TIMESTAMP,
    OtherCharge,
    SubscriptionSpec,
    WorkspaceCharge,
)
from transforms.billing import (
    DEFENDER_UNIT,
    LIST_PRICE_USD_PER_HOUR,
    MDE_BENEFIT,
    MDE_BENEFIT_METER_SUFFIX,
)

if TYPE_CHECKING:
    from flows.simulator.estate import Estate

# The first report of a day is incomplete (late usage records): this share of the final figure.
PRELIMINARY_SHARE = 0.8
# A day's rows appear when the day is over; the final figures replace them a day later.
FIRST_REPORTED_AFTER = timedelta(days=1)
FINAL_AFTER = timedelta(days=2)

COST_COLUMNS: dict[str, pl.DataType] = {
    "usage_date": pl.Date(),
    "subscription_id": pl.String(),
    "subscription_name": pl.String(),
    "resource_id": pl.String(),
    "resource_group": pl.String(),
    "resource_type": pl.String(),
    "resource_location": pl.String(),
    "meter_category": pl.String(),
    "meter_subcategory": pl.String(),
    "meter": pl.String(),
    "meter_id": pl.String(),
    "service_name": pl.String(),
    "service_tier": pl.String(),
    "charge_type": pl.String(),
    "consumed_service": pl.String(),
    "pricing_model": pl.String(),
    "publisher_type": pl.String(),
    "unit_of_measure": pl.String(),
    "frequency": pl.String(),
    "quantity": pl.Float64(),
    "cost": pl.Float64(),
    "cost_usd": pl.Float64(),
    "currency": pl.String(),
    "tag_pairs": pl.List(pl.String()),
}

# Columns with one value on every row of the simulated (pay-as-you-go, USD) billing account.
_CONSTANT_COLUMNS = {
    "charge_type": "Usage",
    "pricing_model": "OnDemand",
    "publisher_type": "Azure",
    "frequency": "UsageBased",
    "currency": "USD",
}
# The columns each kind of row computes itself; the constant ones and `cost` are added after.
_ROW_COLUMNS = [c for c in COST_COLUMNS if c not in _CONSTANT_COLUMNS and c != "cost"]
# Every Defender meter the simulator bills: each plan's standard meter and its benefit variant.
_DEFENDER_METERS = {
    name + suffix
    for name in DEFENDER_METER_NAME.values()
    for suffix in ("", MDE_BENEFIT_METER_SUFFIX)
}


def last_billed_day(subscription: SubscriptionSpec, clock: datetime) -> date:
    """The last day whose cost rows are reported at `clock`: a day's rows appear
    `FIRST_REPORTED_AFTER` its start, later by the subscription's `cost_lag`."""
    return (clock - FIRST_REPORTED_AFTER - subscription.cost_lag).date()


def _subscription_billing(estate: Estate) -> pl.LazyFrame:
    """Per subscription: its reporting delay and the last day billed by `now`."""
    subscriptions = estate.subscription_specs
    return pl.LazyFrame(
        {
            "subscription_id": [s.subscription_id for s in subscriptions],
            "cost_lag": [s.cost_lag for s in subscriptions],
            "last_billed_day": [last_billed_day(s, estate.now) for s in subscriptions],
        },
        schema={
            "subscription_id": pl.String,
            "cost_lag": pl.Duration("us"),
            "last_billed_day": pl.Date,
        },
    )


def cost_spelling(arm_id: str, style: str) -> str:
    """How Cost Management spells a resource id: all lower-case, or keywords lower-cased only.

    Either way it differs in case from Compute's `resourceGroups/RG-Prod/...`, which is why the
    pipeline compares ids case-insensitively.
    """
    if style == "lower":
        return arm_id.lower()
    parts = arm_id.split("/")
    # ["", "subscriptions", id, "resourceGroups", rg, "providers", ns, type, name, type, name...]
    return "/".join(
        part.lower() if index % 2 == 1 or index == 6 else part for index, part in enumerate(parts)
    )


def _machine_billing(estate: Estate) -> pl.DataFrame:
    """Per machine: the ids and prices its cost rows carry (one Python row per machine)."""
    rows = []
    for timeline in estate.timelines:
        m = timeline.machine
        sub = m.subscription
        style = sub.cost_id_case
        # An Arc machine's compute and disks are not Azure's: only its Defender rows exist.
        size = None if m.arc_provider else VM_SIZES[m.size]
        disk_arm_id = (
            f"/subscriptions/{sub.subscription_id}/resourceGroups/{m.resource_group}"
            f"/providers/Microsoft.Compute/disks/{m.machine_name}_OsDisk_1"
        )
        compute_arm_id = m.scale_set.arm_id if m.scale_set else m.arm_id
        source = m.moved_from.subscription if m.moved_from else None
        rows.append(
            {
                "resource_id": m.arm_id.lower(),
                "subscription_name": sub.display_name,
                "moved_in_on": m.created_at.date() if source else None,
                "moved_from_id": source.subscription_id if source else None,
                "moved_from_name": source.display_name if source else None,
                "charge_target": sub.charge_target,
                "defender_category": sub.meter_category,
                "machine_cost_id": cost_spelling(m.arm_id, style),
                "compute_cost_id": cost_spelling(compute_arm_id, style) if size else None,
                "compute_type": (
                    "microsoft.compute/virtualmachinescalesets"
                    if m.scale_set
                    else "microsoft.compute/virtualmachines"
                ),
                "machine_type": m.resource_type.lower(),
                "disk_cost_id": cost_spelling(disk_arm_id, style) if size else None,
                "resource_group_cost": m.resource_group.lower(),
                "location": m.location,
                "vm_subcategory": size.meter_subcategory(m.os_type) if size else None,
                "vm_meter": size.meter if size else None,
                "vm_usd_per_hour": size.usd_per_hour(m.os_type) if size else None,
                "tag_pairs": [f"{k}:{v}".lower() for k, v in sorted(m.tags.items())],
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "resource_id": pl.String,
            "subscription_name": pl.String,
            "moved_in_on": pl.Date,
            "moved_from_id": pl.String,
            "moved_from_name": pl.String,
            "charge_target": pl.String,
            "defender_category": pl.String,
            "machine_cost_id": pl.String,
            "compute_cost_id": pl.String,
            "compute_type": pl.String,
            "machine_type": pl.String,
            "disk_cost_id": pl.String,
            "resource_group_cost": pl.String,
            "location": pl.String,
            "vm_subcategory": pl.String,
            "vm_meter": pl.String,
            "vm_usd_per_hour": pl.Float64,
            "tag_pairs": pl.List(pl.String),
        },
        orient="row",
    )


def _defender_meter_columns() -> list[pl.Expr]:
    plan = pl.col("plan")
    standard = plan.replace_strict(DEFENDER_METER_NAME, return_dtype=pl.String)
    benefit = pl.col("benefit") == MDE_BENEFIT
    meter = pl.when(benefit).then(standard + MDE_BENEFIT_METER_SUFFIX).otherwise(standard)
    rate = (
        pl.when(benefit)
        .then(plan.replace_strict(MDE_BENEFIT_USD_PER_HOUR, default=None, return_dtype=pl.Float64))
        .otherwise(plan.replace_strict(LIST_PRICE_USD_PER_HOUR, return_dtype=pl.Float64))
    )
    return [
        pl.col("defender_category").alias("meter_category"),
        pl.col("defender_category")
        .replace_strict(DEFENDER_METER_SUBCATEGORY, return_dtype=pl.String)
        .alias("meter_subcategory"),
        meter.alias("meter"),
        meter.replace_strict(
            {name: meter_id(name) for name in _DEFENDER_METERS}, return_dtype=pl.String
        ).alias("meter_id"),
        pl.col("defender_category").alias("service_name"),
        pl.lit("Standard").alias("service_tier"),
        pl.lit("Microsoft.Security").alias("consumed_service"),
        pl.lit(DEFENDER_UNIT).alias("unit_of_measure"),
        # Free-trial days: the hours are billed, at no cost.
        pl.when(pl.col("trial")).then(0.0).otherwise(pl.col("quantity") * rate).alias("cost_usd"),
    ]


def workspace_rows(charges: Sequence[WorkspaceCharge | OtherCharge]) -> pl.LazyFrame:
    """Defender for Servers rows on ids that are not machines (Log Analytics workspaces,
    connectors, directly onboarded servers), ready for the meter columns."""
    frames = [
        pl.LazyFrame({"usage_date": list(c.days)}, schema={"usage_date": pl.Date}).with_columns(
            subscription_id=pl.lit(c.subscription.subscription_id),
            subscription_name=pl.lit(c.subscription.display_name),
            quantity=pl.lit(c.hours_per_day),
            plan=pl.lit(c.plan),
            trial=pl.lit(False),
            benefit=pl.lit(None, dtype=pl.String),
            defender_category=pl.lit(c.subscription.meter_category),
            tag_pairs=pl.lit([], dtype=pl.List(pl.String)),
            resource_id=pl.lit(cost_spelling(c.resource_id, c.subscription.cost_id_case)),
            resource_group=pl.lit(c.resource_group.lower()),
            resource_type=pl.lit(c.resource_type),
            resource_location=pl.lit(c.subscription.location),
        )
        for c in charges
    ]
    if not frames:
        return pl.LazyFrame()
    return pl.concat(frames).with_columns(_defender_meter_columns())


def cost_versions(estate: Estate) -> pl.DataFrame:
    """Every cost row version with the clock interval it is reported in.

    Hours are summed as integer microseconds: float addition depends on order, and a parallel
    group-by would otherwise make the same seed give figures differing in the last digit.
    """
    reporting = _subscription_billing(estate)
    machines = _machine_billing(estate).lazy()
    moved_in = pl.col("usage_date") == pl.col("moved_in_on")
    daily = (
        estate._plans_daily.lazy()
        .join(machines, on="resource_id", how="inner")
        # A machine moved in is billed on its move day under the subscription it left.
        .with_columns(
            subscription_id=pl.when(moved_in)
            .then(pl.col("moved_from_id"))
            .otherwise(pl.col("subscription_id")),
            subscription_name=pl.when(moved_in)
            .then(pl.col("moved_from_name"))
            .otherwise(pl.col("subscription_name")),
        )
        .join(reporting, on="subscription_id", how="inner")
        .filter(pl.col("usage_date") <= pl.col("last_billed_day"))
    )
    billed = daily.filter(pl.col("billable_hours") > 0)
    anomalies = estate.anomalies().lazy()

    defender_hours = billed.filter(pl.col("plan").is_not_null()).rename(
        {"billable_hours": "quantity"}
    )
    missing = anomalies.filter(pl.col("finding") == "billable_not_billed").select(
        "usage_date", "resource_id"
    )
    extra = (
        anomalies.filter(pl.col("finding") == "billed_while_not_billable")
        .select("usage_date", "resource_id", pl.col("billed_hours").alias("quantity"))
        .join(
            daily.drop("billable_hours", "billable_microseconds"),
            on=["usage_date", "resource_id"],
            how="inner",
        )
    )
    defender_columns = [
        "usage_date",
        "subscription_id",
        "subscription_name",
        "quantity",
        "plan",
        "trial",
        "benefit",
        "defender_category",
        "tag_pairs",
        pl.col("machine_cost_id").alias("resource_id"),
        pl.col("resource_group_cost").alias("resource_group"),
        pl.col("machine_type").alias("resource_type"),
        pl.col("location").alias("resource_location"),
    ]
    per_machine = pl.concat(
        [
            defender_hours.filter(pl.col("charge_target") == "machine")
            .join(missing, on=["usage_date", "resource_id"], how="anti")
            .select(defender_columns),
            extra.select(defender_columns),
        ]
    )
    # Only machines covered by the plan that day are in a subscription-level row's quantity
    # (a machine whose own setting is Free is not).
    per_subscription = (
        defender_hours.filter(pl.col("charge_target") == "subscription")
        .group_by(
            "usage_date",
            "subscription_id",
            "subscription_name",
            "plan",
            "trial",
            "benefit",
            "defender_category",
        )
        .agg(quantity=pl.col("billable_microseconds").sum() / MICROSECONDS_PER_HOUR)
        .with_columns(
            resource_id=pl.format(
                "/subscriptions/{}/providers/Microsoft.Security/pricings/VirtualMachines",
                "subscription_id",
            ),
            resource_group=pl.lit(""),
            resource_type=pl.lit("microsoft.security/pricings"),
            resource_location=pl.lit("global"),
            tag_pairs=pl.lit([], dtype=pl.List(pl.String)),
        )
    )
    defender = pl.concat([per_machine, per_subscription], how="diagonal").with_columns(
        _defender_meter_columns()
    )
    if estate.workspace_charges or estate.other_charges:
        workspaces = (
            workspace_rows([*estate.workspace_charges, *estate.other_charges])
            .join(reporting, on="subscription_id", how="inner")
            .filter(pl.col("usage_date") <= pl.col("last_billed_day"))
        )
        defender = pl.concat([defender, workspaces], how="diagonal")

    compute = (
        billed.filter(pl.col("compute_cost_id").is_not_null())
        .group_by(
            "usage_date",
            "subscription_id",
            "subscription_name",
            "compute_cost_id",
            "compute_type",
            "resource_group_cost",
            "location",
            "vm_subcategory",
            "vm_meter",
            "vm_usd_per_hour",
        )
        .agg(
            quantity=pl.col("billable_microseconds").sum() / MICROSECONDS_PER_HOUR,
            tag_pairs=pl.col("tag_pairs").sort_by("resource_id").first(),
        )
        .select(
            "usage_date",
            "subscription_id",
            "subscription_name",
            "quantity",
            "tag_pairs",
            pl.col("compute_cost_id").alias("resource_id"),
            pl.col("resource_group_cost").alias("resource_group"),
            pl.col("compute_type").alias("resource_type"),
            pl.col("location").alias("resource_location"),
            pl.lit("Virtual Machines").alias("meter_category"),
            pl.col("vm_subcategory").alias("meter_subcategory"),
            pl.col("vm_meter").alias("meter"),
            pl.col("vm_meter")
            .replace_strict({s.meter: meter_id(s.meter) for s in VM_SIZES.values()})
            .alias("meter_id"),
            pl.lit("Virtual Machines").alias("service_name"),
            pl.col("vm_subcategory").alias("service_tier"),
            pl.lit("Microsoft.Compute").alias("consumed_service"),
            pl.lit(VM_UNIT).alias("unit_of_measure"),
            (pl.col("quantity") * pl.col("vm_usd_per_hour")).alias("cost_usd"),
        )
    )

    month_share = 1.0 / pl.col("usage_date").dt.days_in_month().cast(pl.Float64)
    disks = daily.filter(pl.col("disk_cost_id").is_not_null()).select(
        "usage_date",
        "subscription_id",
        "subscription_name",
        "tag_pairs",
        month_share.alias("quantity"),
        pl.col("disk_cost_id").alias("resource_id"),
        pl.col("resource_group_cost").alias("resource_group"),
        pl.lit("microsoft.compute/disks").alias("resource_type"),
        pl.col("location").alias("resource_location"),
        pl.lit("Storage").alias("meter_category"),
        pl.lit("Premium SSD Managed Disks").alias("meter_subcategory"),
        pl.lit(OS_DISK_METER).alias("meter"),
        pl.lit(meter_id(OS_DISK_METER)).alias("meter_id"),
        pl.lit("Storage").alias("service_name"),
        pl.lit("Premium SSD Managed Disks").alias("service_tier"),
        pl.lit("Microsoft.Compute").alias("consumed_service"),
        pl.lit("1/Month").alias("unit_of_measure"),
        (month_share * OS_DISK_USD_PER_MONTH).alias("cost_usd"),
    )

    storage = _storage_accounts(estate)

    rows = pl.concat(
        [
            defender.select(_ROW_COLUMNS),
            compute.select(_ROW_COLUMNS),
            disks.select(_ROW_COLUMNS),
            storage.select(_ROW_COLUMNS),
        ],
        how="vertical_relaxed",
    ).with_columns(
        **{name: pl.lit(value) for name, value in _CONSTANT_COLUMNS.items()},
        cost=pl.col("cost_usd"),
    )
    rows = rows.select(list(COST_COLUMNS)).cast(COST_COLUMNS)  # type: ignore[arg-type]

    day_start = pl.col("usage_date").cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    reported = day_start + pl.col("cost_lag")
    lagged = rows.join(reporting.select("subscription_id", "cost_lag"), on="subscription_id")
    final = lagged.with_columns(
        visible_from=reported + FINAL_AFTER, visible_until=pl.lit(None, dtype=TIMESTAMP)
    )
    preliminary = lagged.with_columns(
        quantity=pl.col("quantity") * PRELIMINARY_SHARE,
        cost=pl.col("cost") * PRELIMINARY_SHARE,
        cost_usd=pl.col("cost_usd") * PRELIMINARY_SHARE,
        visible_from=reported + FIRST_REPORTED_AFTER,
        visible_until=reported + FINAL_AFTER,
    )
    return (
        pl.concat([final, preliminary])
        .drop("cost_lag")
        .sort("usage_date", "subscription_id", "resource_id", "meter", "visible_from")
        .collect()
    )


def _storage_accounts(estate: Estate) -> pl.LazyFrame:
    """One log storage account per subscription, billed every day of the window."""
    frames = []
    for sub in estate.subscription_specs:
        days = pl.date_range(
            estate.window_start.date(), last_billed_day(sub, estate.now), eager=True
        )
        account = f"st{sub.subscription_id[:8]}logs"
        arm_id = (
            f"/subscriptions/{sub.subscription_id}/resourceGroups/rg-{account}"
            f"/providers/Microsoft.Storage/storageAccounts/{account}"
        )
        frames.append(
            pl.LazyFrame({"usage_date": days}).with_columns(
                subscription_id=pl.lit(sub.subscription_id),
                subscription_name=pl.lit(sub.display_name),
                resource_id=pl.lit(cost_spelling(arm_id, sub.cost_id_case)),
                resource_group=pl.lit(f"rg-{account}"),
                resource_type=pl.lit("microsoft.storage/storageaccounts"),
                resource_location=pl.lit(sub.location),
                meter_category=pl.lit("Storage"),
                meter_subcategory=pl.lit("General Block Blob v2"),
                meter=pl.lit(BLOB_METER),
                meter_id=pl.lit(meter_id(BLOB_METER)),
                service_name=pl.lit("Storage"),
                service_tier=pl.lit("General Block Blob v2"),
                consumed_service=pl.lit("Microsoft.Storage"),
                unit_of_measure=pl.lit("1 GB/Month"),
                quantity=BLOB_GB / pl.col("usage_date").dt.days_in_month().cast(pl.Float64),
                tag_pairs=pl.lit([], dtype=pl.List(pl.String)),
            )
        )
    return pl.concat(frames).with_columns(cost_usd=pl.col("quantity") * BLOB_USD_PER_GB_MONTH)
