"""Killed runs: a `collect`, `refresh` or `build` SIGKILLed at a chosen point, then run again.

The kill happens in a child process (`stoppable_run.py`) at the n-th call of a write step, so
each kill point is the same on every machine. After the kill, nothing half-written may be
readable: every lake partition is whole (the old one or the new one) and the published warehouse
opens and is the old one. After the re-run, the lake and the warehouse equal those of a run that
was never interrupted, except for what differs between any two runs by design: the lake's
provenance columns (`ingested_at`, ...) and `build_info.built_at`.

The estate: two of the simulated estate's subscriptions, November. The lake starts as a
collection as of November 8 (`base`), so a kill leaves old and new partitions side by side. The
run collects `[Nov 1, Nov 16)` as of the simulator's now (November 15 12:00) and writes, per
subscription, one inventory and one plan snapshot (dated 2026-11-15, beside the base's
2026-11-08 ones), November's power events (merged into the base's) and November's ActualCost
(replacing the base's): 2 x 4 = 8 partitions.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl
import prefect.settings
import pytest

from flows.build import build
from flows.collect import CollectSummary, collect
from flows.lake import PARTITION_FILE, scan_dataset
from flows.pipeline import refresh
from transforms.schemas import DATASETS, PROVENANCE_COLUMNS

pytestmark = pytest.mark.simulator

STOPPABLE_RUN = Path(__file__).with_name("stoppable_run.py")
BASE_AS_OF = datetime(2026, 11, 8, 12, tzinfo=UTC)
BASE_WINDOW = (date(2026, 11, 1), date(2026, 11, 9))
WINDOW = (date(2026, 11, 1), date(2026, 11, 16))
SUBSCRIPTIONS = 2
PARTITIONS_PER_RUN = SUBSCRIPTIONS * 5  # inventory, pricings, connectors, power events, costs
CHILD_TIMEOUT_SECONDS = 120


@dataclass
class Estate:
    """The states every scenario starts from or is compared with."""

    config: Path
    scopes: list[str]
    as_of: datetime
    base_lake: Path
    old_warehouse: Path
    lake: Path
    warehouse: Path


def chosen_scopes(simulator) -> list[str]:
    return [f"/subscriptions/{s}" for s in sorted(simulator.estate.subscriptions)[:SUBSCRIPTIONS]]


# Builds here take one subscription at a time (every chunk is over this size), so a kill can
# land between the chunks a build appends to its new warehouse.
ONE_SUBSCRIPTION_PER_CHUNK = {"MDECOST_WAREHOUSE__CHUNK_MEGABYTES": "0.000001"}


def paths_env(patch: pytest.MonkeyPatch, lake: Path, warehouse: Path) -> None:
    patch.setenv("MDECOST_LAKE__PATH", str(lake))
    patch.setenv("MDECOST_WAREHOUSE__PATH", str(warehouse))
    for name, value in ONE_SUBSCRIPTION_PER_CHUNK.items():
        patch.setenv(name, value)


def written_partitions(summary: CollectSummary) -> int:
    return sum(1 for chunk in summary.chunks if not chunk.skipped and not chunk.failure)


@pytest.fixture(scope="module")
def estate(simulator, prefect_harness, tmp_path_factory) -> Estate:
    """The base lake and its warehouse (as of Nov 8), then the uninterrupted run on a copy."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    scopes = chosen_scopes(simulator)
    base_lake, old_warehouse = folder / "base-lake", folder / "old.duckdb"
    lake, warehouse = folder / "lake", folder / "warehouse.duckdb"
    simulator.reset()
    with pytest.MonkeyPatch.context() as patch:
        simulator.set_clock(BASE_AS_OF)
        try:
            paths_env(patch, base_lake, old_warehouse)
            collect(*BASE_WINDOW, scopes, BASE_AS_OF, simulator.config_path)
            build(simulator.config_path)
        finally:
            simulator.reset()
        shutil.copytree(base_lake, lake)
        paths_env(patch, lake, warehouse)
        summary = collect(*WINDOW, scopes, simulator.clock, simulator.config_path)
        build(simulator.config_path)
    assert written_partitions(summary) == PARTITIONS_PER_RUN
    return Estate(
        simulator.config_path, scopes, simulator.clock, base_lake, old_warehouse, lake, warehouse
    )


# --- reading the lake and the warehouse ---------------------------------------------------------
def sorted_rows(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort(frame.columns, nulls_last=True)


def lake_rows(lake: Path) -> dict[str, pl.DataFrame]:
    """Every dataset through the readers the build uses, provenance left out, rows sorted."""
    return {
        dataset: sorted_rows(scan_dataset(lake, dataset).drop(PROVENANCE_COLUMNS).collect())
        for dataset in DATASETS
    }


def assert_same_lake(lake: Path, expected: Path) -> None:
    """The same partitions holding the same rows, provenance aside."""
    assert partition_files(lake).keys() == partition_files(expected).keys()
    rows, expected_rows = lake_rows(lake), lake_rows(expected)
    for dataset in DATASETS:
        assert rows[dataset].equals(expected_rows[dataset]), dataset


def partition_files(lake: Path) -> dict[Path, int]:
    """Committed partition file (relative) -> its inode: a replaced partition has a new one."""
    return {
        path.relative_to(lake): path.stat().st_ino
        for path in (lake / "raw").glob(f"**/{PARTITION_FILE}")
    }


def partition_rows(path: Path) -> pl.DataFrame:
    return sorted_rows(pl.read_parquet(path).drop(PROVENANCE_COLUMNS))


def staging_files(lake: Path) -> list[Path]:
    return sorted((lake / "raw").glob(f"**/.{PARTITION_FILE}.*.tmp"))


def warehouse_rows(warehouse: Path, ignored: set[str]) -> dict[str, list[tuple]]:
    """Every table's rows, sorted, without the `ignored` columns (`table.column`, or `*.column`)."""
    tables: dict[str, list[tuple]] = {}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        names = con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() ORDER BY ALL"
        ).fetchall()
        for schema, table in names:
            columns = [
                f'"{column}"'
                for (column,) in con.execute(
                    "SELECT column_name FROM duckdb_columns() "
                    "WHERE schema_name = $1 AND table_name = $2 ORDER BY column_index",
                    [schema, table],
                ).fetchall()
                if f"{table}.{column}" not in ignored and f"*.{column}" not in ignored
            ]
            tables[f"{schema}.{table}"] = con.execute(
                f'SELECT {", ".join(columns)} FROM "{schema}"."{table}" ORDER BY ALL'
            ).fetchall()
    return tables


def assert_same_warehouse(warehouse: Path, expected: Path, ignored: set[str]) -> None:
    """The same tables, rows and values, to the last bit: a build of one lake is reproducible
    (order-dependent sums are added exactly, `transforms.contract.order_free_sum`)."""
    tables, expected_tables = warehouse_rows(warehouse, ignored), warehouse_rows(expected, ignored)
    assert tables.keys() == expected_tables.keys()
    for name, rows in tables.items():
        assert rows == expected_tables[name], name


def built_at(warehouse: Path) -> datetime:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute("SELECT built_at FROM build_info").fetchone()[0]


# --- the killed child -------------------------------------------------------------------------
def kill_at(flow: str, point: str, nth: int, estate: Estate, lake: Path, warehouse: Path) -> str:
    """Run `flow` in a child process and SIGKILL it at the `nth` call of `point`."""
    arguments = {"config_file": str(estate.config)}
    if flow != "build":
        start, end = WINDOW
        arguments |= {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "as_of": estate.as_of.isoformat(),
            "scopes": estate.scopes,
        }
    spec = {"flow": flow, "arguments": arguments, "point": point, "nth": nth, "action": "kill"}
    child = subprocess.run(
        [sys.executable, str(STOPPABLE_RUN), json.dumps(spec)],
        env={
            **os.environ,
            # The test session's Prefect server: a child would otherwise start its own (~15 s).
            "PREFECT_API_URL": prefect.settings.PREFECT_API_URL.value(),
            "MDECOST_LAKE__PATH": str(lake),
            "MDECOST_WAREHOUSE__PATH": str(warehouse),
            **ONE_SUBSCRIPTION_PER_CHUNK,
        },
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_SECONDS,
    )
    assert child.returncode == -signal.SIGKILL, child.stdout[-2000:] + child.stderr[-4000:]
    assert f"STOPPED {point} #{nth}:" in child.stdout
    return child.stdout


def scenario_folder(tmp_path: Path, estate: Estate) -> tuple[Path, Path]:
    """A copy of the base lake and of the warehouse built from it."""
    lake, warehouse = tmp_path / "lake", tmp_path / "warehouse.duckdb"
    shutil.copytree(estate.base_lake, lake)
    shutil.copy2(estate.old_warehouse, warehouse)
    return lake, warehouse


def assert_every_partition_whole(lake: Path, estate: Estate) -> None:
    """Each committed partition holds exactly the base's rows or the uninterrupted run's."""
    for relative in partition_files(lake):
        rows = partition_rows(lake / relative)
        candidates = [
            partition_rows(root / relative)
            for root in (estate.base_lake, estate.lake)
            if (root / relative).exists()
        ]
        assert any(rows.equals(candidate) for candidate in candidates), relative


# --- collect and refresh killed ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("point", "nth", "replaced_before_kill"),
    [
        # Before the first partition replace: its staging file is half-written.
        ("torn_partition_write", 1, 0),
        # In the middle: half of the run's partitions are in place, half are still the base's
        # (some of those written whole to staging files, not yet moved into place).
        ("partition_replace", PARTITIONS_PER_RUN // 2 + 1, PARTITIONS_PER_RUN // 2),
    ],
)
def test_a_killed_collect_leaves_whole_partitions_and_its_rerun_equals_an_uninterrupted_one(
    estate, tmp_path, point, nth, replaced_before_kill
):
    lake, warehouse = scenario_folder(tmp_path, estate)
    before = partition_files(lake)

    kill_at("collect", point, nth, estate, lake, warehouse)

    # Every partition reads whole, and the readers skip the dead run's staging files (a torn
    # one read as Parquet would fail the scan).
    assert_every_partition_whole(lake, estate)
    lake_rows(lake)
    assert staging_files(lake)
    after = partition_files(lake)
    replaced = {path for path, inode in after.items() if before.get(path) != inode}
    assert len(replaced) == replaced_before_kill

    with pytest.MonkeyPatch.context() as patch:
        paths_env(patch, lake, warehouse)
        # No stale lock: the kernel released the dead run's lake lock.
        collect(*WINDOW, estate.scopes, estate.as_of, estate.config)
    assert_same_lake(lake, estate.lake)


def test_a_refresh_killed_after_its_last_partition_builds_on_rerun_what_an_uninterrupted_one_did(
    estate, tmp_path
):
    lake, warehouse = scenario_folder(tmp_path, estate)
    old_build = built_at(warehouse)

    kill_at("refresh", "after_partition_replace", PARTITIONS_PER_RUN, estate, lake, warehouse)

    # The lake is complete, the warehouse still the one built before.
    assert_every_partition_whole(lake, estate)
    assert_same_lake(lake, estate.lake)
    assert built_at(warehouse) == old_build

    with pytest.MonkeyPatch.context() as patch:
        paths_env(patch, lake, warehouse)
        refresh(*WINDOW, estate.scopes, estate.as_of, estate.config)
    # The re-run collected again, so the lake's provenance (carried into `costs`) and with it
    # the lake's fingerprint and its files' sizes and times (the build's record of its inputs)
    # differ from the uninterrupted run's; every other value is equal.
    ignored = {"build_info.built_at", "build_info.lake_fingerprint"}
    ignored |= {"inputs.bytes", "inputs.mtime_ns"}
    ignored |= {f"*.{column}" for column in PROVENANCE_COLUMNS}
    assert_same_warehouse(warehouse, estate.warehouse, ignored)


# --- build killed ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("point", "nth"),
    [
        # The first chunk's first three views are in the new database; nothing checkpointed.
        ("warehouse_table", 3),
        # The first chunk is whole, the second has two of its six views.
        ("warehouse_table", 8),
        # The new database is complete and closed, one rename away from being published.
        ("warehouse_swap", 1),
    ],
)
def test_a_killed_build_leaves_the_old_warehouse_and_its_rerun_equals_an_uninterrupted_one(
    estate, tmp_path, point, nth
):
    # The lake is the uninterrupted run's own (read only), so the builds read the same files.
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy2(estate.old_warehouse, warehouse)
    old_build, old_rows = built_at(warehouse), warehouse_rows(warehouse, set())

    kill_at("build", point, nth, estate, estate.lake, warehouse)

    # The published file is the old warehouse, whole; the dead build's file lies beside it.
    assert built_at(warehouse) == old_build
    assert warehouse_rows(warehouse, set()) == old_rows
    assert list(tmp_path.glob(".warehouse.duckdb.*.building"))

    with pytest.MonkeyPatch.context() as patch:
        paths_env(patch, estate.lake, warehouse)
        build(estate.config)
    ignored = {"build_info.built_at"}
    assert_same_warehouse(warehouse, estate.warehouse, ignored)
