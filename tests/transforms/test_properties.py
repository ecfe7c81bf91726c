"""Properties of billable time that hold for any estate, checked on random ones (hypothesis).

Random estates mix valid and nonsensical Activity Log histories (a start on a running VM, a
delete followed by more operations, overlapping operations, operations still in progress),
machines with and without inventory snapshots, and snapshots of any state.
"""

from datetime import date, timedelta

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.transforms.conftest import SUB_A, SUB_B, RawLake, at, build_views, vm_id
from transforms import billing
from transforms.power import clock_hour_spans, machine_hours_daily, split_by_day

WINDOW_START = at(1)
WINDOW_END = at(1, month=3)  # January and February
WINDOW_MINUTES = int((WINDOW_END - WINDOW_START).total_seconds() // 60)
MACHINES = [vm_id(SUB_A, "rg", "p0"), vm_id(SUB_A, "RG", "P1"), vm_id(SUB_B, "rg", "p2")]

operations = st.tuples(
    st.sampled_from(MACHINES),
    st.sampled_from(billing.POWER_OPERATIONS),
    st.integers(min_value=-600, max_value=WINDOW_MINUTES + 600),  # start, minutes into window
    st.integers(min_value=0, max_value=180),  # duration in minutes
    st.sampled_from(["Succeeded", "Succeeded", "Failed", "InProgress"]),
)
snapshots = st.tuples(
    st.sampled_from(MACHINES),
    st.sampled_from([*billing.VM_POWER_STATES, None]),
    st.integers(min_value=0, max_value=WINDOW_MINUTES),  # minutes into window
    st.booleans(),  # known creation time (a year before the window) or not
)


def random_lake(ops, sightings) -> RawLake:
    lake = RawLake(snapshot_at=WINDOW_END)
    for machine, state, minute, known_creation in sightings:
        lake.machine(
            machine,
            power_state=state,
            snapshot_at=WINDOW_START + timedelta(minutes=minute),
            created_at=at(1, year=2025) if known_creation else None,
        )
    for machine, operation, minute, duration, outcome in ops:
        started = WINDOW_START + timedelta(minutes=minute)
        ended = None if outcome == "InProgress" else started + timedelta(minutes=duration)
        lake.operation(machine, operation, started, ended, outcome=outcome)
    lake.pricing(SUB_A, "Standard", "P2")
    lake.pricing(SUB_B, "Standard", "P1")
    lake.price("defender_servers_p1", 0.01, date(2025, 1, 1))
    lake.price("defender_servers_p2", 0.02, date(2025, 1, 1))
    lake.price("mde_for_servers", 3.0, date(2025, 1, 1))
    return lake


def hours_per_day(spans: pl.DataFrame, name: str) -> pl.DataFrame:
    """Hours per machine and day covered by [start_at, end_at) spans."""
    return (
        split_by_day(spans.lazy())
        .group_by("resource_id", "usage_date")
        .agg((pl.col("microseconds").sum() / 3_600_000_000).alias(name))
        .collect()
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(operations, max_size=12), sightings=st.lists(snapshots, max_size=5))
def test_billable_time_is_bounded_by_existence_and_adds_up(ops, sightings):
    views = build_views(
        random_lake(ops, sightings), window_start=WINDOW_START, window_end=WINDOW_END
    )
    intervals = views["power_intervals"]
    daily = views["machine_hours_daily"]

    # Intervals of a machine are ordered, non-empty, disjoint and inside the window.
    ordered = intervals.sort("resource_id", "start_at")
    assert (ordered["start_at"] < ordered["end_at"]).all()
    assert (ordered["start_at"] >= WINDOW_START).all() and (ordered["end_at"] <= WINDOW_END).all()
    gaps = ordered.with_columns(previous_end=pl.col("end_at").shift(1).over("resource_id"))
    assert gaps.filter(pl.col("start_at") < pl.col("previous_end")).is_empty()

    # Billable hours never exceed the hours the machine existed that day. Rounded up to clock
    # hours they are whole, at least the fractional hours, and never more than the clock hours
    # the machine existed in.
    rounded = machine_hours_daily(
        intervals.lazy(), views["machines"].lazy(), partial_hours="round_up_clock_hour"
    ).collect()
    existed_clock_hours = clock_hour_spans(intervals.lazy(), ("resource_id",)).collect()
    checked = (
        daily.join(
            rounded.select("usage_date", "resource_id", rounded="billable_hours"),
            on=["resource_id", "usage_date"],
            how="full",
            coalesce=True,
        )
        .join(hours_per_day(intervals, "existed"), on=["resource_id", "usage_date"], how="left")
        .join(
            hours_per_day(existed_clock_hours, "existed_clock"),
            on=["resource_id", "usage_date"],
            how="left",
        )
    )
    assert checked.null_count().sum_horizontal().item() == 0
    assert (checked["billable_hours"] >= 0).all()
    assert (checked["billable_hours"] <= checked["existed"] + 1e-9).all()
    assert (checked["rounded"] == checked["rounded"].round(0)).all()
    assert (checked["rounded"] >= checked["billable_hours"] - 1e-9).all()
    assert (checked["rounded"] <= checked["existed_clock"]).all()
    assert (checked["existed"] <= 24).all()

    # A machine's monthly hours are the sum of its daily hours.
    machine_keys = views["machines"].select("resource_id", "machine_key")
    summed = (
        daily.join(machine_keys, on="resource_id", how="left")
        .group_by("machine_key", pl.col("usage_date").dt.month_start().alias("month"))
        .agg(daily_sum=pl.col("billable_hours").sum())
    )
    monthly = views["licensing_comparison_monthly"].join(
        summed, on=["machine_key", "month"], how="full", coalesce=True
    )
    assert monthly.filter(
        (pl.col("billable_hours").fill_null(-1) - pl.col("daily_sum").fill_null(0.0)).abs() > 1e-9
    ).is_empty()

    # The fleet's seats: peak concurrency never exceeds the distinct machines.
    fleet = views["fleet_comparison_monthly"]
    assert (fleet["peak_concurrent_machines"] <= fleet["machines_distinct"]).all()
