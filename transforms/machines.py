"""Who the machines are: identities from inventory snapshots and the Activity Log, and the
`machines` view.

A machine appears in up to three places: inventory snapshots (alive machines, with their power
state "now"), Activity Log events (every machine that had a power operation, deleted ones
included) and cost data. Ids are normalised here once (`billing.normalise_resource_id_expr`), so
an id spelled `resourceGroups/RG-A` by Compute and `resourcegroups/rg-a` by Cost Management is one
machine.

Moves: a VM moved to another resource group or subscription gets a new resource id but keeps its
`vmId`. Each id stays a row of its own (the other views are keyed by resource id), and rows of the
same VM share `machine_key` (the vmId) and list each other in `other_resource_ids`. The old id's
timeline ends, and the new id's begins, at `moved_at`: the latest instant the old id was seen
(inventory snapshot or Activity Log event), bounded by the first sighting of the new id. That way
the machine's billable time is counted once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

import polars as pl

from transforms import billing
from transforms.contract import conform_view, view_schema
from transforms.tags import effective_tags

# The Compute `timeCreated` and the Activity Log's creating `write` are stamped by different
# services; a write that starts no later than this after `timeCreated` is the creation, a later
# one is an update of an existing machine.
CREATION_WRITE_TOLERANCE: Final = timedelta(minutes=15)

_VMSS_INSTANCE_ID: Final = (
    r"/providers/microsoft\.compute/virtualmachinescalesets/([^/]+)/virtualmachines/([^/]+)$"
)
# The shapes of a lower-cased ARM id tested without a regex (these run on every cost row and
# power operation): the provider path it contains, and its number of slashes -
# /subscriptions/{s}/resourcegroups/{g}/providers/{namespace}/{type}/{name} has 8, a child
# resource ({...}/{type}/{name}) 10.
_VM_PATH: Final = "/providers/microsoft.compute/virtualmachines/"
_SCALE_SET_PATH: Final = "/providers/microsoft.compute/virtualmachinescalesets/"
_ARC_PATH: Final = "/providers/microsoft.hybridcompute/machines/"
_RESOURCE_SLASHES: Final = 8
# Where a VM or scale-set instance runs (`billing.PROVIDERS`).
INVENTORY_AZURE_PROVIDER: Final = billing.PROVIDERS[0]
_CHILD_RESOURCE_SLASHES: Final = 10


def resource_id(column: str = "resource_id") -> pl.Expr:
    """The normalised (lower-cased, trimmed) resource id in `column`."""
    return billing.normalise_resource_id_expr(pl.col(column)).alias(column)


def subscription_of(resource_id_expr: pl.Expr) -> pl.Expr:
    """The subscription GUID an ARM id lives in (ids are already lower-cased)."""
    return resource_id_expr.str.extract(r"^/subscriptions/([^/]+)", 1)


def _resource_group_of(resource_id_expr: pl.Expr) -> pl.Expr:
    return resource_id_expr.str.extract(r"/resourcegroups/([^/]+)/", 1)


def _slashes(resource_id_expr: pl.Expr) -> pl.Expr:
    return resource_id_expr.str.count_matches("/", literal=True)


def is_vmss_instance_id(resource_id_expr: pl.Expr) -> pl.Expr:
    """True for a (lower-cased) scale-set instance id."""
    return (
        resource_id_expr.str.contains(_SCALE_SET_PATH, literal=True)
        & resource_id_expr.str.contains("/virtualmachines/", literal=True)
        & (_slashes(resource_id_expr) == _CHILD_RESOURCE_SLASHES)
    )


def is_scale_set_id(resource_id_expr: pl.Expr) -> pl.Expr:
    """True for a (lower-cased) scale set id: the set itself, not one of its instances."""
    return resource_id_expr.str.contains(_SCALE_SET_PATH, literal=True) & (
        _slashes(resource_id_expr) == _RESOURCE_SLASHES
    )


def is_arc_id(resource_id_expr: pl.Expr) -> pl.Expr:
    """True for a (lower-cased) Azure Arc machine id (`Microsoft.HybridCompute/machines`)."""
    return resource_id_expr.str.contains(_ARC_PATH, literal=True) & (
        _slashes(resource_id_expr) == _RESOURCE_SLASHES
    )


def is_compute_machine_id(resource_id_expr: pl.Expr) -> pl.Expr:
    """True for a (lower-cased) VM or scale-set instance id."""
    is_vm = resource_id_expr.str.contains(_VM_PATH, literal=True) & (
        _slashes(resource_id_expr) == _RESOURCE_SLASHES
    )
    return is_vm | is_vmss_instance_id(resource_id_expr)


def machine_kind_of(resource_id_expr: pl.Expr) -> pl.Expr:
    """vm, vmss_instance or arc, read from the id (for machines seen only in events or costs)."""
    return (
        pl.when(is_vmss_instance_id(resource_id_expr))
        .then(pl.lit("vmss_instance"))
        .when(is_arc_id(resource_id_expr))
        .then(pl.lit("arc"))
        .otherwise(pl.lit("vm"))
    )


def scale_set_id_of(resource_id_expr: pl.Expr) -> pl.Expr:
    """The scale set's id for a scale-set instance id, else null."""
    return (
        pl.when(is_vmss_instance_id(resource_id_expr))
        .then(resource_id_expr.str.replace(r"/virtualmachines/[^/]+$", ""))
        .otherwise(pl.lit(None, dtype=pl.String))
    )


def machine_name_of(resource_id_expr: pl.Expr) -> pl.Expr:
    """Azure's `name`: the VM name, or `{scaleSet}_{instanceId}` for a scale-set instance."""
    return (
        pl.when(is_vmss_instance_id(resource_id_expr))
        .then(
            pl.concat_str(
                resource_id_expr.str.extract(_VMSS_INSTANCE_ID, 1),
                pl.lit("_"),
                resource_id_expr.str.extract(_VMSS_INSTANCE_ID, 2),
            )
        )
        .otherwise(resource_id_expr.str.extract(r"/([^/]+)$", 1))
    )


def run_index(*keys: str) -> pl.Expr:
    """An integer numbering the runs of equal `keys` in a frame sorted by them.

    Window expressions over it (`.over(run_index(...))`) replace `.over(<resource id>)`: hashing
    an integer per row is far cheaper than hashing a long string, and the frames are sorted
    anyway.
    """
    return pl.any_horizontal(
        [pl.col(key).ne_missing(pl.col(key).shift(1)) for key in keys]
    ).cum_sum()


def power_state(column: str = "power_state") -> pl.Expr:
    """Instance-view power state as a bare lower-case state (`PowerState/Running` -> running)."""
    return (
        pl.col(column)
        .str.strip_chars()
        .str.to_lowercase()
        .str.replace(r"^powerstate/", "")
        .alias(column)
    )


def operations(power_events: pl.LazyFrame) -> pl.LazyFrame:
    """One row per power operation (resource x correlation id x verb) with its timing and outcome.

    Each operation logs Started, (Accepted,) Succeeded or Failed under one correlationId
    (billing.EVENT_STATUSES). `started_at` is the Started event (else the earliest event seen),
    `ended_at` the outcome's event (null while in progress), `outcome` succeeded / failed /
    in_progress, `started_logged` whether its Started event is among `power_events`. An event
    listed twice (overlapping collections) changes nothing: only the earliest time of each
    status counts.
    """
    # Group first, normalise after: the ids and names are normalised once per operation rather
    # than once per event (an operation's events spell its id the same way). The id is grouped
    # by as a dictionary code (a chunk has ~1,000 machines and ~500,000 events: hashing a 4-byte
    # code, not a ~130-character id, per event), and each status's time is picked before the
    # grouping rather than by a filter in every group.
    status = pl.col("status").str.strip_chars().str.to_lowercase()
    at_status = {
        name: pl.when(status == name).then("event_at")
        for name in ("started", "succeeded", "failed")
    }
    return (
        power_events.select(
            "correlation_id",
            "event_at",
            pl.col("resource_id").cast(pl.Categorical),
            pl.col("operation").cast(pl.Categorical),
            **{f"{name}_at": at for name, at in at_status.items()},
        )
        .group_by("resource_id", "correlation_id", "operation")
        .agg(
            started_at=pl.coalesce(pl.col("started_at").min(), pl.col("event_at").min()),
            succeeded_at=pl.col("succeeded_at").min(),
            failed_at=pl.col("failed_at").min(),
            started_logged=pl.col("started_at").is_not_null().any(),
        )
        .with_columns(
            billing.normalise_resource_id_expr(pl.col("resource_id").cast(pl.String)),
            pl.col("operation").cast(pl.String).str.strip_chars().str.to_lowercase(),
            outcome=pl.when(pl.col("succeeded_at").is_not_null())
            .then(pl.lit("succeeded"))
            .when(pl.col("failed_at").is_not_null())
            .then(pl.lit("failed"))
            .otherwise(pl.lit("in_progress")),
            ended_at=pl.coalesce("succeeded_at", "failed_at"),
        )
        .filter(pl.col("operation").is_in(billing.POWER_OPERATIONS))
        .drop("succeeded_at", "failed_at")
    )


# A resumed machine's operations before its `resume_at`, summed up for `classify_creations`.
CREATION_SEEDS: Final = pl.Schema(
    {
        "resource_id": pl.String(),
        "seed_generation": pl.Int32(),
        "seed_writes": pl.Int32(),
        "seed_power_ops": pl.Int32(),
    }
)


def classify_creations(
    ops: pl.LazyFrame, created_at: pl.LazyFrame, seeds: pl.LazyFrame | None = None
) -> pl.LazyFrame:
    """Add `is_creation` (a succeeded write that brought the machine into existence).

    Operations are numbered per machine in time order (machines told apart by their id's
    dictionary code, an integer: the rows come out grouped by machine, in time order). A
    succeeded `delete` opens a new generation (Azure reuses a resource id when a VM is re-created
    with the same name). In each generation, the first succeeded `write` with no succeeded power
    operation before it is the creation, provided, in the first generation, that Compute's
    `timeCreated` (`created_at`, one row per resource id, may be null) does not put the
    machine's creation well before it: then the write was an update of a machine created before
    the events window.

    `seeds` (`CREATION_SEEDS`) stand for a resumed machine's operations before its first one
    here: the generation they end in and its succeeded writes and power operations. The
    columns `generation`, `writes_before` and `power_ops_before` are kept: a later resume
    starts from them.
    """
    succeeded = pl.col("outcome") == "succeeded"
    write_ok = succeeded & (pl.col("operation") == "write")
    power_op_ok = succeeded & ~pl.col("operation").is_in(["write", "delete"])
    if seeds is None:
        seeds = pl.LazyFrame(schema=CREATION_SEEDS)
    seed_columns = CREATION_SEEDS.names()[1:]
    in_seed_generation = pl.col("generation") == pl.col("seed_generation")
    return (
        ops.join(created_at, on="resource_id", how="left")
        .join(seeds, on="resource_id", how="left")
        .with_columns(pl.col(name).fill_null(0) for name in seed_columns)
        .with_columns(machine=pl.col("resource_id").cast(pl.Categorical).to_physical())
        .sort("machine", "started_at", "ended_at", "correlation_id", nulls_last=True)
        .with_columns(
            generation=(succeeded & (pl.col("operation") == "delete"))
            .cast(pl.Int32)
            .cum_sum()
            .shift(1, fill_value=0)
            .over("machine")
            + pl.col("seed_generation")
        )
        .with_columns(
            writes_before=write_ok.cast(pl.Int32)
            .cum_sum()
            .shift(1, fill_value=0)
            .over("machine", "generation")
            + pl.when(in_seed_generation).then("seed_writes").otherwise(0),
            power_ops_before=power_op_ok.cast(pl.Int32)
            .cum_sum()
            .shift(1, fill_value=0)
            .over("machine", "generation")
            + pl.when(in_seed_generation).then("seed_power_ops").otherwise(0),
        )
        .with_columns(
            is_creation=write_ok
            & (pl.col("writes_before") == 0)
            & (pl.col("power_ops_before") == 0)
            & (
                (pl.col("generation") > 0)
                | pl.col("created_at").is_null()
                | (pl.col("created_at") >= pl.col("started_at") - CREATION_WRITE_TOLERANCE)
            )
        )
        .drop("machine", "created_at", *seed_columns)
    )


def power_snapshots(inventory: pl.LazyFrame) -> pl.LazyFrame:
    """Every power state an inventory snapshot observed: resource_id, snapshot_at, power_state,
    and for an Arc machine `status_changed_at` (its `lastStatusChange`: when that status began).

    Snapshots without a power state tell nothing about it and are left out.
    """
    return (
        inventory.select(resource_id(), "snapshot_at", power_state(), "status_changed_at")
        .filter(pl.col("power_state").is_not_null() & (pl.col("power_state") != ""))
        .unique(subset=["resource_id", "snapshot_at"], keep="any")
    )


def latest_snapshot_date(inventory: pl.LazyFrame) -> pl.LazyFrame:
    """One row, `latest_snapshot_date`: the day of the estate's latest inventory snapshot.

    A machine is still there if that snapshot listed it. The build works on chunks of
    subscriptions, so it computes this once over the whole lake and hands it to every chunk: a
    subscription missing from the last collection must not set its own, older "latest".
    """
    return inventory.select(latest_snapshot_date=pl.col("snapshot_at").max().dt.date())


def _latest_inventory(
    inventory: pl.LazyFrame, latest_date: pl.LazyFrame | None = None
) -> pl.LazyFrame:
    """Each resource id's latest inventory row, with when it was first and last seen.

    `latest_date` (one row, `latest_snapshot_date`) defaults to this inventory's own latest day.
    """
    present = inventory.collect_schema().names()
    # Snapshots taken before tags or resource groups' tags were collected have none.
    inventory = inventory.with_columns(
        pl.lit(None, dtype=pl.String).alias(name)
        for name in ("tags", "resource_group_tags")
        if name not in present
    )
    kind = pl.col("machine_kind").str.to_lowercase()
    rows = inventory.with_columns(
        resource_id(),
        pl.col("subscription_id").str.to_lowercase(),
        pl.col("resource_group").str.to_lowercase(),
        kind,
        pl.col("vm_id").str.to_lowercase(),
        power_state(),
        # Partitions collected before Arc carry no provider: a VM's is Azure all the same.
        provider=pl.coalesce(
            pl.col("provider").str.to_lowercase(),
            pl.when(kind != "arc").then(pl.lit(INVENTORY_AZURE_PROVIDER)),
        ),
    )
    if latest_date is None:
        latest_date = latest_snapshot_date(inventory)
    return (
        rows.group_by("resource_id")
        .agg(
            pl.exclude("snapshot_at").sort_by("snapshot_at").last(),
            first_seen_at=pl.col("snapshot_at").min(),
            last_seen_at=pl.col("snapshot_at").max(),
        )
        .join(latest_date, how="cross")
        .with_columns(
            in_latest_snapshot=pl.col("last_seen_at").dt.date() == pl.col("latest_snapshot_date")
        )
        .drop("latest_snapshot_date")
    )


_IDENTITY_COLUMNS: Final = (
    "resource_id",
    "subscription_id",
    "resource_group",
    "machine_name",
    "machine_kind",
    "vm_id",
    "scale_set_name",
    "location",
    "size",
    "os_type",
    "provider",
    "created_at",
    "mde_sensor",
    "power_state",
    "tags",
    "resource_group_tags",
    "first_seen_at",
    "last_seen_at",
    "in_latest_snapshot",
)


_SEEN_IN_EVENTS: Final = frozenset(
    {
        "resource_id",
        "subscription_id",
        "resource_group",
        "machine_name",
        "machine_kind",
        "scale_set_name",
        "provider",
        "in_latest_snapshot",
    }
)


# Each machine id's first and last Activity Log event, and the subscription and resource group
# an event of it names (`event_bounds`).
EVENT_BOUNDS: Final = pl.Schema(
    {
        "resource_id": pl.String(),
        "first_event_at": pl.Datetime("us", "UTC"),
        "last_event_at": pl.Datetime("us", "UTC"),
        "event_subscription_id": pl.String(),
        "event_resource_group": pl.String(),
    }
)


def event_bounds(power_events: pl.LazyFrame, earlier: pl.LazyFrame | None = None) -> pl.LazyFrame:
    """`EVENT_BOUNDS` of `power_events` (ids normalised, scale sets left out), with the bounds
    of `earlier` events (already `EVENT_BOUNDS`) added."""
    of_events = (
        power_events.group_by("resource_id")
        .agg(
            first_event_at=pl.col("event_at").min(),
            last_event_at=pl.col("event_at").max(),
            event_subscription_id=pl.col("subscription_id").first(),
            event_resource_group=pl.col("resource_group").first(),
        )
        .with_columns(
            resource_id(),
            pl.col("event_subscription_id").str.to_lowercase(),
            pl.col("event_resource_group").str.to_lowercase(),
        )
        # A scale set's own operations act on its instances (`classified_operations`); the
        # set is not a machine.
        .filter(~is_scale_set_id(pl.col("resource_id")))
    )
    if earlier is not None:
        of_events = pl.concat([earlier, of_events], how="vertical_relaxed")
    # Ids spelled in several ways in the events are one machine.
    return of_events.group_by("resource_id").agg(
        pl.col("first_event_at").min(),
        pl.col("last_event_at").max(),
        pl.col("event_subscription_id").first(),
        pl.col("event_resource_group").first(),
    )


def machine_identities(
    inventory: pl.LazyFrame,
    power_events: pl.LazyFrame,
    latest_date: pl.LazyFrame | None = None,
    earlier_bounds: pl.LazyFrame | None = None,
) -> pl.LazyFrame:
    """One row per machine resource id, from inventory snapshots and Activity Log events.

    Columns: the identity (`_IDENTITY_COLUMNS`; machines seen only in events get theirs from the
    id), `machine_key`, `first_event_at` / `last_event_at`, the move bounds `moved_in_at` (this id
    took over from an older id of the same vmId) and `moved_at` (a newer id took over), and
    `other_resource_ids`. `latest_date`: see `latest_snapshot_date` (default: this inventory's).
    `earlier_bounds`: the `event_bounds` of events not in `power_events` (a resumed build's).
    """
    inventoried = _latest_inventory(inventory, latest_date).select(_IDENTITY_COLUMNS)
    bounds = event_bounds(power_events, earlier_bounds)
    seen_only_in_events = (
        bounds.join(inventoried, on="resource_id", how="anti")
        .with_columns(
            subscription_id=pl.coalesce(
                subscription_of(pl.col("resource_id")), "event_subscription_id"
            ),
            resource_group=pl.coalesce(
                _resource_group_of(pl.col("resource_id")), "event_resource_group"
            ),
            machine_name=machine_name_of(pl.col("resource_id")),
            machine_kind=machine_kind_of(pl.col("resource_id")),
            scale_set_name=pl.col("resource_id").str.extract(_VMSS_INSTANCE_ID, 1),
            # An Arc machine's provider is in its inventory only; a VM runs in Azure.
            provider=pl.when(~is_arc_id(pl.col("resource_id"))).then(
                pl.lit(INVENTORY_AZURE_PROVIDER)
            ),
            in_latest_snapshot=pl.lit(False),
        )
        .select(
            [
                pl.col(name) if name in _SEEN_IN_EVENTS else pl.lit(None).alias(name)
                for name in _IDENTITY_COLUMNS
            ]
        )
    )
    identities = pl.concat([inventoried, seen_only_in_events], how="vertical_relaxed").join(
        bounds.select("resource_id", "first_event_at", "last_event_at"),
        on="resource_id",
        how="left",
    )
    return _with_moves(identities)


def _with_moves(identities: pl.LazyFrame) -> pl.LazyFrame:
    """Link the ids of one vmId in the order they were first seen, and bound each at the move.

    An id followed by a newer id of the same machine was moved at its last sighting (inventory
    snapshot or event), but no later than the newer id's first sighting.
    """
    keyed = identities.with_columns(
        machine_key=pl.coalesce("vm_id", "resource_id"),
        first_sighting=pl.min_horizontal("first_seen_at", "first_event_at"),
        last_sighting=pl.max_horizontal("last_seen_at", "last_event_at"),
    )
    next_first_sighting = pl.col("first_sighting").shift(-1).over("machine_key")
    ordered = (
        keyed.sort("machine_key", "first_sighting", "resource_id", nulls_last=True)
        .with_columns(
            moved_at=pl.when(next_first_sighting.is_not_null()).then(
                pl.min_horizontal("last_sighting", next_first_sighting)
            )
        )
        .with_columns(moved_in_at=pl.col("moved_at").shift(1).over("machine_key"))
    )
    siblings = keyed.group_by("machine_key").agg(all_ids=pl.col("resource_id"))
    return (
        ordered.join(siblings, on="machine_key", how="left")
        .with_columns(
            other_resource_ids=pl.col("all_ids")
            .list.set_difference(pl.concat_list("resource_id"))
            .list.sort()
        )
        .drop("all_ids", "first_sighting", "last_sighting")
    )


def pricing_setting() -> pl.Expr:
    """A pricings row's setting: `off` for pricing tier Free, else its sub-plan (P1 / P2);
    Standard without a sub-plan is `billing.STANDARD_DEFAULT_SUB_PLAN`."""
    return (
        pl.when(pl.col("pricing_tier").str.strip_chars().str.to_lowercase() == "free")
        .then(pl.lit("off"))
        .otherwise(
            pl.coalesce(
                pl.col("sub_plan").str.strip_chars().str.to_uppercase(),
                pl.lit(billing.STANDARD_DEFAULT_SUB_PLAN),
            )
        )
    )


def effective_plans(pricings: pl.LazyFrame) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """The latest Defender for Servers setting per subscription and per resource override.

    Returns (subscription_id, subscription_setting) and (resource_id, resource_setting), each
    setting `P1`, `P2` or `off` (pricing tier Free). Standard without a sub-plan is
    `billing.STANDARD_DEFAULT_SUB_PLAN`. A resource-level row overrides the subscription's.
    Resource-level rows count only from their subscription's latest snapshot: an override that
    an earlier snapshot listed and the latest does not has been removed (as `plans` reads it).
    """
    rows = pricings.with_columns(
        pl.col("subscription_id").str.to_lowercase(),
        resource_id(),
        level=pl.col("level").str.strip_chars().str.to_lowercase(),
        setting=pricing_setting(),
    )
    is_resource_level = (pl.col("level") != "subscription") & pl.col("resource_id").is_not_null()
    subscription_settings = (
        rows.filter(~is_resource_level)
        .group_by("subscription_id")
        .agg(subscription_setting=pl.col("setting").sort_by("snapshot_at").last())
    )
    latest_snapshots = rows.group_by("subscription_id").agg(
        latest_snapshot_at=pl.col("snapshot_at").max()
    )
    resource_settings = (
        rows.filter(is_resource_level)
        .join(latest_snapshots, on="subscription_id", how="inner")
        .filter(pl.col("snapshot_at") == pl.col("latest_snapshot_at"))
        .group_by("resource_id")
        .agg(resource_setting=pl.col("setting").sort_by("snapshot_at").last())
    )
    return subscription_settings, resource_settings


def instance_spans(identities: pl.LazyFrame) -> pl.LazyFrame:
    """Per scale set instance of `identities`: its set's id and the span in which the set's
    operations act on it (`machine_operations`): from `known_from` (created, inventoried or in
    an event of its own; null: always) to `gone_after` (its last sighting when the latest
    snapshot no longer lists it; null: never)."""
    return identities.select(
        "resource_id",
        scale_set_id=scale_set_id_of(pl.col("resource_id")),
        known_from=pl.min_horizontal("created_at", "first_seen_at", "first_event_at"),
        gone_after=pl.when(~pl.col("in_latest_snapshot")).then(
            pl.max_horizontal("last_seen_at", "last_event_at")
        ),
    ).filter(pl.col("scale_set_id").is_not_null())


def machine_operations(ops: pl.LazyFrame, identities: pl.LazyFrame) -> pl.LazyFrame:
    """`ops` with a whole scale set's operations handed to each instance it acted on.

    Azure logs `virtualMachineScaleSets/deallocate/action` (start, powerOff, restart, delete) on
    the set's id only, and it changes the power state of the set's instances
    (`billing.power_operation`). Each instance that existed when the operation started takes it
    (same correlation id, timing and outcome): one known (created, inventoried or in an event of
    its own) no later than the start, and not gone (absent from the latest snapshot and last seen
    before it). An instance created later never sees it, so its creation stays its first
    operation. The Activity Log does not reliably say which instances a request listed, so an
    operation is taken to act on every instance of the set (documented in the data dictionary).
    Only the set-level operations, a few, are joined to the instances; a machine's own
    operations pass as they are.
    """
    instances = instance_spans(identities).rename({"resource_id": "instance_id"})
    took_it = (pl.col("known_from").is_null() | (pl.col("known_from") <= pl.col("started_at"))) & (
        pl.col("gone_after").is_null() | (pl.col("gone_after") >= pl.col("started_at"))
    )
    columns = ops.collect_schema().names()
    marked = ops.with_columns(of_scale_set=is_scale_set_id(pl.col("resource_id")))
    handed = (
        marked.filter(pl.col("of_scale_set"))
        .join(instances, left_on="resource_id", right_on="scale_set_id", how="inner")
        .filter(took_it)
        .with_columns(resource_id="instance_id")
    )
    return pl.concat(
        [marked.filter(~pl.col("of_scale_set")).select(columns), handed.select(columns)]
    )


def classified_operations(
    power_events: pl.LazyFrame, identities: pl.LazyFrame, resume: pl.LazyFrame | None = None
) -> pl.LazyFrame:
    """The power operations (`operations`) of the machines in `identities`, a scale set's own
    operations handed to its instances (`machine_operations`), creations marked. With `resume`
    (`transforms.resume.RESUME_POINTS`), a resumed machine's operations from its `resume_at`
    only, classified from its seeds."""
    ops = machine_operations(operations(power_events), identities)
    seeds = None
    if resume is not None:
        starts = resume.select("resource_id", "resume_at")
        ops = (
            ops.join(starts, on="resource_id", how="left")
            .filter(pl.col("resume_at").is_null() | (pl.col("started_at") >= pl.col("resume_at")))
            .drop("resume_at")
        )
        seeds = resume.select(CREATION_SEEDS.names())
    return classify_creations(ops, identities.select("resource_id", "created_at"), seeds)


def machines(
    inventory: pl.LazyFrame, power_events: pl.LazyFrame, pricings: pl.LazyFrame
) -> pl.LazyFrame:
    """The `machines` view: one row per machine resource id (see the module docstring on moves).

    `created_at` is Compute's timeCreated, else the start of the creating write in the Activity
    Log; `deleted_at` the end of the last succeeded delete not followed by a re-creation;
    `defender_plan` the plan in force now from the pricings snapshot.
    """
    identities = machine_identities(inventory, power_events)
    return machines_from(identities, classified_operations(power_events, identities), pricings)


def lifecycle_events(ops: pl.LazyFrame) -> pl.LazyFrame:
    """Per machine id of `classified_operations`: the start of its last creating write
    (`created_by_event_at`) and the end of its last succeeded delete (`deleted_event_at`)."""
    return (
        ops.filter(pl.col("outcome") == "succeeded")
        .group_by("resource_id")
        .agg(
            created_by_event_at=pl.col("started_at").filter(pl.col("is_creation")).max(),
            deleted_event_at=pl.col("ended_at").filter(pl.col("operation") == "delete").max(),
        )
    )


def machines_from(
    identities: pl.LazyFrame,
    ops: pl.LazyFrame,
    pricings: pl.LazyFrame,
    earlier_lifecycle: pl.LazyFrame | None = None,
) -> pl.LazyFrame:
    """The `machines` view from `machine_identities` and `classified_operations`, computed once
    by the build and shared with `power.evidence_states`. `earlier_lifecycle`: the
    `lifecycle_events` of operations not in `ops` (a resumed build's)."""
    lifecycle = lifecycle_events(ops)
    if earlier_lifecycle is not None:
        lifecycle = (
            pl.concat([earlier_lifecycle, lifecycle], how="vertical_relaxed")
            .group_by("resource_id")
            .agg(pl.col("created_by_event_at").max(), pl.col("deleted_event_at").max())
        )
    lifecycle = lifecycle.with_columns(
        deleted_event_at=pl.when(
            pl.col("created_by_event_at").is_null()
            | (pl.col("deleted_event_at") > pl.col("created_by_event_at"))
        ).then("deleted_event_at")
    )
    subscription_settings, resource_settings = effective_plans(pricings)
    view = (
        identities.join(lifecycle, on="resource_id", how="left")
        .join(subscription_settings, on="subscription_id", how="left")
        .join(resource_settings, on="resource_id", how="left")
        .with_columns(
            created_at=pl.coalesce("created_at", "created_by_event_at"),
            deleted_at=pl.col("deleted_event_at"),
            defender_plan=pl.coalesce("resource_setting", "subscription_setting").replace(
                "off", None
            ),
            tags=effective_tags("tags", "resource_group_tags"),
        )
        .sort("resource_id")
    )
    return conform_view(view.select(view_schema("machines").names()), "machines")
