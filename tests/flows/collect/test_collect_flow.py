"""The collect flow against the simulated estate: the lake holds exactly the ground truth.

Expected figures come from the estate's ground truth (`simulator.estate`), which the simulator
computes from the true machine timelines, never from the collector's own output.
"""

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from flows.collect import CollectIncomplete, CollectSummary, collect, collect_costs
from flows.collect.activity_log import WindowError
from flows.lake import dataset_files, scan_dataset
from transforms.billing import DEFENDER_METER_PATTERN, DEFENDER_METERS
from transforms.schemas import PROVENANCE_COLUMNS

pytestmark = pytest.mark.simulator

DATASETS = ("inventory", "pricings", "power_events", "costs")
# Azure shows these provisioning states with a transitional power state (instance view).
SHOWN_POWER_STATE = {"creating": "starting", "deleting": "deallocating"}
RETRY_WAIT_BOUND = 0.2


@dataclass
class Run:
    lake: Path
    summary: CollectSummary
    requests: Counter


def run_collect(simulator, lake: Path, start: date, end: date, env=(), **options) -> Run:
    """One flow run into `lake` (the config's lake overridden by environment, like any `env`
    setting given), with the simulator's request counts during the run."""
    before = Counter(simulator.requests)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MDECOST_LAKE__PATH", str(lake))
        patch.setenv("MDECOST_COLLECT__MAX_RETRY_WAIT_SECONDS", str(RETRY_WAIT_BOUND))
        for name, value in env:
            patch.setenv(name, value)
        summary = collect(
            start=start,
            end=end,
            as_of=options.pop("as_of", simulator.clock),
            config_file=simulator.config_path,
            **options,
        )
    return Run(lake, summary, Counter(simulator.requests) - before)


def without_provenance(lake: Path, dataset: str) -> pl.DataFrame:
    return scan_dataset(lake, dataset).drop(PROVENANCE_COLUMNS).collect()


def month_start(day: date) -> datetime:
    return datetime(day.year, day.month, 1, tzinfo=UTC)


# --- one run over the whole retention, under a 429 storm, with small pages ---------------------
WINDOW = (date(2026, 8, 18), date(2026, 11, 16))


@pytest.fixture(scope="module")
def full_run(simulator, prefect_harness, tmp_path_factory) -> Run:
    simulator.reset()
    simulator.faults.cost_429_rate = 0.25
    simulator.page_sizes.cost_query = 150
    simulator.page_sizes.activity_log = 60
    simulator.page_sizes.vm_list = 4
    try:
        return run_collect(simulator, tmp_path_factory.mktemp("lake"), *WINDOW)
    finally:
        simulator.reset()


def test_inventory_holds_every_machine_alive_now_scale_set_instances_too(simulator, full_run):
    estate, as_of = simulator.estate, full_run.summary.as_of
    truth = estate.alive_at(as_of).select(
        "resource_id",
        pl.col("subscription_id"),
        pl.col("resource_group").str.to_lowercase(),
        "machine_name",
        "machine_kind",
        "vm_id",
        "scale_set_name",
        "size",
        "os_type",
        "location",
        pl.col("state").replace(SHOWN_POWER_STATE).alias("power_state"),
        "mde_sensor",
    )
    lake = scan_dataset(full_run.lake, "inventory").select(truth.columns).collect()
    assert lake.sort("resource_id").equals(truth.sort("resource_id"))
    assert lake.filter(pl.col("machine_kind") == "vmss_instance").height > 0
    assert lake.height == full_run.summary.rows_by_dataset()["inventory"]
    # No scope was configured: every enabled subscription was discovered.
    assert full_run.summary.scopes == sorted(f"/subscriptions/{s}" for s in estate.subscriptions)


def test_pricings_hold_every_plan_and_override(simulator, full_run):
    """Every subscription's plan, every machine's and scale set's own setting; the others say
    whom they inherit from (the subscription, or for the instances of a set with its own
    setting, the set)."""
    estate, as_of = simulator.estate, full_run.summary.as_of
    alive = estate.alive_at(as_of)["resource_id"]
    scale_sets = [s.arm_id.lower() for s in estate.scale_set_specs]
    columns = ["subscription_id", "level", "resource_id", "pricing_tier", "sub_plan"]
    truth = estate.pricings(as_of).filter(
        (pl.col("level") == "subscription")
        | (~pl.col("inherited") & pl.col("resource_id").is_in([*alive.to_list(), *scale_sets]))
    )
    lake = scan_dataset(full_run.lake, "pricings").collect()
    own = lake.filter((pl.col("level") == "subscription") | ~pl.col("inherited"))
    assert (
        own.select(columns)
        .sort(columns, nulls_last=True)
        .equals(truth.select(columns).sort(columns, nulls_last=True))
    )
    # Every machine and scale set was asked.
    assert lake.filter(pl.col("level") == "resource").height == alive.len() + len(scale_sets)
    inherited = lake.filter(pl.col("inherited"))
    from_set = inherited["resource_id"].str.replace(r"/virtualmachines/[^/]+$", "")
    assert (
        (inherited["inherited_from"] == "/subscriptions/" + inherited["subscription_id"])
        | (inherited["inherited_from"] == from_set)
    ).all()
    assert (inherited["inherited_from"] == from_set).any()


def test_power_events_hold_every_event_since_the_retention_floor_deleted_machines_too(
    simulator, full_run
):
    estate, as_of = simulator.estate, full_run.summary.as_of
    # The first month is re-collected whole, from its first day or the retention floor.
    since = max(month_start(WINDOW[0]), as_of - timedelta(days=90))
    columns = ["event_data_id", "correlation_id", "event_at", "resource_id", "operation", "status"]
    truth = estate.activity_events().filter(
        (pl.col("event_at") >= since) & (pl.col("event_at") < as_of)
    )
    lake = without_provenance(full_run.lake, "power_events")
    assert (
        lake.select(columns)
        .sort("event_data_id")
        .equals(truth.select(columns).sort("event_data_id"))
    )
    assert set(lake["status"]) == {"Started", "Accepted", "Succeeded", "Failed"}
    # Deleted machines log their deletion; a machine moved to another subscription logs none.
    moved_out = estate.moves()["from_resource_id"].implode()
    deleted = estate.machines().filter(
        pl.col("deleted_at").is_between(since, as_of) & ~pl.col("resource_id").is_in(moved_out)
    )
    assert deleted.height > 0
    deletions = lake.filter((pl.col("operation") == "delete") & (pl.col("status") == "Succeeded"))
    assert set(deleted["resource_id"]) <= set(deletions["resource_id"])
    # The scale set deallocated and started as a whole: its events are kept on the set's id.
    scale_set = estate.scale_set_specs[0].arm_id.lower()
    on_set = lake.filter(pl.col("resource_id") == scale_set)
    assert on_set.select("operation", "status").rows() == [
        ("deallocate", "Started"),
        ("deallocate", "Accepted"),
        ("deallocate", "Succeeded"),
        ("start", "Started"),
        ("start", "Accepted"),
        ("start", "Succeeded"),
    ]


def defender_rows(cost_rows: pl.DataFrame) -> pl.DataFrame:
    """The simulator's rows of Defender for Servers meters (what a filtered query returns)."""
    return cost_rows.filter(pl.col("meter").str.to_lowercase().str.contains(DEFENDER_METER_PATTERN))


def test_costs_hold_every_defender_row_of_every_month_of_the_window_and_nothing_else(
    simulator, full_run
):
    estate, as_of = simulator.estate, full_run.summary.as_of
    every_row = estate.cost_rows(as_of=as_of).filter(
        pl.col("usage_date").is_between(date(2026, 8, 1), date(2026, 11, 30))
    )
    # The query asks for Defender for Servers meters only ([collect] cost_rows = "defender").
    truth = defender_rows(every_row)
    assert 0 < truth.height < every_row.height
    lake = scan_dataset(full_run.lake, "costs").collect()
    # The Query API returns one row per day and value of the dimensions grouped by.
    grouped_by = [
        "usage_date",
        "resource_id",
        "meter_category",
        "meter_subcategory",
        "meter",
        "service_name",
        "resource_type",
        "charge_type",
        "unit_of_measure",
    ]
    assert lake.height == truth.select(grouped_by).unique().height
    assert set(lake["cost_type"]) == {"ActualCost"}

    def totals(frame, cost, meter):
        defender = frame.filter(pl.col(meter).str.to_lowercase().is_in(list(DEFENDER_METERS)))
        return [part[cost].sum() for part in (frame, defender)]

    assert totals(lake, "billed_cost", "sku_meter") == pytest.approx(totals(truth, "cost", "meter"))
    assert lake.filter(pl.col("meter_category") == "Virtual Machines").is_empty()
    per_subscription = (
        lake.group_by("subscription_id").agg(pl.col("billed_cost").sum()).sort("subscription_id")
    )
    expected = truth.group_by("subscription_id").agg(pl.col("cost").sum()).sort("subscription_id")
    assert per_subscription["subscription_id"].to_list() == expected["subscription_id"].to_list()
    assert per_subscription["billed_cost"].to_list() == pytest.approx(expected["cost"].to_list())


def test_throttling_was_answered_with_the_largest_retry_after_and_counted(full_run):
    summary, requests = full_run.summary, full_run.requests
    assert summary.throttled == requests["cost_query_429"] > 0
    # The simulator's largest header (tenant) asks 1 s, the others 0 s: each wait is therefore
    # the 0.2 s bound; reading only the qpu header would have waited 0 s.
    assert summary.waited_seconds == pytest.approx(summary.throttled * RETRY_WAIT_BOUND)
    # Every page was fetched once and only once (azure-core retried nothing behind our back).
    pages = sum(chunk.pages for chunk in summary.chunks)
    assert requests["cost_query"] - requests["cost_query_429"] == pages > 16
    assert summary.failures == []


# --- restatement, idempotence, failures ------------------------------------------------------
def test_a_restated_day_replaces_the_first_report_and_nothing_is_counted_twice(
    simulator, prefect_harness, tmp_path
):
    # 2026-11-09 is first reported (incomplete) on the 10th and final from the 11th.
    day = date(2026, 11, 9)
    first, later = datetime(2026, 11, 10, 12, tzinfo=UTC), datetime(2026, 11, 11, 12, tzinfo=UTC)
    window = (date(2026, 11, 1), date(2026, 11, 12))

    def lake_day_and_month():
        costs = scan_dataset(tmp_path, "costs").collect()
        on_day = costs.filter(pl.col("charge_period_start").dt.date() == day)
        return on_day["billed_cost"].sum(), costs["billed_cost"].sum()

    def truth_day_and_month(as_of):
        rows = defender_rows(simulator.estate.cost_rows(as_of=as_of))
        november = rows.filter(pl.col("usage_date").is_between(*window, closed="left"))
        return november.filter(pl.col("usage_date") == day)["cost"].sum(), november["cost"].sum()

    simulator.set_clock(first)
    run_collect(simulator, tmp_path, *window)
    assert lake_day_and_month() == pytest.approx(truth_day_and_month(first))
    simulator.set_clock(later)
    run_collect(simulator, tmp_path, *window)
    restated_day, month_total = lake_day_and_month()
    assert (restated_day, month_total) == pytest.approx(truth_day_and_month(later))
    # The first report was 80 % of the final figure: the day changed and was replaced.
    assert truth_day_and_month(first)[0] == pytest.approx(0.8 * restated_day)


def test_running_the_same_window_again_gives_the_same_lake_apart_from_provenance(
    simulator, prefect_harness, tmp_path
):
    window = (date(2026, 11, 1), date(2026, 11, 16))
    both = [("MDECOST_COLLECT__COST_TYPES", '["ActualCost", "AmortizedCost"]')]
    run_collect(simulator, tmp_path, *window, env=both)
    first = {name: without_provenance(tmp_path, name) for name in DATASETS}
    files = {name: dataset_files(tmp_path, name) for name in DATASETS}
    run_collect(simulator, tmp_path, *window, env=both)
    for name in DATASETS:
        assert dataset_files(tmp_path, name) == files[name]
        assert without_provenance(tmp_path, name).equals(first[name]), name
    # Each cost type has its own partition per subscription and month.
    assert {path.parent.name for path in files["costs"]} == {
        "cost_type=ActualCost",
        "cost_type=AmortizedCost",
    }
    assert len(files["costs"]) == 2 * len(simulator.estate.subscriptions)


def test_a_scope_that_cannot_be_read_is_reported_and_the_others_land(
    simulator, prefect_harness, tmp_path
):
    known = f"/subscriptions/{simulator.estate.subscriptions[0]}"
    unknown = "/subscriptions/00000000-0000-4000-8000-00000000beef"
    with pytest.raises(CollectIncomplete) as incomplete:
        run_collect(
            simulator, tmp_path, date(2026, 11, 1), date(2026, 11, 16), scopes=[known, unknown]
        )
    summary = incomplete.value.summary
    assert summary.skipped_scopes == [unknown]
    assert {(chunk.dataset, chunk.failure[:3]) for chunk in summary.failures} == {
        ("inventory", "404"),
        ("connectors", "404"),
        ("power_events", "404"),
        ("costs", "404"),
    }
    assert f"could not read 1 scope(s):\n  inventory {unknown}" in str(incomplete.value)
    inventory = scan_dataset(tmp_path, "inventory").collect()
    assert set(inventory["scope"]) == {known}
    assert scan_dataset(tmp_path, "costs").collect().height > 0


def test_a_window_older_than_the_activity_log_retention_is_refused_before_any_call(
    simulator, prefect_harness, tmp_path
):
    before = Counter(simulator.requests)
    with pytest.raises(WindowError, match=r"Use --start 2026-08-18 or later"):
        run_collect(simulator, tmp_path, date(2026, 8, 1), date(2026, 9, 1))
    assert Counter(simulator.requests) == before
    assert not any(dataset_files(tmp_path, name) for name in DATASETS)


def test_events_older_than_the_retention_stay_in_the_lake_and_final_months_are_skipped(
    simulator, prefect_harness, tmp_path
):
    estate = simulator.estate
    # An earlier run on 2026-09-01 collected from 2026-07-15 (within its own retention).
    simulator.set_clock(datetime(2026, 9, 1, tzinfo=UTC))
    run_collect(simulator, tmp_path, date(2026, 7, 15), date(2026, 9, 1))
    simulator.reset()
    # Today's run starts 2026-08-18: July and half of August are beyond the retention now.
    today = run_collect(simulator, tmp_path, date(2026, 8, 18), date(2026, 8, 19))
    events = without_provenance(tmp_path, "power_events")
    truth = estate.activity_events().filter(pl.col("event_at") < estate.now)
    assert sorted(events["event_data_id"]) == sorted(truth["event_data_id"])
    # August's costs were final before today (Sep 1 + 35 days) and already in the lake.
    skipped = [(chunk.dataset, chunk.chunk) for chunk in today.summary.chunks if chunk.skipped]
    assert skipped == [("costs", "2026-08 ActualCost")] * len(estate.subscriptions)
    assert today.requests["cost_query"] == 0
    scope = f"/subscriptions/{estate.subscriptions[0]}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MDECOST_LAKE__PATH", str(tmp_path))
        arguments = (simulator.config_path, scope, "2026-08", "ActualCost", estate.now, estate.now)
        assert collect_costs.fn(*arguments).skipped.startswith("final since 2026-10-06")
        forced = collect_costs.fn(*arguments, force=True)
    assert (forced.skipped, forced.failure) == (None, None)
    assert forced.rows > 0


def test_every_chunk_logged_a_progress_line_and_no_log_or_parameter_holds_the_token(
    simulator, full_run
):
    from prefect import get_client
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)  # logs reach the API in batches
    with get_client(sync_client=True) as client:
        messages, offset = [], 0
        while page := client.read_logs(limit=200, offset=offset):
            messages.extend(log.message for log in page)
            offset += len(page)
        parameters = [str(run.parameters) for run in client.read_flow_runs()]
    for chunk in full_run.summary.chunks:
        assert chunk.line() in messages
    assert simulator.token not in "\n".join(messages + parameters)
    assert str(simulator.config_path) in "\n".join(parameters)
