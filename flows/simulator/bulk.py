"""A large simulated estate written straight into the lake, for benchmarks (no HTTP, no SDK).

`Estate.generate` builds every machine's timeline in Python, which is right for the served
estate (its ground truth is exact and hand-checkable) but takes minutes at 100,000 machines.
This module draws the same kinds of data with numpy, a subscription at a time, and writes them
through `flows.lake.write_partition` in the raw lake schemas, partitioned as the collectors do:
inventory and pricings per snapshot date x subscription, power events per month x subscription,
Query API cost rows per month x subscription x cost type.

The estate: subscriptions of ~100-400 machines; VMs, scale-set instances and Azure Arc machines
(`ARC_SHARE`, on premises, in AWS or in GCP, Connected all window: no events, billed like the
always-on VMs, no compute rows); four usage
profiles (always on with the odd restart, office hours on weekdays, sporadic runs some days,
created or deleted inside the window); each operation logged as Started, Accepted (not for a
write) and Succeeded under one correlation id. Cost rows follow from the same timelines by the
billing rule the transforms apply (billable while running, stopping or stopped; Defender billed
hours x the plan's list rate; VM compute for the same hours), with a few Defender rows left out
so that findings have something to find.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import numpy as np
import polars as pl
import pyarrow as pa

from flows.lake import write_partition
from transforms.billing import LIST_PRICE_USD_PER_HOUR, OPERATION_PATHS, subscription_pricing_id
from transforms.schemas import DATASETS

MICROSECONDS_PER_SECOND: Final = 1_000_000
MICROSECONDS_PER_HOUR: Final = 3_600 * MICROSECONDS_PER_SECOND
MICROSECONDS_PER_DAY: Final = 24 * MICROSECONDS_PER_HOUR
MACHINES_PER_SUBSCRIPTION: Final = 250
# Share of machines per usage profile.
PROFILES: Final = {
    "always_on": 0.55,
    "office_hours": 0.25,
    "sporadic": 0.14,
    "created": 0.03,
    "deleted": 0.03,
}
SPORADIC_DAY_PROBABILITY: Final = 0.25
# Defender rows left out of the cost data (billable hours nobody was billed for).
MISSING_DEFENDER_ROW_RATE: Final = 0.002
# (size, meter subcategory, meter, USD per hour): pay-as-you-go list prices, rounded.
VM_SIZES: Final = (
    ("Standard_B2ms", "BS Series", "B2ms", 0.0832),
    ("Standard_D2s_v5", "Dsv5 Series", "D2s v5", 0.096),
    ("Standard_D4s_v5", "Dsv5 Series", "D4s v5", 0.192),
    ("Standard_E4s_v5", "Esv5 Series", "E4s v5", 0.252),
    ("Standard_F8s_v2", "FSv2 Series", "F8s v2", 0.338),
)
LOCATIONS: Final = ("westeurope", "northeurope", "uksouth", "eastus2")
# Share of the non-scale-set machines that are Azure Arc machines, and where they run.
ARC_SHARE: Final = 0.1
ARC_PROVIDERS: Final = ("on_premises", "aws", "gcp")
RESOURCE_GROUPS: Final = ("rg-prod-web", "rg-prod-data", "rg-devtest", "rg-batch", "rg-sandbox")
# (tier, sub plan, share of subscriptions)
PLANS: Final = (("Standard", "P2", 0.7), ("Standard", "P1", 0.2), ("Free", None, 0.1))
# Operation -> (is billable while it runs, is billable after it succeeds). Restart keeps the
# machine running; a creating write is `creating` (not billable) then `running`.
_BILLABLE: Final = {
    "start": (False, True),
    "deallocate": (False, False),
    "power_off": (True, True),
    "restart": (True, True),
    "write": (False, True),
    "delete": (False, False),
}
TIMESTAMP: Final = pl.Datetime("us", "UTC")


@dataclass(frozen=True)
class BulkSummary:
    machines: int
    subscriptions: int
    window_start: datetime
    now: datetime
    rows: dict[str, int]
    files: int

    def line(self) -> str:
        rows = ", ".join(f"{name} {count:,}" for name, count in self.rows.items())
        return (
            f"{self.machines:,} machines in {self.subscriptions} subscriptions, "
            f"{self.window_start:%Y-%m-%d} .. {self.now:%Y-%m-%d}: {rows} ({self.files} files)"
        )


def _micros(instant: datetime) -> int:
    return (instant - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _month_starts(window_start: datetime, now: datetime) -> list[datetime]:
    months, cursor = [], window_start
    while cursor < now:
        months.append(cursor)
        cursor = (cursor + timedelta(days=32)).replace(day=1)
    return months


def _uuids(rng: np.random.Generator, count: int) -> pa.Array:
    """`count` random UUID-shaped strings, built as one byte matrix (no loop per id)."""
    hex_digits = np.frombuffer(rng.bytes(16 * count).hex().encode(), dtype=np.uint8)
    matrix = np.full((count, 36), ord("-"), dtype=np.uint8)
    digits = hex_digits.reshape(count, 32)
    matrix[:, 0:8], matrix[:, 9:13], matrix[:, 14:18] = (
        digits[:, 0:8],
        digits[:, 8:12],
        digits[:, 12:16],
    )
    matrix[:, 19:23], matrix[:, 24:36] = digits[:, 16:20], digits[:, 20:32]
    return pa.array(matrix.view("S36").ravel()).cast(pa.string())


def _subscription_sizes(rng: np.random.Generator, machines: int) -> np.ndarray:
    count = max(1, round(machines / MACHINES_PER_SUBSCRIPTION))
    weights = rng.uniform(0.4, 1.6, count)
    sizes = np.floor(weights / weights.sum() * machines).astype(np.int64)
    sizes[: machines - sizes.sum()] += 1
    return sizes


def _machines(
    rng: np.random.Generator, subscription_id: str, count: int, first: int, window: tuple[int, int]
) -> pl.DataFrame:
    """One row per machine of one subscription: identity, size, profile and lifetime."""
    start, now = window
    index = np.arange(first, first + count)
    is_vmss = rng.random(count) < 0.2
    is_arc = ~is_vmss & (rng.random(count) < ARC_SHARE)
    arc_provider = np.array(ARC_PROVIDERS)[rng.integers(0, len(ARC_PROVIDERS), count)]
    groups = np.array(RESOURCE_GROUPS)[rng.integers(0, len(RESOURCE_GROUPS), count)]
    scale_sets = np.char.add("vmss-", (index // 50).astype(str))
    names = np.char.add("vm-", np.char.zfill(index.astype(str), 6))
    base = np.char.add(f"/subscriptions/{subscription_id}/resourcegroups/", groups)
    vm_ids = np.char.add(np.char.add(base, "/providers/microsoft.compute/virtualmachines/"), names)
    arc_ids = np.char.add(np.char.add(base, "/providers/microsoft.hybridcompute/machines/"), names)
    vmss_ids = np.char.add(
        np.char.add(
            np.char.add(base, "/providers/microsoft.compute/virtualmachinescalesets/"), scale_sets
        ),
        np.char.add("/virtualmachines/", (index % 50).astype(str)),
    )
    profile = np.where(is_arc, "arc", rng.choice(list(PROFILES), count, p=list(PROFILES.values())))
    lifetime = rng.integers(start + MICROSECONDS_PER_DAY, now - MICROSECONDS_PER_DAY, count)
    size = rng.integers(0, len(VM_SIZES), count)
    windows = rng.random(count) < 0.4
    sensor = rng.random(count) < 0.6
    return pl.DataFrame(
        {
            "machine": index,
            "resource_id": np.where(is_vmss, vmss_ids, np.where(is_arc, arc_ids, vm_ids)),
            "resource_group": groups,
            "machine_name": np.where(
                is_vmss, np.char.add(np.char.add(scale_sets, "_"), (index % 50).astype(str)), names
            ),
            "machine_kind": np.where(is_vmss, "vmss_instance", np.where(is_arc, "arc", "vm")),
            "provider": np.where(is_arc, arc_provider, "azure"),
            "scale_set_name": pl.Series(np.where(is_vmss, scale_sets, "")).replace("", None),
            "size_index": size,
            "location": np.array(LOCATIONS)[rng.integers(0, len(LOCATIONS), count)],
            "os_type": np.where(windows, "Windows", "Linux"),
            "mde_sensor": sensor,
            "mde_extension_type": pl.Series(
                np.where(sensor, np.where(windows, "MDE.Windows", "MDE.Linux"), "")
            ).replace("", None),
            "profile": profile,
            "created_at": np.where(
                profile == "created",
                lifetime,
                start - rng.integers(1, 400, count) * MICROSECONDS_PER_DAY,
            ),
            "deleted_at": np.where(profile == "deleted", lifetime, np.iinfo(np.int64).max),
        }
    ).with_columns(vm_id=pl.Series(_uuids(rng, count)))


def _operations(
    rng: np.random.Generator, machines: pl.DataFrame, window: tuple[int, int]
) -> pl.DataFrame:
    """Every power operation: machine, operation, started_at, succeeded_at (integer µs)."""
    start, now = window
    days = np.arange(start, now, MICROSECONDS_PER_DAY)
    weekday = ((days // MICROSECONDS_PER_DAY) + 3) % 7 < 5  # 1970-01-01 was a Thursday
    profile = machines["profile"].to_numpy()
    machine = machines["machine"].to_numpy()
    parts = []

    def add(owners: np.ndarray, operation: str, at: np.ndarray) -> None:
        duration = rng.integers(20, 150, len(owners)) * MICROSECONDS_PER_SECOND
        parts.append(
            pl.DataFrame(
                {
                    "machine": owners,
                    "operation": operation,
                    "started_at": at,
                    "succeeded_at": at + duration,
                }
            )
        )

    office = machine[profile == "office_hours"]
    office_days = days[weekday]
    owners = np.repeat(office, len(office_days))
    on_day = np.tile(office_days, len(office))
    add(
        owners,
        "start",
        on_day + rng.integers(7 * 60, 9 * 60, len(owners)) * 60 * MICROSECONDS_PER_SECOND,
    )
    stop = on_day + rng.integers(18 * 60, 21 * 60, len(owners)) * 60 * MICROSECONDS_PER_SECOND
    power_off = (
        rng.random(len(owners)) < 0.05
    )  # shut down from the portal's Stop without deallocating
    add(owners[~power_off], "deallocate", stop[~power_off])
    add(owners[power_off], "power_off", stop[power_off])
    # A powered-off office machine is deallocated by a cleanup job at 23:00.
    add(owners[power_off], "deallocate", on_day[power_off] + 23 * MICROSECONDS_PER_HOUR)

    sporadic = machine[profile == "sporadic"]
    owners = np.repeat(sporadic, len(days))
    on_day = np.tile(days, len(sporadic))
    runs = rng.random(len(owners)) < SPORADIC_DAY_PROBABILITY
    owners, on_day = owners[runs], on_day[runs]
    began = on_day + rng.integers(0, 14 * 3600, len(owners)) * MICROSECONDS_PER_SECOND
    add(owners, "start", began)
    add(
        owners,
        "deallocate",
        began + rng.integers(3600, 9 * 3600, len(owners)) * MICROSECONDS_PER_SECOND,
    )

    steady = machines.filter(pl.col("profile").is_in(["always_on", "created", "deleted"]))
    months = max(1, round((now - start) / (30 * MICROSECONDS_PER_DAY)))
    owners = np.repeat(steady["machine"].to_numpy(), months)
    at = rng.integers(start, now - MICROSECONDS_PER_HOUR, len(owners))
    alive_from = np.repeat(steady["created_at"].to_numpy(), months) + MICROSECONDS_PER_HOUR
    alive_to = np.repeat(steady["deleted_at"].to_numpy(), months) - MICROSECONDS_PER_HOUR
    restarted = (rng.random(len(owners)) < 0.5) & (at > alive_from) & (at < alive_to)
    add(owners[restarted], "restart", at[restarted])
    created = machines.filter(pl.col("profile") == "created")
    add(created["machine"].to_numpy(), "write", created["created_at"].to_numpy())
    deleted = machines.filter(pl.col("profile") == "deleted")
    add(deleted["machine"].to_numpy(), "delete", deleted["deleted_at"].to_numpy())
    return pl.concat(parts).sort("machine", "started_at")


def _billable_hours_daily(
    machines: pl.DataFrame, operations: pl.DataFrame, window: tuple[int, int]
) -> pl.DataFrame:
    """Billable microseconds per machine and UTC day, from the operations by the billing rule.

    Each operation makes two intervals: while it runs [started, succeeded) and after it
    [succeeded, next operation's start or now); before the first, office-hours and sporadic
    machines are deallocated and the others running (created machines do not exist yet).
    """
    start, now = window
    billable = {name: flags for name, flags in _BILLABLE.items()}
    during = pl.col("operation").replace_strict({k: v[0] for k, v in billable.items()})
    after = pl.col("operation").replace_strict({k: v[1] for k, v in billable.items()})
    ops = operations.with_columns(
        next_start=pl.col("started_at").shift(-1).over("machine").fill_null(now)
    )
    intervals = pl.concat(
        [
            ops.select("machine", begin="started_at", end="succeeded_at", billable=during),
            ops.select("machine", begin="succeeded_at", end="next_start", billable=after),
            machines.join(
                operations.group_by("machine").agg(first=pl.col("started_at").min()),
                on="machine",
                how="left",
            ).select(
                "machine",
                begin=pl.max_horizontal(pl.lit(start), "created_at"),
                end=pl.col("first").fill_null(now),
                billable=pl.col("profile").is_in(["always_on", "deleted", "arc"]),
            ),
        ]
    ).filter(pl.col("billable") & (pl.col("end") > pl.col("begin")))
    first_day = pl.col("begin") // MICROSECONDS_PER_DAY
    last_day = (pl.col("end") - 1) // MICROSECONDS_PER_DAY
    return (
        intervals.with_columns(day=pl.int_ranges(first_day, last_day + 1))
        .explode("day")
        .with_columns(
            overlap=pl.min_horizontal("end", (pl.col("day") + 1) * MICROSECONDS_PER_DAY)
            - pl.max_horizontal("begin", pl.col("day") * MICROSECONDS_PER_DAY)
        )
        .group_by("machine", "day")
        .agg(billable_microseconds=pl.col("overlap").sum())
        .sort("machine", "day")  # a seed gives the same rows in the same order, run after run
    )


def _provenance(
    frame: pl.DataFrame, ingested_at: datetime, source: str, scope: str
) -> pl.DataFrame:
    return frame.with_columns(
        ingested_at=pl.lit(ingested_at, TIMESTAMP), source=pl.lit(source), scope=pl.lit(scope)
    )


def _to_lake_table(frame: pl.DataFrame, dataset: str) -> pa.Table:
    schema = DATASETS[dataset]
    return pa.Table.from_batches(
        frame.select(schema.names).to_arrow().cast(schema).to_batches(), schema=schema
    )


def _events_table(
    rng: np.random.Generator, machines: pl.DataFrame, operations: pl.DataFrame, subscription_id: str
) -> pl.DataFrame:
    """Activity Log rows: Started, Accepted (not for a write) and Succeeded per operation."""
    ops = operations.with_columns(correlation_id=pl.Series(_uuids(rng, operations.height)))
    accepted_after = pl.Series(rng.integers(1, 3_000_000, operations.height))
    rows = pl.concat(
        [
            ops.select(
                "machine", "operation", "correlation_id", at="started_at", status=pl.lit("Started")
            ),
            ops.filter(pl.col("operation") != "write").select(
                "machine",
                "operation",
                "correlation_id",
                at=pl.col("started_at") + accepted_after.filter(ops["operation"] != "write"),
                status=pl.lit("Accepted"),
            ),
            ops.select(
                "machine",
                "operation",
                "correlation_id",
                at="succeeded_at",
                status=pl.lit("Succeeded"),
            ),
        ]
    )
    resource_type = (
        pl.when(pl.col("machine_kind") == "vm")
        .then(pl.lit("Microsoft.Compute/virtualMachines/"))
        .otherwise(pl.lit("Microsoft.Compute/virtualMachineScaleSets/virtualMachines/"))
    )
    return rows.join(
        machines.select("machine", "resource_id", "resource_group", "machine_kind"),
        on="machine",
        maintain_order="left",
    ).select(
        event_data_id=pl.Series(_uuids(rng, rows.height)),
        correlation_id="correlation_id",
        event_at=pl.col("at").cast(TIMESTAMP),
        resource_id="resource_id",
        subscription_id=pl.lit(subscription_id),
        resource_group="resource_group",
        operation_name=resource_type + pl.col("operation").replace_strict(OPERATION_PATHS),
        operation="operation",
        status="status",
    )


def _cost_rows(
    rng: np.random.Generator,
    machines: pl.DataFrame,
    hours: pl.DataFrame,
    subscription_id: str,
    plan: str | None,
) -> pl.DataFrame:
    """Daily Query API rows: VM compute for every billable machine-day, and Defender for the
    plan's machines (a few rows left out)."""
    sizes = pl.DataFrame(
        {
            "size_index": range(len(VM_SIZES)),
            "meter_subcategory": [s[1] for s in VM_SIZES],
            "sku_meter": [s[2] for s in VM_SIZES],
            "vm_rate": [s[3] for s in VM_SIZES],
        }
    )
    billed = (
        hours.join(machines, on="machine", maintain_order="left")
        .join(sizes, on="size_index", maintain_order="left")
        .with_columns(
            charge_period_start=(pl.col("day") * MICROSECONDS_PER_DAY).cast(TIMESTAMP),
            charge_period_end=((pl.col("day") + 1) * MICROSECONDS_PER_DAY).cast(TIMESTAMP),
            hours=pl.col("billable_microseconds") / MICROSECONDS_PER_HOUR,
            resource_type=pl.when(pl.col("machine_kind") == "vm")
            .then(pl.lit("microsoft.compute/virtualmachines"))
            .when(pl.col("machine_kind") == "arc")
            .then(pl.lit("microsoft.hybridcompute/machines"))
            .otherwise(pl.lit("microsoft.compute/virtualmachinescalesets/virtualmachines")),
        )
    )
    common = {
        "subscription_id": pl.lit(subscription_id),
        "sub_account_id": pl.lit(f"/subscriptions/{subscription_id}"),
        "charge_description": pl.lit(None, pl.String),
        "charge_category": pl.lit("Usage"),
        "billing_currency": pl.lit("USD"),
        "cost_type": pl.lit("ActualCost"),
        "cost_source": pl.lit("query"),
        # As collected with an `[azure]` that names no tenant_id: the tenant is unknown.
        "tenant_id": pl.lit(None, pl.String),
    }
    # An Arc machine's hardware is not billed by Azure: only its Defender rows exist.
    compute = billed.filter(pl.col("machine_kind") != "arc").select(
        "charge_period_start",
        "charge_period_end",
        "resource_id",
        "resource_type",
        "meter_subcategory",
        "sku_meter",
        service_name=pl.lit("Virtual Machines"),
        meter_category=pl.lit("Virtual Machines"),
        consumed_quantity="hours",
        consumed_unit=pl.lit("Hours"),
        x_unit_of_measure=pl.lit("1 Hour"),
        billed_cost=pl.col("hours") * pl.col("vm_rate"),
        effective_cost=pl.col("hours") * pl.col("vm_rate"),
        **common,
    )
    if plan is None:
        return compute
    kept = pl.Series(rng.random(billed.height) >= MISSING_DEFENDER_ROW_RATE)
    rate = LIST_PRICE_USD_PER_HOUR[plan]
    defender = billed.filter(kept).select(
        "charge_period_start",
        "charge_period_end",
        "resource_id",
        "resource_type",
        meter_subcategory=pl.lit("Microsoft Defender for Servers"),
        sku_meter=pl.lit(f"Standard {plan} Node"),
        service_name=pl.lit("Microsoft Defender for Cloud"),
        meter_category=pl.lit("Microsoft Defender for Cloud"),
        consumed_quantity="hours",
        consumed_unit=pl.lit("Units/Hour"),
        x_unit_of_measure=pl.lit("1/Hour"),
        billed_cost=pl.col("hours") * rate,
        effective_cost=pl.col("hours") * rate,
        **common,
    )
    return pl.concat([compute, defender])


def _inventory(machines: pl.DataFrame, subscription_id: str, now: int) -> pl.DataFrame:
    """The snapshot at `now`: machines alive then, in the state their last operation left."""
    state = (
        pl.when(pl.col("profile").is_in(["office_hours", "sporadic"]))
        .then(pl.lit("deallocated"))
        .when(pl.col("profile") == "arc")
        .then(pl.lit("connected"))
        .otherwise(pl.lit("running"))
    )
    is_arc = pl.col("machine_kind") == "arc"
    tags = pl.format(
        '{{"costCenter": "CC-{}", "environment": "{}"}}',
        pl.col("machine") % 97,
        pl.col("resource_group").str.strip_prefix("rg-"),
    )
    sizes = [s[0] for s in VM_SIZES]
    return machines.filter(pl.col("deleted_at") > now).select(
        snapshot_at=pl.lit(now).cast(TIMESTAMP),
        resource_id="resource_id",
        subscription_id=pl.lit(subscription_id),
        resource_group="resource_group",
        machine_name="machine_name",
        machine_kind="machine_kind",
        vm_id="vm_id",
        scale_set_name="scale_set_name",
        location="location",
        size=pl.when(~is_arc).then(
            pl.col("size_index").replace_strict(dict(enumerate(sizes)), return_dtype=pl.String)
        ),
        os_type="os_type",
        tags=tags,
        # Resource groups carry a department, inherited by their machines (showback).
        resource_group_tags=pl.format(
            '{{"department": "{}"}}', pl.col("resource_group").str.strip_prefix("rg-")
        ),
        created_at=pl.col("created_at").cast(TIMESTAMP),
        power_state=state,
        mde_sensor="mde_sensor",
        mde_extension_type="mde_extension_type",
        provider="provider",
        # Connected since it was onboarded (lastStatusChange).
        status_changed_at=pl.when(is_arc).then(pl.col("created_at").cast(TIMESTAMP)),
        # As collected with an `[azure]` that names no tenant_id: the tenant is unknown.
        tenant_id=pl.lit(None, pl.String),
    )


def _pricings(
    machines: pl.DataFrame,
    subscription_id: str,
    now: int,
    tier: str,
    plan: str | None,
    enabled: int,
) -> pl.DataFrame:
    """The subscription's plan and each live machine's pricing, inherited from it."""
    subscription_level = pl.DataFrame(
        {
            "pricing_id": [subscription_pricing_id(subscription_id)],
            "level": ["subscription"],
            "resource_id": pl.Series([None], dtype=pl.String),
            "inherited": pl.Series([None], dtype=pl.Boolean),
            "inherited_from": pl.Series([None], dtype=pl.String),
        }
    )
    resource_level = machines.filter(pl.col("deleted_at") > now).select(
        pricing_id=pl.col("resource_id") + "/providers/microsoft.security/pricings/virtualmachines",
        level=pl.lit("resource"),
        resource_id="resource_id",
        inherited=pl.lit(True),
        inherited_from=pl.lit(f"/subscriptions/{subscription_id}"),
    )
    return pl.concat([subscription_level, resource_level]).with_columns(
        snapshot_at=pl.lit(now).cast(TIMESTAMP),
        subscription_id=pl.lit(subscription_id),
        pricing_tier=pl.lit(tier),
        sub_plan=pl.lit(plan, pl.String),
        enablement_time=pl.lit(enabled if plan else None, pl.Int64).cast(TIMESTAMP),
        # Enabled long before the window: the 30-day trial is over, so Azure says "PT0S".
        free_trial_remaining=pl.lit(timedelta(0), pl.Duration("us")),
    )


def generate_lake(
    lake: Path, *, machines: int, months: int, seed: int = 7, now: datetime | None = None
) -> BulkSummary:
    """Write an estate of `machines` machines over the `months` whole months before `now`.

    `now` (default: the start of the current UTC month) is the instant of the inventory and
    pricing snapshots. One subscription at a time is generated and written, so memory stays
    that of one subscription whatever the size of the estate.
    """
    if machines < 1 or months < 1:
        raise ValueError(f"machines ({machines}) and months ({months}) must be at least 1")
    if now is None:
        now = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    now = now.astimezone(UTC)
    window_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for _ in range(months if window_start == now else months - 1):
        window_start = (window_start - timedelta(days=1)).replace(day=1)
    window = (_micros(window_start), _micros(now))
    month_starts = _month_starts(window_start, now)
    rng = np.random.default_rng(seed)
    ingested_at = datetime.now(UTC)
    sizes = _subscription_sizes(rng, machines)
    subscription_ids = _uuids(rng, len(sizes)).to_pylist()
    plan_choice = rng.choice(len(PLANS), len(sizes), p=[p[2] for p in PLANS])
    rows = {"inventory": 0, "pricings": 0, "power_events": 0, "costs": 0}
    files = 0
    first = 0
    snapshot_date = f"{now:%Y-%m-%d}"
    for subscription_id, count, plan_index in zip(
        subscription_ids, sizes, plan_choice, strict=True
    ):
        scope = f"/subscriptions/{subscription_id}"
        tier, plan, _ = PLANS[plan_index]
        fleet = _machines(rng, subscription_id, int(count), first, window)
        first += int(count)
        operations = _operations(rng, fleet, window)
        hours = _billable_hours_daily(fleet, operations, window)
        snapshot = {"snapshot_date": snapshot_date, "subscription_id": subscription_id}
        tables = {
            "inventory": _inventory(fleet, subscription_id, window[1]),
            "pricings": _pricings(
                fleet, subscription_id, window[1], tier, plan, window[0] - 90 * MICROSECONDS_PER_DAY
            ),
        }
        for dataset, frame in tables.items():
            frame = _provenance(
                frame, ingested_at, "compute" if dataset == "inventory" else "security", scope
            )
            write_partition(
                lake, dataset, snapshot, _to_lake_table(frame, dataset), f"bulk {dataset}"
            )
            rows[dataset] += frame.height
            files += 1
        events = _provenance(
            _events_table(rng, fleet, operations, subscription_id),
            ingested_at,
            "activity_log",
            scope,
        )
        costs = _provenance(
            _cost_rows(rng, fleet, hours, subscription_id, plan), ingested_at, "query", scope
        )
        for month_start in month_starts:
            month_end = (month_start + timedelta(days=32)).replace(day=1)
            label = f"{month_start:%Y-%m}"
            in_month = pl.col("event_at").is_between(month_start, month_end, closed="left")
            chunk = events.filter(in_month).sort("event_at")
            write_partition(
                lake,
                "power_events",
                {"month": label, "subscription_id": subscription_id},
                _to_lake_table(chunk, "power_events"),
                f"bulk power events {label}",
            )
            in_month = pl.col("charge_period_start").is_between(
                month_start, month_end, closed="left"
            )
            cost_chunk = costs.filter(in_month)
            write_partition(
                lake,
                "costs",
                {
                    "source": "query",
                    "month": label,
                    "subscription_id": subscription_id,
                    "cost_type": "ActualCost",
                },
                _to_lake_table(cost_chunk, "costs"),
                f"bulk costs {label}",
            )
            rows["power_events"] += chunk.height
            rows["costs"] += cost_chunk.height
            files += 2
    return BulkSummary(machines, len(sizes), window_start, now, rows, files)
