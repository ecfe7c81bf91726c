"""One row per power event, whichever sources reported it.

The same Activity Log event can reach the lake three ways: from the Activity Log API (90 days),
from a Log Analytics workspace fed by a diagnostic setting (`AzureActivity`), and from a
storage account the diagnostic setting archives to. The sources do not share an event id
(archive records carry none), so an event is known by what every source reports of it: the
machine, the operation's correlation id, the operation and the status. Two rows with the same
identity are the same event, never two: a Started counted twice would still be one operation,
but a lake that holds both copies would show twice the events to anyone who counts them.

Where sources overlap, the Activity Log API wins (it is Azure's own record; the others are
copies made by a diagnostic setting), then Log Analytics, then archive storage. Rows of one source
are never merged here: each collector keeps one row per event id of its own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

import polars as pl

# `source` values of `power_events`, most trusted first.
SOURCE_PRECEDENCE: Final = ("activity_log", "log_analytics", "archive_storage")
EVENT_IDENTITY: Final = ("resource_id", "correlation_id", "operation", "status")


def one_row_per_event(events: pl.DataFrame) -> pl.DataFrame:
    """`events` (POWER_EVENTS rows) without the copies a less trusted source holds of an event a
    more trusted one has: each identity keeps the rows of its most trusted source only.

    Rows of one source are left as they are (that source's own collector already keeps one row
    per event id). A source not in `SOURCE_PRECEDENCE` (the simulator's bulk lake, tests) ranks
    after them. Row order is kept.
    """
    rank = pl.col("source").replace_strict(
        {source: index for index, source in enumerate(SOURCE_PRECEDENCE)},
        default=len(SOURCE_PRECEDENCE),
        return_dtype=pl.Int32,
    )
    return events.filter(rank == rank.min().over(EVENT_IDENTITY))


def merged_source_month(
    existing: pl.DataFrame, fresh: pl.DataFrame, *, source: str, since: datetime, until: datetime
) -> pl.DataFrame:
    """A month partition after `source` re-read `[since, until)`: `fresh` replaces the rows
    `source` had there, every other row stays, and each event keeps one row.

    Both frames carry every POWER_EVENTS column; `fresh` holds only `source`'s rows of the span.
    """
    replaced = (
        (pl.col("source") == source) & (pl.col("event_at") >= since) & (pl.col("event_at") < until)
    )
    kept = existing.filter(~replaced)
    return one_row_per_event(pl.concat([kept, fresh.select(existing.columns)], how="vertical"))
