"""Fixtures shared by every test package: one simulated Azure estate for the whole session."""

from collections.abc import Iterator
from datetime import UTC, datetime

import polars as pl
import pytest

from flows.simulator import SimulatedAzure, simulated_azure
from flows.simulator.estate import Estate

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
