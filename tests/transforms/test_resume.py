"""Timelines resumed from the last build's resume points equal the whole history's.

Random estates (the strategies of `test_properties`: valid and nonsensical Activity Logs,
operations still running, snapshots of any state) are collected twice: up to a random instant
of January or February, then to the end of February. The second build resumes each machine
from the points the first recorded at the cut (the first instant of the first collection's
month) and reads only the events from the cut on, with the events the first build carried. When
`resume_refused` lets it, its machines, its intervals (spliced to the first build's before each
resume point) and the resume state it records all equal what the whole history gives.
"""

from datetime import timedelta

import polars as pl
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from tests.transforms.test_properties import (
    MACHINES,
    WINDOW_END,
    WINDOW_MINUTES,
    WINDOW_START,
    operations,
    random_lake,
    snapshots,
)
from transforms.marts import (
    EstateFacts,
    RawLake,
    Timelines,
    chunk_timelines,
    resumed_timelines,
)
from transforms.resume import spliced_intervals


def collected(lake, until, *, events_from=None) -> tuple[RawLake, EstateFacts]:
    """The raw lake a collection at `until` holds of `lake` (its events from `events_from`)."""
    events = lake.power_events.filter(pl.col("event_at") < until)
    if events_from is not None:
        events = events.filter(pl.col("event_at") >= events_from)
    inventory = lake.inventory.filter(pl.col("snapshot_at") <= until)
    latest = inventory.select(pl.col("snapshot_at").max().dt.date()).collect().item()
    raw = RawLake(inventory, lake.pricings, events, lake.costs)
    return raw, EstateFacts((WINDOW_START, until), latest, None)


def ordered(frame: pl.DataFrame, *keys: str) -> pl.DataFrame:
    return frame.sort(*keys, nulls_last=True)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(operations, max_size=20),
    sightings=st.lists(snapshots, max_size=8),
    first_collection=st.integers(min_value=1, max_value=WINDOW_MINUTES - 1),
)
# A snapshot after the resume point, taken while an operation begun before it still ran: Jan 31
# a deallocate 20:00 - 23:30, a start 22:00 - 22:10 (the resume point: the last item before
# the cut, Feb 1), a snapshot at 23:00, dropped for the deallocate still running.
@example(
    ops=[
        (MACHINES[0], "deallocate", 30 * 1440 + 20 * 60, 210, "Succeeded"),
        (MACHINES[0], "start", 30 * 1440 + 22 * 60, 10, "Succeeded"),
    ],
    sightings=[(MACHINES[0], "running", 30 * 1440 + 23 * 60, False)],
    first_collection=31 * 1440 + 6 * 60,
)
# A creating write (Jan 10) before the resume point (a snapshot, Jan 20): the write of Feb 2
# after the cut is an update, and the machine was created on Jan 10.
@example(
    ops=[
        (MACHINES[1], "write", 9 * 1440, 5, "Succeeded"),
        (MACHINES[1], "write", 32 * 1440, 5, "Succeeded"),
    ],
    sightings=[(MACHINES[1], "running", 19 * 1440, False)],
    first_collection=31 * 1440 + 12 * 60,
)
def test_timelines_resumed_from_the_last_build_equal_the_whole_history(
    ops, sightings, first_collection
):
    lake = random_lake(ops, sightings)
    first_raw, first_facts = collected(lake, WINDOW_START + timedelta(minutes=first_collection))
    first = chunk_timelines(first_raw, first_facts)
    whole_raw, facts = collected(lake, WINDOW_END)
    whole = chunk_timelines(whole_raw, facts)
    cut = first.resume.cut
    suffix_raw, _ = collected(lake, WINDOW_END, events_from=cut)
    resumed = resumed_timelines(suffix_raw, facts, first.resume)
    if isinstance(resumed, str):
        event(f"refused: {resumed.split(' ', 1)[1]}")
        return
    event("resumed")
    assert isinstance(resumed, Timelines)
    assert_frame_equal(resumed.machines, whole.machines)
    spliced = spliced_intervals(
        first.power_intervals.lazy(), resumed.power_intervals.lazy(), first.resume.points.lazy()
    ).collect()
    assert_frame_equal(
        ordered(spliced, "resource_id", "start_at"),
        ordered(whole.power_intervals, "resource_id", "start_at"),
    )
    assert resumed.resume.cut == whole.resume.cut
    assert_frame_equal(
        ordered(resumed.resume.points, "resource_id"), ordered(whole.resume.points, "resource_id")
    )
    event_key = ("correlation_id", "event_at", "status", "resource_id", "operation")
    assert_frame_equal(
        ordered(resumed.resume.carried.unique(), *event_key),
        ordered(whole.resume.carried.unique(), *event_key),
    )
    assert_frame_equal(
        ordered(resumed.resume.bounds, "resource_id"), ordered(whole.resume.bounds, "resource_id")
    )
