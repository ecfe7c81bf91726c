"""Fixtures shared by every test package: one simulated Azure estate for the whole session."""

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from flows.simulator import SimulatedAzure, simulated_azure

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
