"""Billable time: each machine's power timeline, rebuilt backwards from the present, and its
billable hours per UTC day.

How the timeline is rebuilt (DESIGN.md "Billing semantics"): each machine's evidence, in time
order, is its Activity Log operations and the power states its inventory snapshots observed.

- Each operation (Started .. Succeeded / Failed, one correlation id) puts the machine in a
  transitional state while it runs; only a Succeeded operation changes the state after it; a
  Failed one returns the machine to the state it had.
- A snapshot's state holds backwards to the previous piece of evidence and forwards to the next:
  nothing logged in between changed it. A guest-OS shutdown logs nothing, so a snapshot saying
  `stopped` after a successful start is explained by one (still allocated, still billable). The
  latest snapshot is "the present"; a machine with no operation in the window kept its state
  all window.
- Before its first piece of evidence that settles a state, a machine was in the state that
  evidence starts from (`_STATE_BEFORE`: a start implies deallocated, anything else running; a
  creating write implies the machine did not exist yet; a snapshot, what it saw).
- A machine exists from its creation (Compute `timeCreated`, or its creating write, or the
  move that gave it this id) until its delete succeeds (or a move takes its id away, or it
  vanished from the inventory without a delete event: then at its last sighting); deleted
  machines, known only from the Activity Log, are kept.

Azure Arc machines (billable while Connected) have two Activity Log operations, their
registration (`write`, a creation: Connected after it) and removal (`delete`), and no heartbeat
events. Each inventory snapshot of one carries its status and `lastStatusChange`, the instant
that status began: one more piece of evidence, a status change with no transitional state. It
settles the status from then on, and the status before it holds until it (a status that began
and ended between two snapshots is not seen). Before its first change an Arc machine was
Connected (`billing.ARC_STATUS_BEFORE`), except that an Expired status was Disconnected for the
45 days before it (`billing.ARC_EXPIRY_DAYS`, added as a change of its own).

Decisions, documented: a `restart` keeps the machine allocated and its power state `running`
throughout (Azure reports no transitional power state for a restart), so it is billable; a
configuration `write` of an existing machine changes nothing. Everything is computed with sorts,
shifts and cumulative window expressions per resource id: no Python loop per machine or event.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

import polars as pl

from transforms import billing
from transforms.contract import UTC_TIMESTAMP, conform_view
from transforms.machines import (
    classified_operations,
    machine_identities,
    power_snapshots,
    run_index,
)

# The state a machine is in, in this module, before it exists and after it is deleted; such
# intervals are dropped from `power_intervals`.
ABSENT: Final = "deleted"
# A machine in the inventory whose power state the instance view did not report.
UNKNOWN_STATE: Final = "unknown"
# A machine known only from events, with no successful operation to infer its earlier state
# from, is assumed running: what it did before its first event is unknown, and a machine that
# exists is usually running.
ASSUMED_STATE: Final = "running"

# State after a Succeeded operation (Learn: virtual-machines/states-billing). A write changes
# nothing unless it creates the machine (then `running`).
_STATE_AFTER: Final = {
    "start": "running",
    "deallocate": "deallocated",
    "power_off": "stopped",
    "restart": "running",
    "delete": ABSENT,
}
# State while the operation runs. Restart and update writes have none: the machine stays in the
# state it had (allocated and running for a restart). A creating write is `creating`.
_STATE_DURING: Final = {
    "start": "starting",
    "deallocate": "deallocating",
    "power_off": "stopping",
    "delete": "deleting",
}
# State inferred before a machine's first state-changing (or still running) operation when no
# snapshot precedes it. A start from `stopped` (after a guest-OS shutdown) is indistinguishable
# in the Activity Log from a start from `deallocated`; deallocated is assumed because the
# portal's Stop deallocates (an earlier snapshot settles it). Running and stopped are both
# billable, so guessing between them changes nothing.
_STATE_BEFORE: Final = {
    "start": "deallocated",
    "deallocate": "running",
    "power_off": "running",
    "restart": "running",
    "delete": "running",
}

# What a resumed machine's timeline starts from (`transforms.resume.RESUME_POINTS` holds them
# with the rest of its seeds): the instant of the first item it is rebuilt from, the last state
# its earlier items settled, the state before the first of them that settles one, and when the
# last of their operations ended.
RESUME_SEEDS: Final = pl.Schema(
    {
        "resource_id": pl.String(),
        "resume_at": UTC_TIMESTAMP,
        "seed_settled": pl.String(),
        "seed_initial": pl.String(),
        "seed_busy_until": UTC_TIMESTAMP,
    }
)

_HOUR: Final = timedelta(hours=1)
_MICROSECONDS_PER_HOUR: Final = 3_600_000_000


def _utc(value: datetime) -> pl.Expr:
    if value.tzinfo is None:
        raise ValueError(f"window bound {value!r} must be a timezone-aware UTC datetime")
    return pl.lit(value).cast(UTC_TIMESTAMP)


def _window(
    inventory: pl.LazyFrame,
    power_events: pl.LazyFrame,
    window_start: datetime,
    window_end: datetime | None,
) -> pl.LazyFrame:
    """One row: the window's bounds. The end defaults to the present: the latest inventory
    snapshot, or the latest event if one was logged after it."""
    if window_end is not None:
        return _fixed_window(window_start, window_end)
    latest_snapshot = inventory.select(latest=pl.col("snapshot_at").max())
    latest_event = power_events.select(latest=pl.col("event_at").max())
    return (
        pl.concat([latest_snapshot, latest_event])
        .select(window_end=pl.col("latest").max())
        .with_columns(window_start=_utc(window_start))
    )


def _fixed_window(window_start: datetime, window_end: datetime) -> pl.LazyFrame:
    return pl.LazyFrame({"window_start": [None]}).select(
        window_start=_utc(window_start), window_end=_utc(window_end)
    )


def _machine_bounds(
    identities: pl.LazyFrame, window: pl.LazyFrame, resume: pl.LazyFrame | None = None
) -> pl.LazyFrame:
    """Per machine: its kind, its last sighting, the span [lo, hi) it can have intervals in,
    and where its timeline resumes (`resume`: `transforms.resume.RESUME_POINTS`; none: every
    machine from its first evidence). A resumed machine's intervals begin at `resume_at`;
    `whole_lo` is where they would begin without it."""
    known_start = pl.coalesce("moved_in_at", "created_at")
    existed_from = pl.when(known_start.is_not_null()).then(
        pl.min_horizontal(known_start, "first_event_at")
    )
    vanished_at = pl.when(
        ~pl.col("in_latest_snapshot") & pl.col("last_seen_at").is_not_null()
    ).then(pl.max_horizontal("last_seen_at", "last_event_at"))
    bounds = identities.join(window, how="cross").select(
        "resource_id",
        "machine_kind",
        "last_seen_at",
        # The machine's number in resource id order: sorts, windows and merges are keyed by it,
        # never by the ~130-character id (an integer compares and hashes ~10x faster), and the
        # order is the same as the id's.
        machine=pl.col("resource_id").rank("dense"),
        whole_lo=pl.max_horizontal("window_start", existed_from),
        hi=pl.min_horizontal("window_end", pl.coalesce("moved_at", vanished_at)),
    )
    if resume is None:
        resume = pl.LazyFrame(schema=RESUME_SEEDS)
    return bounds.join(
        resume.select(RESUME_SEEDS.names()), on="resource_id", how="left"
    ).with_columns(lo=pl.max_horizontal("whole_lo", "resume_at"))


def status_changes(snapshots: pl.LazyFrame) -> pl.LazyFrame:
    """The Arc status changes `power_snapshots` tell of: resource_id, at, changed_to, and the
    `snapshot_at` that told (several snapshots of one unchanged status name the same change).

    An Arc snapshot's `lastStatusChange`: the status it saw began then. An Expired status began
    45 days after the disconnection that led to it (`billing.ARC_EXPIRY_DAYS`).
    """
    changes = snapshots.filter(pl.col("status_changed_at").is_not_null()).select(
        "resource_id", "snapshot_at", at="status_changed_at", changed_to="power_state"
    )
    expired = pl.col("changed_to") == billing.ARC_EXPIRED
    disconnections = changes.filter(expired).select(
        "resource_id",
        "snapshot_at",
        at=pl.col("at") - timedelta(days=billing.ARC_EXPIRY_DAYS),
        changed_to=pl.lit(billing.ARC_DISCONNECTED),
    )
    return pl.concat([changes, disconnections])


def _evidence(ops: pl.LazyFrame, snapshots: pl.LazyFrame, bounds: pl.LazyFrame) -> pl.LazyFrame:
    """Operations and snapshot observations of each machine as one time-ordered stream.

    Every machine of `bounds` has at least one row: one without evidence has a single row with
    `at` null. A snapshot taken while an operation was running is dropped: the operation's
    transitional state is the better evidence for that span.
    """
    operation_rows = ops.select(
        "resource_id",
        "correlation_id",
        "operation",
        "outcome",
        "ended_at",
        "is_creation",
        at="started_at",
        observed_state=pl.lit(None, dtype=pl.String),
        changed_to=pl.lit(None, dtype=pl.String),
    )
    # Snapshot and status-change rows fill an operation's columns with nothing.
    not_an_operation = {
        "correlation_id": pl.lit(None, dtype=pl.String),
        "operation": pl.lit(None, dtype=pl.String),
        "outcome": pl.lit(None, dtype=pl.String),
        "ended_at": pl.lit(None, dtype=UTC_TIMESTAMP),
        "is_creation": pl.lit(False),
    }
    snapshot_rows = snapshots.select(
        "resource_id",
        **not_an_operation,
        at="snapshot_at",
        observed_state="power_state",
        changed_to=pl.lit(None, dtype=pl.String),
    )
    status_change_rows = (
        status_changes(snapshots)
        .unique(subset=["resource_id", "at", "changed_to"], keep="any")
        .select(
            "resource_id",
            **not_an_operation,
            at="at",
            observed_state=pl.lit(None, dtype=pl.String),
            changed_to="changed_to",
        )
    )
    is_operation = pl.col("operation").is_not_null()
    busy_until = pl.when(is_operation).then(pl.col("ended_at").fill_null(pl.col("hi")))
    at = pl.col("at")
    # A resumed machine's evidence before `resume_at` is summed up by its seeds: the operations
    # before it have ended by `seed_busy_until`.
    from_resume = pl.col("resume_at").is_null() | at.is_null() | (at >= pl.col("resume_at"))
    return (
        bounds.join(
            pl.concat([operation_rows, snapshot_rows, status_change_rows]),
            on="resource_id",
            how="left",
        )
        .filter(from_resume)
        .sort("machine", "at", "ended_at", "correlation_id", nulls_last=True)
        # When the operations before each item end: their ends' running maximum, carried over
        # the items that are no operation (`cum_max` leaves those null), and for a resumed
        # machine the end of its operations before `resume_at`.
        .with_columns(
            busy_until=pl.max_horizontal(
                busy_until.cum_max().forward_fill().shift(1).over("machine"), "seed_busy_until"
            )
        )
        .filter(is_operation | pl.col("busy_until").is_null() | (at >= pl.col("busy_until")))
        .drop("busy_until")
    )


def _running(state: pl.Expr) -> pl.Expr:
    """`state` for the machine's kind: an Arc machine's counterpart of `running` (a VM's state
    once created, before a deallocate, assumed without evidence) is Connected."""
    return (
        pl.when((pl.col("machine_kind") == "arc") & (state == "running"))
        .then(pl.lit(billing.ARC_CONNECTED))
        .otherwise(state)
    )


def _evidence_states(evidence: pl.LazyFrame) -> pl.LazyFrame:
    """Each item of each machine's evidence stream with the states it implies (see the module
    docstring): `state_after` (what it settles, if anything), `last_settled` (the last state
    settled up to it), `initial_state`, and the segments' bounds and states that
    `_evidence_segments` cuts.

    Every item of evidence settles a state: a Succeeded operation its target, a snapshot what it
    saw. Between two items the machine is in the settled state, except that a snapshot's state
    also holds backwards to the previous item (nothing logged in between changed it). An
    operation spends [started_at, ended_at) in its transitional state. A resumed machine's
    seeds stand for its items before `resume_at`: the last state they settled (`seed_settled`)
    and the state before the first of them that settles one (`seed_initial`).
    """
    operation = pl.col("operation")
    # Snapshots and Arc status changes: evidence that is not an operation.
    is_snapshot = operation.is_null()
    changed_to = pl.col("changed_to")
    per_machine = "machine"
    succeeded = pl.col("outcome") == "succeeded"
    return (
        evidence.with_columns(
            state_after=pl.when(changed_to.is_not_null())
            .then(changed_to)
            .when(is_snapshot)
            .then("observed_state")
            .when(pl.col("is_creation"))
            .then(_running(pl.lit("running")))
            .when(succeeded)
            .then(
                _running(
                    operation.replace_strict(_STATE_AFTER, default=None, return_dtype=pl.String)
                )
            ),
            state_before=pl.when(changed_to.is_not_null())
            .then(
                changed_to.replace_strict(
                    billing.ARC_STATUS_BEFORE, default=None, return_dtype=pl.String
                )
            )
            .when(is_snapshot)
            .then("observed_state")
            .when(pl.col("is_creation"))
            .then(pl.lit(ABSENT))
            .otherwise(
                _running(
                    operation.replace_strict(_STATE_BEFORE, default=None, return_dtype=pl.String)
                )
            ),
            next_at=pl.col("at").shift(-1).over(per_machine),
            next_observed_state=pl.col("observed_state").shift(-1).over(per_machine),
        )
        .with_columns(
            initial_state=pl.coalesce(
                "seed_initial",
                pl.col("state_before")
                .filter(pl.col("state_after").is_not_null() | (pl.col("outcome") == "in_progress"))
                .first()
                .over(per_machine),
                _running(pl.lit(ASSUMED_STATE)),
            ),
            last_settled=pl.coalesce(
                pl.col("state_after").forward_fill().over(per_machine), "seed_settled"
            ),
        )
        .with_columns(
            settled_before=pl.coalesce(
                pl.col("last_settled").shift(1).over(per_machine), "seed_settled", "initial_state"
            ),
            settled=pl.coalesce("next_observed_state", "last_settled", "initial_state"),
            segment_end=pl.col("next_at").fill_null(pl.col("hi")),
        )
        .with_columns(
            during=pl.when(pl.col("settled_before") == ABSENT)
            .then(pl.when(operation == "write").then(pl.lit("creating")).otherwise(pl.lit(ABSENT)))
            .otherwise(
                pl.coalesce(
                    operation.replace_strict(_STATE_DURING, default=None, return_dtype=pl.String),
                    "settled_before",
                )
            ),
            settled_from=pl.when(is_snapshot)
            .then("at")
            .otherwise(
                pl.min_horizontal("ended_at", "segment_end").fill_null(pl.col("segment_end"))
            ),
        )
    )


def _evidence_segments(states: pl.LazyFrame) -> pl.LazyFrame:
    """The state segments of `_evidence_states`' items, each [start_at, end_at) unclipped."""
    operation = pl.col("operation")
    is_snapshot = operation.is_null()
    per_machine = "machine"
    # Before its first item (or all window, for a machine without evidence: an inventoried
    # machine whose power state was never reported is `unknown`, one seen only in events running).
    no_evidence_state = (
        pl.when(pl.col("last_seen_at").is_not_null())
        .then(pl.lit(UNKNOWN_STATE))
        .otherwise(_running(pl.lit(ASSUMED_STATE)))
    )
    is_first = pl.int_range(pl.len()).over(per_machine) == 0
    kept = ("resource_id", "machine", "machine_kind", "lo", "hi")
    before_first = states.filter(is_first).select(
        *kept,
        state=pl.when(pl.col("at").is_null())
        .then(no_evidence_state)
        .otherwise(pl.coalesce("observed_state", "settled_before")),
        start_at="lo",
        end_at=pl.coalesce("at", "hi"),
    )
    during = states.filter(~is_snapshot).select(
        *kept, state="during", start_at="at", end_at="settled_from"
    )
    settled = states.filter(pl.col("at").is_not_null()).select(
        *kept, state="settled", start_at="settled_from", end_at="segment_end"
    )
    return pl.concat([before_first, during, settled])


def _states(
    identities: pl.LazyFrame,
    ops: pl.LazyFrame,
    snapshots: pl.LazyFrame,
    window: pl.LazyFrame,
    resume: pl.LazyFrame | None = None,
) -> pl.LazyFrame:
    return _evidence_states(_evidence(ops, snapshots, _machine_bounds(identities, window, resume)))


def _timeline(states: pl.LazyFrame) -> pl.LazyFrame:
    """Merged power intervals with `machine_kind` and `billable`, clipped to the window."""
    segments = (
        _evidence_segments(states)
        .with_columns(
            start_at=pl.max_horizontal("start_at", "lo"), end_at=pl.min_horizontal("end_at", "hi")
        )
        .filter((pl.col("start_at") < pl.col("end_at")) & (pl.col("state") != ABSENT))
        .sort("machine", "start_at")
    )
    return merge_runs(segments, ("machine",), "state").with_columns(
        billable=pl.when(pl.col("machine_kind") == "arc")
        .then(pl.col("state").is_in(sorted(billing.ARC_BILLABLE_STATES)))
        .otherwise(pl.col("state").is_in(sorted(billing.VM_BILLABLE_STATES)))
    )


def merge_runs(segments: pl.LazyFrame, keys: tuple[str, ...], value: str) -> pl.LazyFrame:
    """Merge consecutive, touching segments with the same `value` (sorted by keys, start_at;
    the merged segments keep that order).

    A run's segments touch end to start, so the run ends where its last segment does: each run
    is its first row with the last row's `end_at`, found by shifts over the sorted rows rather
    than a group-by of nearly as many groups as rows."""
    starts_run = (
        (pl.col("key_run") != pl.col("key_run").shift(1))
        | (pl.col(value) != pl.col(value).shift(1))
        | (pl.col("start_at") != pl.col("end_at").shift(1))
    ).fill_null(True)
    ends_run = pl.col("starts_run").shift(-1, fill_value=True)
    return (
        segments.with_columns(key_run=run_index(*keys))
        .with_columns(starts_run=starts_run)
        .with_columns(end_at=pl.when(ends_run).then("end_at").backward_fill())
        .filter(pl.col("starts_run"))
        .drop("key_run", "starts_run")
    )


def power_intervals(
    inventory: pl.LazyFrame,
    power_events: pl.LazyFrame,
    *,
    window_start: datetime,
    window_end: datetime | None = None,
) -> pl.LazyFrame:
    """The `power_intervals` view: each machine's power states over [window_start, window_end).

    `inventory` and `power_events` have the raw lake schemas (schemas.INVENTORY, POWER_EVENTS);
    `window_start` is the start of the events window (before it nothing is known), `window_end`
    the present (default: the latest inventory snapshot or event). Consecutive intervals of one
    state are merged.
    """
    identities = machine_identities(inventory, power_events)
    window = _window(inventory, power_events, window_start, window_end)
    return intervals_of(
        _states(
            identities,
            classified_operations(power_events, identities),
            power_snapshots(inventory),
            window,
        )
    )


def evidence_states(
    identities: pl.LazyFrame,
    ops: pl.LazyFrame,
    snapshots: pl.LazyFrame,
    *,
    window_start: datetime,
    window_end: datetime,
    resume: pl.LazyFrame | None = None,
) -> pl.LazyFrame:
    """Every machine's evidence items with the states they imply (`intervals_of` cuts them
    into intervals, `transforms.resume.resume_points` sums them up at a cut); with `resume`
    (`transforms.resume.RESUME_POINTS`), a resumed machine's items from its `resume_at` only,
    its seeds standing for the earlier ones."""
    window = _fixed_window(window_start, window_end)
    return _states(identities, ops, snapshots, window, resume)


def intervals_of(states: pl.LazyFrame) -> pl.LazyFrame:
    """The `power_intervals` rows of `evidence_states` (a resumed machine's from its
    `resume_at`)."""
    return conform_view(
        _timeline(states).select("resource_id", "state", "start_at", "end_at", "billable"),
        "power_intervals",
    )


def clock_hour_spans(intervals: pl.LazyFrame, keys: tuple[str, ...]) -> pl.LazyFrame:
    """Disjoint spans of whole clock hours covering `intervals`, per `keys`.

    Each interval [start_at, end_at) is widened to the clock hours it touches; overlapping or
    shared hours (two intervals in one hour, or two ids of a moved machine) count once. Output:
    `keys`, start_at, end_at, both on the hour.
    """
    start_hour = pl.col("start_at").dt.truncate("1h")
    end_floor = pl.col("end_at").dt.truncate("1h")
    end_hour = pl.when(end_floor == pl.col("end_at")).then(end_floor).otherwise(end_floor + _HOUR)
    return (
        intervals.select(*keys, start_at=start_hour, end_at=end_hour)
        .sort(*keys, "start_at", "end_at")
        .with_columns(key_run=run_index(*keys))
        .with_columns(covered_until=pl.col("end_at").cum_max().shift(1).over("key_run"))
        .with_columns(start_at=pl.max_horizontal("start_at", "covered_until"))
        .filter(pl.col("start_at") < pl.col("end_at"))
        .drop("covered_until", "key_run")
    )


def split_by_day(spans: pl.LazyFrame) -> pl.LazyFrame:
    """Split [start_at, end_at) spans at UTC midnights: adds `usage_date` and `microseconds`."""
    day_start = pl.col("usage_date").cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    return (
        spans.with_columns(
            usage_date=pl.date_ranges(
                pl.col("start_at").dt.date(),
                (pl.col("end_at") - pl.duration(microseconds=1)).dt.date(),
            )
        )
        .explode("usage_date")
        .with_columns(
            microseconds=(
                pl.min_horizontal("end_at", day_start + timedelta(days=1))
                - pl.max_horizontal("start_at", day_start)
            ).dt.total_microseconds()
        )
    )


def machine_hours_daily(
    intervals: pl.LazyFrame,
    machines: pl.LazyFrame,
    *,
    partial_hours: str = billing.PARTIAL_HOURS_DEFAULT,
) -> pl.LazyFrame:
    """The `machine_hours_daily` view from `power_intervals` and the `machines` view.

    One row per machine and UTC day it existed on (0 hours when it was never billable that
    day). `partial_hours` (billing.PARTIAL_HOURS_MODES): `fractional` counts billable time to the
    microsecond; `round_up_clock_hour` counts every clock hour with any billable time as a full
    hour (never more than once per hour).
    """
    if partial_hours not in billing.PARTIAL_HOURS_MODES:
        modes = ", ".join(billing.PARTIAL_HOURS_MODES)
        raise ValueError(f"partial_hours {partial_hours!r} is not one of {modes}")
    # Days are grouped, joined and sorted by the machine's number (its id's rank: the same order
    # as the id's), and the ~130-character ids are joined back once per machine at the end.
    coded = intervals.with_columns(code=pl.col("resource_id").cast(pl.Categorical).to_physical())
    numbered = (
        coded.group_by("code")
        .agg(pl.col("resource_id").first())
        .join(machines.select("resource_id", "subscription_id"), on="resource_id", how="left")
        .with_columns(machine=pl.col("resource_id").rank("dense"))
    )
    per_day = split_by_day(coded.select("code", "start_at", "end_at", "billable"))
    if partial_hours == "fractional":
        daily = per_day.group_by("code", "usage_date").agg(
            microseconds=pl.col("microseconds").filter(pl.col("billable")).sum()
        )
    else:
        existed = per_day.select("code", "usage_date").unique()
        billable = (
            split_by_day(clock_hour_spans(coded.filter(pl.col("billable")), ("code",)))
            .group_by("code", "usage_date")
            .agg(pl.col("microseconds").sum())
        )
        daily = existed.join(
            billable, on=["code", "usage_date"], how="full", coalesce=True
        ).with_columns(pl.col("microseconds").fill_null(0))
    view = (
        daily.join(numbered, on="code", how="left")
        .sort("usage_date", "machine")
        .select(
            "usage_date",
            "resource_id",
            "subscription_id",
            billable_hours=pl.col("microseconds") / _MICROSECONDS_PER_HOUR,
        )
    )
    return conform_view(view, "machine_hours_daily")
