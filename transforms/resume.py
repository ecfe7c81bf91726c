"""Resuming a chunk's timelines from a cut instead of rebuilding them from the whole history.

A machine's timeline is rebuilt from its evidence in time order (`transforms.power`), and the
segments an item of evidence implies depend on the items before it only through a few values:
the last state they settled, the state before the first of them that settles one, when their
last operation ended, and, for the creations among its operations (`machines.
classify_creations`), how many deletes, writes and power operations came before. So a build
records, at a cut (the first instant of the present's month), each machine's resume point: the
last item before the cut (or before the first operation still running at it), with those
values as seeds, and the Activity Log events of its operations from there on that precede the
cut (`carried_events`), and each id's first and last event before the cut (`machines.
event_bounds`). The next build, when none of the chunk's power events or inventory files before
the cut changed, reads the events from the cut on, adds the carried ones, and rebuilds each
machine from its resume point: the items from there on and the seeds give the segments the
whole history gives (`power.evidence_states`). Its intervals before the resume point are the
published ones (`spliced_intervals`).

It holds when nothing the seeds stand for moved, which `resume_refused` checks: a machine's
bounds (where its intervals may begin and end), Compute's `timeCreated`, a scale set
instance's span for the set's operations before the cut (and no new instance known before
it), the Arc status changes the snapshots tell of before its resume point (a fingerprint of
them), and no operation after the cut without its Started event unless its other events were
carried (it may be a late event of an earlier operation).
A machine with no item before its resume point that settles a state, or with none at all, is
rebuilt from its first evidence: its resume point is null and all its events are carried.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import polars as pl

from transforms.contract import UTC_TIMESTAMP
from transforms.machines import CREATION_SEEDS, instance_spans, lifecycle_events
from transforms.power import RESUME_SEEDS, merge_runs, status_changes

# One row per machine of a chunk: where its timeline resumes and what stands for the items
# before (`RESUME_SEEDS`, `machines.CREATION_SEEDS`, and the `machines.lifecycle_events` of the
# operations before), with the facts a resume must find unchanged (`resume_refused`).
RESUME_POINTS: Final = pl.Schema(
    {
        **RESUME_SEEDS,
        **{name: kind for name, kind in CREATION_SEEDS.items() if name != "resource_id"},
        "created_by_event_at": UTC_TIMESTAMP,
        "deleted_event_at": UTC_TIMESTAMP,
        "whole_lo": UTC_TIMESTAMP,
        "hi": UTC_TIMESTAMP,
        "created_at": UTC_TIMESTAMP,
        "known_from": UTC_TIMESTAMP,
        "gone_after": UTC_TIMESTAMP,
        "status_told": pl.UInt64(),
    }
)


@dataclass(frozen=True)
class ResumeState:
    """What a chunk's next build resumes its timelines from: the `cut`, each machine's
    `points` (`RESUME_POINTS`), the `carried` Activity Log events before the cut (the lake's
    power events schema) and each id's `bounds` before it (`machines.EVENT_BOUNDS`)."""

    cut: datetime
    points: pl.DataFrame
    carried: pl.DataFrame
    bounds: pl.DataFrame


# A scale set instance still listed: gone after no instant.
_NEVER: Final = datetime.max.replace(tzinfo=UTC)


def _set_instance_span(identities: pl.LazyFrame) -> pl.LazyFrame:
    """Per scale set instance: the span in which its set's operations act on it."""
    return instance_spans(identities).drop("scale_set_id")


def _status_told(snapshots: pl.LazyFrame, starts: pl.LazyFrame) -> pl.LazyFrame:
    """Per resumed machine of `starts` (resource_id, resume_at): a fingerprint of the Arc status
    changes before its resume point that `snapshots` tell of (their hashes added, wrapping:
    the same in any order), which a resume must find unchanged."""
    return (
        status_changes(snapshots)
        .join(starts.filter(pl.col("resume_at").is_not_null()), on="resource_id")
        .filter(pl.col("at") < pl.col("resume_at"))
        .select("resource_id", "at", "changed_to")
        .unique()
        .group_by("resource_id")
        .agg(status_told=pl.struct("at", "changed_to").hash().sum())
    )


def resume_points(
    states: pl.LazyFrame,
    ops: pl.LazyFrame,
    identities: pl.LazyFrame,
    snapshots: pl.LazyFrame,
    cut: datetime,
    earlier: pl.LazyFrame | None = None,
) -> pl.LazyFrame:
    """`RESUME_POINTS` at `cut` from `power.evidence_states`, the `classified_operations` and
    `machines.power_snapshots` they were built from (resumed from `earlier` points, if
    given)."""
    at = pl.col("at")
    is_operation = pl.col("operation").is_not_null()
    running_at_cut = (
        is_operation & (at < cut) & (pl.col("ended_at").is_null() | (pl.col("ended_at") > cut))
    )
    limit = pl.min_horizontal(pl.lit(cut).cast(UTC_TIMESTAMP), at.filter(running_at_cut).min())
    before = at < pl.col("new_resume_at")
    settles = pl.col("state_after").is_not_null() | (pl.col("outcome") == "in_progress")
    per_machine = (
        states.with_columns(limit=limit.over("machine"))
        .with_columns(new_resume_at=at.filter(at < pl.col("limit")).max().over("machine"))
        .group_by("machine")
        .agg(
            pl.col("resource_id").first(),
            resume_at=pl.col("new_resume_at").first(),
            seed_settled=pl.coalesce(
                pl.col("last_settled").filter(before).last(), pl.col("seed_settled").first()
            ),
            seed_initial=pl.col("initial_state").first(),
            settled_before=pl.col("seed_initial").first().is_not_null() | (before & settles).any(),
            seed_busy_until=pl.max_horizontal(
                pl.col("seed_busy_until").first(),
                pl.col("ended_at").filter(before & is_operation).max(),
            ),
            whole_lo=pl.col("whole_lo").first(),
            hi=pl.col("hi").first(),
        )
        # Without a settled state before its resume point, a machine's earlier segments hang on
        # its first item that settles one, which a later collection may bring: it is rebuilt
        # from its first evidence.
        .with_columns(
            pl.when(pl.col("settled_before")).then(pl.col(name)).alias(name)
            for name in ("resume_at", "seed_settled", "seed_initial", "seed_busy_until")
        )
        .drop("machine", "settled_before")
    )
    starts = per_machine.select("resource_id", "resume_at")
    earlier_ops = ops.join(starts, on="resource_id", how="inner").filter(
        pl.col("started_at") < pl.col("resume_at")
    )
    succeeded = pl.col("outcome") == "succeeded"
    deleted = succeeded & (pl.col("operation") == "delete")
    wrote = succeeded & (pl.col("operation") == "write")
    powered = succeeded & ~pl.col("operation").is_in(["write", "delete"])
    # The counts the operation after the last earlier one starts from.
    creation_seeds = (
        earlier_ops.sort("resource_id", "started_at", "ended_at", "correlation_id", nulls_last=True)
        .group_by("resource_id")
        .agg(
            seed_generation=(pl.col("generation") + deleted.cast(pl.Int32)).last(),
            seed_writes=pl.when(deleted)
            .then(0)
            .otherwise(pl.col("writes_before") + wrote.cast(pl.Int32))
            .last(),
            seed_power_ops=pl.when(deleted)
            .then(0)
            .otherwise(pl.col("power_ops_before") + powered.cast(pl.Int32))
            .last(),
        )
    )
    lifecycle = lifecycle_events(earlier_ops)
    creation_columns = [name for name in CREATION_SEEDS.names() if name != "resource_id"]
    if earlier is None:
        earlier = pl.LazyFrame(schema=RESUME_POINTS)
    carried_over = earlier.select(
        "resource_id",
        *(pl.col(name).alias(f"earlier_{name}") for name in creation_columns),
        earlier_created=pl.col("created_by_event_at"),
        earlier_deleted=pl.col("deleted_event_at"),
    )
    resumed = pl.col("resume_at").is_not_null()
    return (
        per_machine.join(creation_seeds, on="resource_id", how="left")
        .join(lifecycle, on="resource_id", how="left")
        .join(carried_over, on="resource_id", how="left")
        .join(identities.select("resource_id", "created_at"), on="resource_id", how="left")
        .join(_set_instance_span(identities), on="resource_id", how="left")
        .join(_status_told(snapshots, starts), on="resource_id", how="left")
        .with_columns(
            *(
                pl.when(resumed)
                .then(pl.coalesce(name, f"earlier_{name}", pl.lit(0, dtype=pl.Int32)))
                .alias(name)
                for name in creation_columns
            ),
            created_by_event_at=pl.when(resumed).then(
                pl.max_horizontal("created_by_event_at", "earlier_created")
            ),
            deleted_event_at=pl.when(resumed).then(
                pl.max_horizontal("deleted_event_at", "earlier_deleted")
            ),
            status_told=pl.when(resumed).then(pl.col("status_told").fill_null(0)),
        )
        .select(RESUME_POINTS.names())
        .cast(dict(RESUME_POINTS))  # type: ignore[arg-type]
    )


def carried_events(
    power_events: pl.LazyFrame, ops: pl.LazyFrame, points: pl.LazyFrame, cut: datetime
) -> pl.LazyFrame:
    """The events before `cut` of the operations from each machine's resume point on (all of a
    machine's without one): what the next build reads besides the events from the cut on."""
    kept = (
        ops.join(points.select("resource_id", "resume_at"), on="resource_id", how="inner")
        .filter(pl.col("resume_at").is_null() | (pl.col("started_at") >= pl.col("resume_at")))
        .select("correlation_id")
        .unique()
    )
    return power_events.filter(pl.col("event_at") < cut).join(kept, on="correlation_id", how="semi")


def resume_refused(
    previous: ResumeState,
    states: pl.DataFrame,
    ops: pl.DataFrame,
    identities: pl.DataFrame,
    snapshots: pl.LazyFrame,
) -> str | None:
    """Why the timelines resumed from `previous` may differ from the whole history's (None:
    they do not). `states`, `ops` and `identities` are the resumed build's, `snapshots` its
    `machines.power_snapshots`."""
    points = previous.points.lazy()
    known = identities.lazy().select("resource_id")
    missing = points.join(known, on="resource_id", how="anti").select(pl.len()).collect().item()
    if missing:
        return f"{missing} machine(s) of the last build no longer listed"
    resumed = points.filter(pl.col("resume_at").is_not_null())
    now = (
        states.lazy()
        .group_by("resource_id")
        .agg(pl.col("whole_lo").first(), pl.col("hi").first())
        .join(identities.lazy().select("resource_id", "created_at"), on="resource_id")
        .join(_set_instance_span(identities.lazy()), on="resource_id", how="left")
    )
    compared = resumed.join(now, on="resource_id", how="left", suffix="_now")
    resume_at = pl.col("resume_at")
    cut = pl.lit(previous.cut).cast(UTC_TIMESTAMP)

    def unmoved(name: str, beyond: pl.Expr, never: bool = False) -> pl.Expr:
        # The same, or both at or after `beyond` (a null is never, when `never`).
        recorded, current = pl.col(name), pl.col(f"{name}_now")
        if never:
            recorded, current = recorded.fill_null(_NEVER), current.fill_null(_NEVER)
        both_beyond = ((recorded >= beyond) & (current >= beyond)).fill_null(False)
        return pl.col(name).eq_missing(pl.col(f"{name}_now")) | both_beyond

    # Where a machine's intervals may begin and end matters only before its resume point; the
    # span in which a scale set's operations act on an instance, before the cut (those after
    # it are read again, the earlier ones only if carried); Compute's timeCreated, always (it
    # decides which writes created the machine).
    moved = compared.filter(
        ~unmoved("whole_lo", resume_at)
        | ~unmoved("hi", resume_at)
        | ~unmoved("known_from", cut)
        | ~unmoved("gone_after", cut, never=True)
        | ~pl.col("created_at").eq_missing(pl.col("created_at_now"))
    )
    if (count := moved.select(pl.len()).collect().item()) > 0:
        return f"{count} machine(s) whose bounds moved before their resume point"
    # A new instance known before the cut may have taken its set's earlier operations.
    new_instances = (
        _set_instance_span(identities.lazy())
        .join(points, on="resource_id", how="anti")
        .filter(pl.col("known_from").is_null() | (pl.col("known_from") < cut))
        .select(pl.len())
        .collect()
        .item()
    )
    if new_instances:
        return f"{new_instances} new scale set instance(s) known before the cut"
    told = resumed.select("resource_id", "status_told").join(
        _status_told(snapshots, resumed.select("resource_id", "resume_at")),
        on="resource_id",
        how="left",
        suffix="_now",
    )
    retold = (
        told.filter(pl.col("status_told") != pl.col("status_told_now").fill_null(0))
        .select(pl.len())
        .collect()
        .item()
    )
    if retold:
        return f"{retold} machine(s) with Arc status changes before their resume point told anew"
    carried = previous.carried.lazy().select("correlation_id").unique()
    unstarted = (
        ops.lazy()
        .join(resumed.select("resource_id"), on="resource_id", how="semi")
        .filter(~pl.col("started_logged"))
        .join(carried, on="correlation_id", how="anti")
        .select(pl.len())
        .collect()
        .item()
    )
    if unstarted:
        return f"{unstarted} operation(s) without their Started event after the cut"
    return None


def spliced_intervals(
    prefix: pl.LazyFrame, suffix: pl.LazyFrame, points: pl.LazyFrame
) -> pl.LazyFrame:
    """`power_intervals` rows: a resumed machine's `prefix` rows (the published ones) before its
    resume point, then its `suffix` rows (`power.intervals_of` the resumed states), an interval
    of one state across the resume point merged back into one; other machines' `suffix` rows."""
    starts = points.select("resource_id", "resume_at").filter(pl.col("resume_at").is_not_null())
    before = (
        prefix.join(starts, on="resource_id", how="inner")
        .filter(pl.col("start_at") < pl.col("resume_at"))
        .with_columns(end_at=pl.min_horizontal("end_at", "resume_at"))
        .drop("resume_at")
    )
    columns = suffix.collect_schema().names()
    rows = pl.concat([before.select(columns), suffix]).sort("resource_id", "start_at")
    # A machine's state says whether it is billable: merging by state merges by both.
    return merge_runs(rows, ("resource_id",), "state")
