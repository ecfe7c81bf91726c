"""Which months of a chunk an incremental build recomputes (pure; `flows.build` does the I/O).

A build's unit of reuse is (chunk of subscriptions, month). A chunk's machines and power
intervals are rebuilt on every build that touches the chunk: a machine's timeline is rebuilt
backwards from the present, so a new snapshot or event can change its past (a snapshot's state
holds back to the previous piece of evidence, an Arc machine's Expired status reaches 45 days
back, a delete ends a machine at its last sighting). They are rebuilt from the resume points
the last build recorded at its cut when none of the chunk's power events or inventory files
before the cut changed
(`transforms.resume`, which says when that gives the whole history's timeline), else from the
whole history. Every other chunked view, and the chunk's parts of the estate-wide views, are
rows of a day or a month; a month is recomputed from the first month a change can reach:

- the earliest month of a changed lake file of the chunk (power events and costs by month,
  inventory and pricings snapshots by day; not a cost file collected again with the same rows,
  `flows.incremental.collected_again_alike`), and the months the estate's facts moved in (the
  end of the power history, the estate's last billed day);
- the month of the first instant at which the recomputed power intervals differ from the
  published ones (`first_difference_sql`): how far back the new evidence reached;
- every month, when a machine's description (name, kind, plan, sensor, tags: everything but when
  it was last seen) differs from the published one, or the settings, price book, code or
  history start differ (the caller then builds in full).

The downstream views are computed from the day before (`lookback_start`: a plan change on the
1st compares with the day before; nothing looks further back), and rows before the recompute
start are discarded: those months are copied from the published warehouse. Nothing else
crosses months: a seat block's count spans its months, but the estate step counts it from every
chunk's machines of each block (`options.block_members`, `options.seat_block_parts`), the copied
months' with the recomputed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Final

import polars as pl

# The machines view's columns that say when the machine was last listed: every collection moves
# them, and no view reads them but the timeline (whose change `first_difference_sql` measures).
SIGHTING_COLUMNS: Final = ("last_seen_at",)
_INTERVAL_KEY: Final = ("resource_id", "start_at")


def month_start(moment: date | datetime) -> date:
    """The first day of `moment`'s month (a datetime is read in UTC)."""
    day = moment.astimezone(UTC).date() if isinstance(moment, datetime) else moment
    return day.replace(day=1)


def recompute_start(first_changed: date, history_start: datetime | None) -> date | None:
    """The first month to recompute when `first_changed` is the first month a change reaches;
    None when that is the history's first month or earlier (the whole history is recomputed)."""
    start = month_start(first_changed)
    if history_start is None or start <= month_start(history_start):
        return None
    return start


def lookback_start(recompute_from: date) -> date:
    """The day before `recompute_from`: the downstream views are computed from there, so a
    comparison with the day before (`anomalies.plan_changes`) sees it, and its rows are
    discarded. No view looks further back: the others are of a day, or of a month, and a
    recomputed month is read whole."""
    return recompute_from - timedelta(days=1)


def first_difference_sql(old: str, new: str) -> str:
    """SQL for the first instant at which two SELECTs of `power_intervals` rows (`old`, `new`)
    disagree, or NULL.

    Intervals are matched by machine and start: a pair in the same state that ends at two times
    agrees until the earlier end (the last interval of a machine grows with the history); an
    interval on one side only, or a pair in different states, disagrees from its start. In SQL
    because the published side is in DuckDB: reading a chunk's ~400,000 intervals out of it
    took longer than the comparison.
    """
    return f"""
        SELECT min(CASE
            WHEN old.state IS NULL OR new.state IS NULL OR old.state <> new.state
                OR old.billable <> new.billable THEN start_at
            WHEN old.end_at <> new.end_at THEN least(old.end_at, new.end_at)
        END)
        FROM ({old}) AS old FULL JOIN ({new}) AS new USING (resource_id, start_at)
    """


def machines_differ(old: pl.DataFrame, new: pl.DataFrame) -> bool:
    """True when the machines' descriptions differ (`SIGHTING_COLUMNS` aside), whatever the
    rows' order."""
    columns = [name for name in new.columns if name not in SIGHTING_COLUMNS]
    if set(old.columns) != set(new.columns) or old.height != new.height:
        return True
    ordered_old = old.select(columns).sort("resource_id")
    return not ordered_old.equals(new.select(columns).sort("resource_id"))


def reusable_plan(
    previous: Mapping[str, tuple[str, ...]],
    subscriptions: set[str],
    links: list[frozenset[str]],
) -> list[tuple[str, ...]] | None:
    """The previous build's chunks, when they still hold exactly `subscriptions` and keep each
    set of linked subscriptions (`marts.linked_subscriptions`) in one chunk; else None.

    Keeping them lets every unchanged month be copied: a new plan would move subscriptions
    between chunks as their data grows.
    """
    chunk_of = {member: key for key, members in previous.items() for member in members}
    if set(chunk_of) != subscriptions:
        return None
    for linked in links:
        if len({chunk_of[member] for member in linked if member in chunk_of}) > 1:
            return None
    return [previous[key] for key in sorted(previous)]
