"""A year of power history on the first run: Log Analytics behind the Activity Log's 90 days.

A simulated estate observed for 13 months serves its AzureActivity rows from a Log Analytics
workspace (the Logs query API's wire format, through the real `LogsQueryClient`) and the last 90
days from the Activity Log API. One `collect` from November 2025 reads both, one `build` turns
the lake into the warehouse, and the warehouse's billable hours must be the estate's ground
truth (computed from its true timelines, never from events). The workspace cuts its answers at
250 rows, so most months come back partial and must be split, and throttles twice.
"""

from collections import Counter
from datetime import UTC, date, datetime, timedelta

import duckdb
import polars as pl
import pytest

from flows.build import build
from flows.collect import collect
from flows.collect.activity_log import WindowError, retention_floor
from flows.lake import scan_dataset
from flows.simulator.estate import EstateBuilder
from flows.simulator.model import MachineSpec, SubscriptionSpec
from flows.simulator.server import simulated_azure
from tests.conftest import ambiguous_machine_days, without_arc_after_one_snapshot
from transforms.event_sources import EVENT_IDENTITY

pytestmark = pytest.mark.simulator

NOW = datetime(2026, 11, 15, 12, tzinfo=UTC)
# The Activity Log keeps [2026-08-17 12:00, now): 90 days before Nov 15 12:00.
FLOOR = datetime(2026, 8, 17, 12, tzinfo=UTC)
YEAR_START = date(2025, 11, 1)
ROWS_PER_ANSWER = 250


def test_the_floor_is_ninety_days_before_now():
    assert retention_floor(NOW) == FLOOR


@pytest.fixture(scope="module")
def year_sim(tmp_path_factory):
    with simulated_azure(
        seed=7,
        machines=12,
        months=13,
        now=NOW,
        state_dir=tmp_path_factory.mktemp("year-sim"),
        history=True,
    ) as sim:
        yield sim


def _env(patch: pytest.MonkeyPatch, folder) -> None:
    patch.setenv("MDECOST_LAKE__PATH", str(folder / "lake"))
    patch.setenv("MDECOST_WAREHOUSE__PATH", str(folder / "warehouse.duckdb"))
    patch.setenv("MDECOST_COLLECT__MAX_RETRY_WAIT_SECONDS", "0.1")


@pytest.fixture(scope="module")
def year_run(year_sim, prefect_harness, tmp_path_factory):
    year_sim.page_sizes.log_analytics_rows = ROWS_PER_ANSWER
    year_sim.faults.inject("throttled", route="log_analytics", times=2)
    folder = tmp_path_factory.mktemp("year")
    before = Counter(year_sim.requests)
    with pytest.MonkeyPatch.context() as patch:
        _env(patch, folder)
        summary = collect(
            start=YEAR_START, end=date(2026, 11, 16), as_of=NOW, config_file=year_sim.config_path
        )
        built = build(config_file=year_sim.config_path)
    year_sim.reset()
    return folder / "lake", summary, built, Counter(year_sim.requests) - before


def _warehouse(built, sql: str) -> pl.DataFrame:
    with duckdb.connect(str(built.warehouse), read_only=True) as con:
        return pl.from_arrow(con.sql(sql).to_arrow_table())


def test_a_year_from_the_workspace_and_90_days_from_the_api_give_the_true_hours(year_sim, year_run):
    _, _, built, _ = year_run
    window_start = datetime.combine(YEAR_START, datetime.min.time(), UTC)
    truth = year_sim.estate.billable_hours_daily().filter(pl.col("usage_date") >= YEAR_START)
    mine = _warehouse(
        built, "SELECT usage_date, resource_id, billable_hours FROM machine_hours_daily"
    )
    excluded = ambiguous_machine_days(year_sim.estate, window_start)
    compared = (
        truth.select("usage_date", "resource_id", truth_hours="billable_hours")
        .join(mine, on=["usage_date", "resource_id"], how="full", coalesce=True)
        .join(excluded, on=["usage_date", "resource_id"], how="anti")
        .with_columns(pl.col("truth_hours", "billable_hours").fill_null(0.0))
    )
    # Nov 1 2025 .. Nov 15 2026 is 380 days: a year and more of machine-days, not 90.
    assert mine["usage_date"].min() == YEAR_START
    assert mine["usage_date"].n_unique() == 380
    # Arc machines have no power events in any source: one collection sees only their latest
    # status change (tests/conftest.py says which hours that misses).
    compared = without_arc_after_one_snapshot(compared, year_sim.estate)
    off = compared.filter((pl.col("truth_hours") - pl.col("billable_hours")).abs() > 1 / 3600)
    assert off.height == 0, off
    assert excluded.height <= 10
    months = _warehouse(built, "SELECT DISTINCT month FROM fleet_comparison_monthly")["month"]
    assert months.len() == 13  # Nov 2025 .. Nov 2026


def test_machines_deleted_before_the_first_run_are_known_from_their_events(year_sim, year_run):
    _, _, built, _ = year_run
    gone = _warehouse(
        built,
        "SELECT resource_id, deleted_at, mde_sensor FROM machines WHERE last_seen_at IS NULL",
    )
    truth = year_sim.estate.machines().filter(
        pl.col("deleted_at").is_between(datetime(2025, 11, 1, tzinfo=UTC), NOW)
    )
    assert truth.height > 0
    assert sorted(gone["resource_id"]) == sorted(truth["resource_id"])
    assert (
        gone.join(truth, on="resource_id")["deleted_at"].to_list()
        == gone.join(truth, on="resource_id")["deleted_at_right"].to_list()
    )
    # No snapshot ever listed their extensions: the sensor is unknown (docs/warehouse.md).
    assert gone["mde_sensor"].null_count() == gone.height


def test_each_event_is_in_the_lake_once_the_api_s_where_both_hold_it(year_sim, year_run):
    lake, _, _, _ = year_run
    events = scan_dataset(lake, "power_events").collect()
    truth = year_sim.estate.activity_events().filter(
        pl.col("event_at") >= datetime(2025, 11, 1, tzinfo=UTC)
    )
    assert events.height == truth.height
    assert events.select(EVENT_IDENTITY).is_duplicated().sum() == 0
    assert set(events["event_data_id"]) == set(truth["event_data_id"])
    by_source = dict(events.group_by("source").len().iter_rows())
    assert set(by_source) == {"log_analytics", "activity_log"}
    # August 2026 was read whole from the workspace AND from the API since the floor: the
    # events of [floor, Sep 1) came twice and are kept once, as the API's rows.
    from_workspace = events.filter(pl.col("source") == "log_analytics")
    from_api = events.filter(pl.col("source") == "activity_log")
    assert from_workspace["event_at"].max() < FLOOR <= from_api["event_at"].min()
    overlap = truth.filter(
        (pl.col("event_at") >= FLOOR) & (pl.col("event_at") < datetime(2026, 9, 1, tzinfo=UTC))
    )
    assert overlap.height > 0
    august_api = from_api.filter(pl.col("event_at") < datetime(2026, 9, 1, tzinfo=UTC))
    assert august_api.height == overlap.height
    assert by_source["log_analytics"] == truth.filter(pl.col("event_at") < FLOOR).height


def test_partial_answers_are_split_until_complete_and_throttling_is_waited_out(year_sim, year_run):
    _, summary, _, requests = year_run
    history = [c for c in summary.chunks if c.scope == "history"]
    # Nov 2025 .. Aug 2026: the ten months that begin before the floor.
    assert [c.chunk for c in history] == [
        f"{year}-{month:02d}" for year, month in [(2025, 11), (2025, 12)]
    ] + [f"2026-{month:02d}" for month in range(1, 9)]
    # One query per month would be 10; every month of this estate holds more than 250 rows,
    # so each was answered partially at least once and asked again in halves.
    assert sum(c.pages for c in history) > 2 * len(history)
    # The first two queries (the coverage question) were answered 429 without a Retry-After:
    # waited out and asked again, the run went on.
    assert requests["fault_throttled"] == 2
    assert not summary.failures
    # The run says which source covered which months (the estate's workspace begins in October).
    assert [line for line in summary.lines() if line.startswith("power history")] == [
        "power history: Log Analytics workspace 0b5e55ed-0000-4000-8000-00000000da7a covers "
        "2025-11 .. 2026-08",
        "power history: the Activity Log covers 2026-08-17T12:00Z onwards",
    ]
    # Every row arrived (the previous test): split answers lose nothing and add nothing.


def test_a_window_reaching_before_the_workspace_is_refused_naming_the_months(
    year_sim, prefect_harness, tmp_path
):
    # The estate (so the workspace) begins 13 months before now, on 2025-10-15: September 2025
    # is covered by nothing, October is (a source covers its first record's whole month).
    with pytest.MonkeyPatch.context() as patch, pytest.raises(WindowError) as refused:
        _env(patch, tmp_path)
        collect(
            start=date(2025, 9, 1),
            end=date(2025, 12, 1),
            as_of=NOW,
            config_file=year_sim.config_path,
        )
    message = str(refused.value)
    assert "no power history covers 2025-09 " in message
    assert "holds from 2025-10" in message
    assert "Use --start 2025-10-01 or later" in message
    assert not (tmp_path / "lake").exists() or not any((tmp_path / "lake").rglob("*.parquet"))


# --- one machine across the seam, by hand ------------------------------------------------------
SUBSCRIPTION = "5eaf0000-1111-4222-8333-444455556666"


def _seam_estate():
    """One VM, deallocated since before July 2026, started on the days below for two minutes
    at 08:00 and deallocated at 18:00 (three minutes): Fri Aug 14, and Mon Aug 17, the day the
    Activity Log's retention begins at 12:00. Aug 17's start is older than 90 days (only the
    workspace has it); its deallocation is not (both have it)."""
    builder = EstateBuilder(seed=3, window_start=datetime(2026, 7, 1, tzinfo=UTC), now=NOW)
    subscription = builder.add_subscription(
        SubscriptionSpec(
            subscription_id=SUBSCRIPTION,
            display_name="Seam",
            defender_plan="P2",
            location="westeurope",
            enablement_time=datetime(2026, 1, 1, tzinfo=UTC),
        )
    )
    vm = builder.add_machine(
        MachineSpec(
            subscription=subscription,
            resource_group="RG-Seam",
            name="Seam-01",
            vm_id="99999999-2222-4333-8444-555555555555",
            os_type="Linux",
            size="Standard_D2s_v5",
            location="westeurope",
            profile="business_hours",
            mde_sensor=True,
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
        ),
        initial_state="deallocated",
    )
    for day in (14, 17):
        vm.operate(
            "start", datetime(2026, 8, day, 8, tzinfo=UTC), timedelta(minutes=2), caller="ops"
        )
        vm.operate(
            "deallocate",
            datetime(2026, 8, day, 18, tzinfo=UTC),
            timedelta(minutes=3),
            caller="ops",
        )
    return builder.build()


def test_one_machine_across_the_seam_worked_out_by_hand(prefect_harness, tmp_path):
    estate = _seam_estate()
    with (
        simulated_azure(estate=estate, state_dir=tmp_path / "sim", history=True) as sim,
        pytest.MonkeyPatch.context() as patch,
    ):
        _env(patch, tmp_path)
        collect(
            start=date(2026, 8, 1), end=date(2026, 11, 16), as_of=NOW, config_file=sim.config_path
        )
        built = build(config_file=sim.config_path)
    hours = _warehouse(
        built,
        "SELECT usage_date, billable_hours FROM machine_hours_daily "
        "WHERE usage_date BETWEEN DATE '2026-08-13' AND DATE '2026-08-18' ORDER BY usage_date",
    )
    # Billable while running: 08:02 (start done) to 18:00 (deallocation begins) = 598 minutes,
    # on Aug 14 and Aug 17; deallocated all of Aug 13, 15, 16, 18. Without the workspace, Aug 17
    # would read as running from the window's start to 18:00 (no start seen): 18 h, and every
    # earlier day 24 h.
    assert hours["usage_date"].to_list() == [date(2026, 8, d) for d in range(13, 19)]
    assert hours["billable_hours"].to_list() == pytest.approx(
        [0, 598 / 60, 0, 0, 598 / 60, 0], abs=1e-9
    )
    events = scan_dataset(tmp_path / "lake", "power_events").collect().sort("event_at")
    aug17 = events.filter(pl.col("event_at").dt.date() == date(2026, 8, 17))
    assert aug17.select("operation", "source").unique(maintain_order=True).rows() == [
        ("start", "log_analytics"),
        ("deallocate", "activity_log"),
    ]
    # Aug 14: 2 operations x (Started, Accepted, Succeeded) from the workspace, each once.
    assert events.filter(pl.col("event_at").dt.date() == date(2026, 8, 14)).height == 6
