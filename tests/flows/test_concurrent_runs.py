"""Two runs at once: the second waits for the first or stops naming the lock; nothing is corrupt.

The first run is a real `collect` or `build` in a child process (`stoppable_run.py`), held in
place at a write step, with its lock, until the test resumes it. The second runs here: with a
short wait it stops with the message (through the CLI, exit status 1) and changes nothing; with
the default wait it waits for the first to finish, then runs. An analyst's read-only connection
opened before a build keeps answering from the old warehouse through the build; a connection
opened after sees the new one.

The estate: two of the simulated estate's subscriptions, `[Nov 1, Nov 16)` as of the simulator's
now: 2 x (inventory, pricings, power events, ActualCost) = 8 lake partitions.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import duckdb
import polars as pl
import prefect.settings
import pytest
from typer.testing import CliRunner

import flows.lake
import flows.warehouse
from flows.build import build
from flows.cli import app
from flows.collect import collect
from flows.lake import PARTITION_FILE, scan_dataset
from transforms.schemas import DATASETS, PROVENANCE_COLUMNS

pytestmark = pytest.mark.simulator

STOPPABLE_RUN = Path(__file__).with_name("stoppable_run.py")
WINDOW = (date(2026, 11, 1), date(2026, 11, 16))
SUBSCRIPTIONS = 2
CHILD_TIMEOUT_SECONDS = 120
SHORT_WAIT_SECONDS = 0.5
# How long the first run stays held once the second has started waiting for it.
HOLD_SECONDS = 1.0

runner = CliRunner()


@dataclass
class Estate:
    config: Path
    scopes: list[str]
    as_of: datetime
    lake: Path
    warehouse: Path


@pytest.fixture(scope="module")
def estate(simulator, prefect_harness, tmp_path_factory) -> Estate:
    """One collection and one build, run alone: what every run here starts from."""
    folder = tmp_path_factory.mktemp("alone")
    scopes = [f"/subscriptions/{s}" for s in sorted(simulator.estate.subscriptions)[:SUBSCRIPTIONS]]
    lake, warehouse = folder / "lake", folder / "warehouse.duckdb"
    simulator.reset()
    with pytest.MonkeyPatch.context() as patch:
        paths_env(patch, lake, warehouse)
        collect(*WINDOW, scopes, simulator.clock, simulator.config_path)
        build(simulator.config_path)
    return Estate(simulator.config_path, scopes, simulator.clock, lake, warehouse)


def paths_env(patch: pytest.MonkeyPatch, lake: Path, warehouse: Path) -> None:
    patch.setenv("MDECOST_LAKE__PATH", str(lake))
    patch.setenv("MDECOST_WAREHOUSE__PATH", str(warehouse))


class HeldRun:
    """A flow run in a child process, held at `point` (see stoppable_run.py) until resumed."""

    def __init__(self, flow: str, point: str, estate: Estate, lake: Path, warehouse: Path):
        arguments = {"config_file": str(estate.config)}
        if flow == "collect":
            start, end = WINDOW
            arguments |= {
                "start": start.isoformat(),
                "end": end.isoformat(),
                "as_of": estate.as_of.isoformat(),
                "scopes": estate.scopes,
            }
        spec = {"flow": flow, "arguments": arguments, "point": point, "nth": 1, "action": "pause"}
        self.log = warehouse.parent / f"held-{flow}.log"
        with self.log.open("w") as log:
            self.child = subprocess.Popen(
                [sys.executable, str(STOPPABLE_RUN), json.dumps(spec)],
                env={
                    **os.environ,
                    # The test session's Prefect server: a child would otherwise start its own.
                    "PREFECT_API_URL": prefect.settings.PREFECT_API_URL.value(),
                    "MDECOST_LAKE__PATH": str(lake),
                    "MDECOST_WAREHOUSE__PATH": str(warehouse),
                },
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        try:
            self.expect(f"STOPPED {point} #1:")
        except BaseException:
            self.stop()
            raise

    def _read(self) -> None:
        for line in self.child.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def expect(self, prefix: str) -> None:
        while (line := self.lines.get(timeout=CHILD_TIMEOUT_SECONDS)) is not None:
            if line.startswith(prefix):
                return
        raise AssertionError(f"the held run ended before {prefix!r}: {self.log.read_text()}")

    def resume(self) -> None:
        self.child.stdin.write("\n")
        self.child.stdin.flush()

    def finish(self) -> None:
        self.expect("FINISHED")
        assert self.child.wait(CHILD_TIMEOUT_SECONDS) == 0, self.log.read_text()

    def stop(self) -> None:
        if self.child.poll() is None:
            self.child.kill()
            self.child.wait()


def resume_later(run: HeldRun) -> threading.Timer:
    """Resume `run` in HOLD_SECONDS, while this thread's second run waits for its lock."""
    timer = threading.Timer(HOLD_SECONDS, run.resume)
    timer.start()
    return timer


def partition_inodes(lake: Path) -> dict[Path, int]:
    return {path: path.stat().st_ino for path in (lake / "raw").glob(f"**/{PARTITION_FILE}")}


def lake_rows(lake: Path) -> dict[str, pl.DataFrame]:
    frames = {
        name: scan_dataset(lake, name).drop(PROVENANCE_COLUMNS).collect() for name in DATASETS
    }
    return {name: frame.sort(frame.columns, nulls_last=True) for name, frame in frames.items()}


def built_at_us(warehouse: Path) -> int:
    """`build_info.built_at`, microseconds since the epoch."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute("SELECT epoch_us(built_at) FROM build_info").fetchone()[0]


# --- collect ---------------------------------------------------------------------------------
def test_a_second_collect_stops_clearly_or_waits_while_one_is_writing(
    estate, tmp_path, monkeypatch
):
    lake = tmp_path / "lake"
    shutil.copytree(estate.lake, lake)
    before = partition_inodes(lake)
    first = HeldRun("collect", "partition_replace", estate, lake, tmp_path / "warehouse.duckdb")
    try:
        monkeypatch.setenv("MDECOST_LAKE__PATH", str(lake))
        with monkeypatch.context() as short:
            short.setattr(flows.lake, "LAKE_LOCK_WAIT_SECONDS", SHORT_WAIT_SECONDS)
            second = runner.invoke(
                app,
                [
                    "collect",
                    *("--start", WINDOW[0].isoformat(), "--end", WINDOW[1].isoformat()),
                    *("--as-of", f"{estate.as_of:%Y-%m-%dT%H:%M:%S}"),
                    *(option for scope in estate.scopes for option in ("--scope", scope)),
                    *("--config", str(estate.config)),
                ],
            )
        assert second.exit_code == 1
        assert (
            f"another mdecost collect or cost import is running (lock {lake / '.lock'} held for "
            f"over {SHORT_WAIT_SECONDS:g} s); wait for it to finish and run again"
        ) in " ".join(second.stderr.split())
        # Neither run replaced a partition: the first is held before its first replace.
        assert partition_inodes(lake) == before

        started = time.monotonic()
        resume_later(first)
        collect(*WINDOW, estate.scopes, estate.as_of, estate.config)
        assert time.monotonic() - started >= HOLD_SECONDS
        first.finish()
    finally:
        first.stop()
    # One run after the other: every partition was last written by the second (one ingestion
    # instant), and the lake holds what one run alone writes.
    ingested = pl.concat(
        [scan_dataset(lake, name).select("ingested_at").collect() for name in DATASETS]
    )
    assert ingested["ingested_at"].n_unique() == 1
    rows, alone = lake_rows(lake), lake_rows(estate.lake)
    for name in DATASETS:
        assert rows[name].equals(alone[name]), name


# --- build -----------------------------------------------------------------------------------
def test_a_second_build_stops_clearly_or_waits_and_the_warehouse_stays_whole(
    estate, tmp_path, monkeypatch
):
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy2(estate.warehouse, warehouse)
    old_build = built_at_us(warehouse)
    first = HeldRun("build", "warehouse_swap", estate, estate.lake, warehouse)
    try:
        paths_env(monkeypatch, estate.lake, warehouse)
        with monkeypatch.context() as short:
            short.setattr(flows.warehouse, "BUILD_LOCK_WAIT_SECONDS", SHORT_WAIT_SECONDS)
            second = runner.invoke(app, ["build", "--config", str(estate.config)])
        assert second.exit_code == 1
        assert (
            f"another mdecost build or refresh is running (lock {warehouse}.lock held for over "
            f"{SHORT_WAIT_SECONDS:g} s)"
        ) in " ".join(second.stderr.split())
        # The first build's new database is complete beside the old one, not yet swapped in.
        assert built_at_us(warehouse) == old_build

        started = time.monotonic()
        resume_later(first)
        build(estate.config)
        assert time.monotonic() - started >= HOLD_SECONDS
        first.finish()
    finally:
        first.stop()
    assert built_at_us(warehouse) > old_build
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()
    with duckdb.connect(str(estate.warehouse), read_only=True) as con:
        assert tables == con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()
    # Both builds moved their own database into place: nothing half-built is left beside it.
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".")) == []


# An analyst's session: one read-only connection, opened at start, asked a question per line.
ANALYST = """
import json, sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
for _ in sys.stdin:
    try:
        built_at = con.execute("SELECT epoch_us(built_at) FROM build_info").fetchone()[0]
        rows, hours = con.execute(
            "SELECT count(*), round(sum(billable_hours), 6) FROM machine_hours_daily"
        ).fetchone()
        print(json.dumps({"built_at": built_at, "rows": rows, "hours": hours}), flush=True)
    except Exception as error:
        print(json.dumps({"error": repr(error)}), flush=True)
"""


def test_an_analyst_connection_opened_before_a_build_answers_from_the_old_warehouse_through_it(
    estate, tmp_path, monkeypatch
):
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy2(estate.warehouse, warehouse)
    analyst = subprocess.Popen(
        [sys.executable, "-c", ANALYST, str(warehouse)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    def ask() -> dict:
        analyst.stdin.write("\n")
        analyst.stdin.flush()
        return json.loads(analyst.stdout.readline())

    answers: dict[str, dict] = {}
    real_replace = os.replace

    def replace_asking_the_analyst(source, target, **options) -> None:
        """Ask the analyst at the swap: the new database complete beside, then in place."""
        swapping = Path(target) == warehouse
        if swapping:
            answers["new database complete, not swapped in"] = ask()
        real_replace(source, target, **options)
        if swapping:
            answers["swapped in, build still running"] = ask()

    try:
        before = ask()
        paths_env(monkeypatch, estate.lake, warehouse)
        with monkeypatch.context() as swap:
            swap.setattr(os, "replace", replace_asking_the_analyst)
            build(estate.config)
        answers["build finished"] = ask()
    finally:
        analyst.stdin.close()
        analyst.wait(CHILD_TIMEOUT_SECONDS)
    assert "error" not in before
    assert answers == dict.fromkeys(
        [
            "new database complete, not swapped in",
            "swapped in, build still running",
            "build finished",
        ],
        before,
    )
    # A connection opened after the build (here, in another process: within one process DuckDB
    # hands a new connection the database a still-open one holds) sees the new warehouse.
    assert built_at_us(warehouse) > before["built_at"]
