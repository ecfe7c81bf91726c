"""The DuckDB warehouse: built beside the published file, then swapped in atomically.

Analysts hold `warehouse.duckdb` open read-only while a build runs. A build therefore never
writes into the published file: it creates a new database next to it, checkpoints and closes
it, and moves it over the old name with `os.replace`. Open connections keep reading the old
file (its inode lives until they close); the next connection sees the new one. One build at a
time: a second one waits for the lock, then stops with a message naming the lock file.
"""

from __future__ import annotations

import fcntl
import os
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa


class WarehouseBusyError(RuntimeError):
    """Another build holds the warehouse lock for longer than we were willing to wait."""


class WarehouseMissingError(FileNotFoundError):
    """No warehouse has been built at the configured path yet."""


@contextmanager
def build_lock(warehouse: Path, wait_seconds: float = 30.0) -> Iterator[None]:
    """Hold `<warehouse>.lock` exclusively; wait up to `wait_seconds`, then refuse clearly."""
    lock_path = warehouse.with_name(warehouse.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise WarehouseBusyError(
                        f"another mdecost build or refresh is running (lock {lock_path} held "
                        f"for over {wait_seconds:.0f} s); wait for it to finish and run again"
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def publish(
    warehouse: Path,
    tables: Mapping[str, pa.Table],
    table_comments: Mapping[str, str] | None = None,
    column_comments: Mapping[str, Mapping[str, str]] | None = None,
    schemas: Mapping[str, Mapping[str, pa.Table]] | None = None,
) -> Path:
    """Write `tables` (and `schemas`: schema name -> its tables) into a new database, then swap.

    Table and column comments become DuckDB comments, so `duckdb_columns()` documents every
    column for analysts. Returns the published path.
    """
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    staging = warehouse.with_name(f".{warehouse.name}.{uuid.uuid4().hex}.building")
    try:
        with duckdb.connect(str(staging)) as con:
            for schema_name, schema_tables in (schemas or {}).items():
                con.execute(f'CREATE SCHEMA "{schema_name}"')
                for name, table in schema_tables.items():
                    _create_table(con, f'"{schema_name}"."{name}"', table)
            for name, table in tables.items():
                _create_table(con, f'"{name}"', table)
                comment = (table_comments or {}).get(name)
                if comment:
                    con.execute(f"COMMENT ON TABLE \"{name}\" IS '{_quote(comment)}'")
                for column, text in (column_comments or {}).get(name, {}).items():
                    con.execute(f'COMMENT ON COLUMN "{name}"."{column}" IS \'{_quote(text)}\'')
            con.execute("CHECKPOINT")
        with staging.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(staging, warehouse)
    finally:
        staging.unlink(missing_ok=True)
        staging.with_name(staging.name + ".wal").unlink(missing_ok=True)
    return warehouse


def _create_table(con: duckdb.DuckDBPyConnection, qualified_name: str, table: pa.Table) -> None:
    con.register("_incoming", table)
    try:
        con.execute(f"CREATE TABLE {qualified_name} AS SELECT * FROM _incoming")
    finally:
        con.unregister("_incoming")


def _quote(text: str) -> str:
    """Comments are our own constant text; double any quote so they stay SQL literals."""
    return text.replace("'", "''")


def connect_read_only(warehouse: Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection, the only kind `mdecost sql` and the report use."""
    if not warehouse.exists():
        raise WarehouseMissingError(
            f"no warehouse at {warehouse}; run `mdecost build` (or `mdecost demo`) first"
        )
    return duckdb.connect(str(warehouse), read_only=True)


def query(warehouse: Path, sql: str, parameters: Mapping[str, Any] | None = None) -> pa.Table:
    """Run one read-only query; values reach SQL only as bound parameters (`$name`)."""
    with connect_read_only(warehouse) as con:
        return con.sql(sql, params=dict(parameters or {})).to_arrow_table()
