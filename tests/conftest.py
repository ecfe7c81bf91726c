"""Fixtures shared by every test package: one simulated Azure estate for the whole session."""

from collections.abc import Iterator
from datetime import UTC, datetime

import polars as pl
import pytest

from flows.simulator.estate import Estate
from flows.simulator.server import SimulatedAzure, simulated_azure

# Case 11's Arc disconnections a single collection cannot see (it sees each machine's latest
# status change only, so what came before counts as connected: the data dictionary's gap
# assumption). SQL-OnPrem-01, Oct 12 02:00 - Oct 13 10:00: 22 h (of Oct 12's 24, 2 were
# connected) + 10 h (Oct 13, connected from 10:00: 14); gcp-web-01, Oct 19 20:00 - Oct 20
# 08:00: 4 h + 8 h. Daily snapshots date them exactly (tests/flows/collect/test_arc.py).
ARC_HOURS_ONE_SNAPSHOT_MISSES = 22 + 10 + 4 + 8


def without_arc_after_one_snapshot(compared: pl.DataFrame, estate: Estate) -> pl.DataFrame:
    """`compared` (truth_hours beside billable_hours per machine-day) without its Arc machines,
    having checked they are over the truth by exactly ARC_HOURS_ONE_SNAPSHOT_MISSES."""
    arc_ids = estate.machines().filter(pl.col("machine_kind") == "arc")["resource_id"]
    is_arc = pl.col("resource_id").is_in(arc_ids.implode())
    arc = compared.filter(is_arc)
    assert arc["billable_hours"].sum() - arc["truth_hours"].sum() == pytest.approx(
        ARC_HOURS_ONE_SNAPSHOT_MISSES
    )
    return compared.filter(~is_arc)


# The session estate: fixed, so tests can state figures about it. 2026-11-15 is a Sunday.
SIMULATOR_NOW = datetime(2026, 11, 15, 12, tzinfo=UTC)
SIMULATOR_SEED = 7
SIMULATOR_MACHINES = 36
SIMULATOR_MONTHS = 4


@pytest.fixture(scope="session")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatedAzure]:
    """A running simulated Azure (HTTPS on loopback) with 36 machines over the 4 months before
    SIMULATOR_NOW. `simulator.settings()` configures mdecost for it; `simulator.estate` holds the
    ground truth. Clock, faults and page sizes are reset after each test that uses it."""
    with simulated_azure(
        seed=SIMULATOR_SEED,
        machines=SIMULATOR_MACHINES,
        months=SIMULATOR_MONTHS,
        now=SIMULATOR_NOW,
        state_dir=tmp_path_factory.mktemp("simulator"),
    ) as sim:
        yield sim


@pytest.fixture(autouse=True)
def _reset_simulator_after_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Time travel and faults set by one test must not leak into the next."""
    yield
    if "simulator" in request.fixturenames:
        request.getfixturevalue("simulator").reset()


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary local Prefect server for the whole session: the first flow run in a process
    starts one (~15 s), so flow tests share it. Task logic is tested with `task.fn(...)`."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield


def ambiguous_machine_days(estate: Estate, window_start: datetime) -> pl.DataFrame:
    """Machine-days no event log can settle, worked out from the TRUE timeline.

    A machine whose first operation in the window is a start, and which was `stopped` (shut down
    from the guest OS, so still allocated) rather than `deallocated` before it, logs the same
    events either way; the pipeline assumes deallocated (the portal's Stop deallocates). Its
    days up to that start are therefore excluded; every other machine-day must match exactly.
    """
    events = estate.activity_events().filter(pl.col("event_at") >= window_start)
    first = events.sort("event_at").group_by("resource_id").first()
    starts = first.filter(
        pl.col("operation_name").str.to_lowercase().str.ends_with("/start/action")
    )
    before_start = starts.join(estate.state_intervals(), on="resource_id").filter(
        (pl.col("start_at") < pl.col("event_at")) & (pl.col("end_at") >= pl.col("event_at"))
    )
    return (
        before_start.filter(pl.col("state") == "stopped")
        .select(
            "resource_id",
            usage_date=pl.date_ranges(pl.lit(window_start.date()), pl.col("event_at").dt.date()),
        )
        .explode("usage_date")
    )
