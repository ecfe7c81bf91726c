"""The DuckDB warehouse: built beside the published file, then swapped in atomically.

Analysts hold `warehouse.duckdb` open read-only while a build runs. A build therefore never
writes into the published file: it creates a new database next to it, checkpoints and closes
it, and moves it over the old name with `os.replace`. Open connections keep reading the old
file (its inode lives until they close); the next connection sees the new one. One build at a
time: a second one waits for the lock, then stops with a message naming the lock file.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Final

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from flows.locks import held_exclusively

# DuckDB's memory while writing a new warehouse (its default is 80% of the machine's).
STAGING_MEMORY_LIMIT = "512MB"
# How long a second build waits for the first before it stops and says so.
BUILD_LOCK_WAIT_SECONDS = 30.0


class WarehouseBusyError(RuntimeError):
    """Another build holds the warehouse lock for longer than we were willing to wait."""


class WarehouseMissingError(FileNotFoundError):
    """No warehouse has been built at the configured path yet."""


class ForeignWarehouseError(RuntimeError):
    """The file at the warehouse path is not a mdecost warehouse: a build must not replace it."""


# A DuckDB database file says so in bytes 8 to 12 of its first block.
_DUCKDB_MAGIC: Final = b"DUCK"
# Tables every mdecost warehouse has (`machines` since the first, `build_info` since later).
_OWN_TABLES: Final = ("build_info", "machines")


def refuse_foreign(warehouse: Path) -> None:
    """Raise ForeignWarehouseError when `warehouse` exists and is not a mdecost warehouse (not
    a DuckDB database, or one with neither `build_info` nor `machines`): a mistyped
    `[warehouse] path` must not replace someone's database or document."""
    if not warehouse.exists():
        return
    advice = "check [warehouse] path, or move the file away to build there"
    if not warehouse.is_file():
        raise ForeignWarehouseError(f"{warehouse} is not a file; {advice}")
    with warehouse.open("rb") as handle:
        header = handle.read(12)
    if header[8:12] != _DUCKDB_MAGIC:
        raise ForeignWarehouseError(f"{warehouse} is not a DuckDB database; {advice}")
    try:
        with connect_read_only(warehouse) as con:
            tables = {
                row[0]
                for row in con.sql(
                    "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'"
                ).fetchall()
            }
    except duckdb.Error as error:
        first_line = (str(error).strip().splitlines() or ["unreadable"])[0]
        raise ForeignWarehouseError(
            f"{warehouse} cannot be opened as a warehouse ({first_line}); {advice}"
        ) from None
    if not tables & set(_OWN_TABLES):
        raise ForeignWarehouseError(
            f"{warehouse} is a DuckDB database but not a mdecost warehouse (no "
            f"{' or '.join(_OWN_TABLES)} table); {advice}"
        )


def build_lock(warehouse: Path, wait_seconds: float | None = None) -> AbstractContextManager[None]:
    """Hold `<warehouse>.lock` exclusively; wait up to `wait_seconds` (default
    `BUILD_LOCK_WAIT_SECONDS`), then refuse with `WarehouseBusyError` naming the lock file."""
    return held_exclusively(
        warehouse.with_name(warehouse.name + ".lock"),
        BUILD_LOCK_WAIT_SECONDS if wait_seconds is None else wait_seconds,
        WarehouseBusyError,
        holders="build or refresh",
    )


def _column_or_null(column: str, present: set[str]) -> str:
    """`column` quoted for SQL when the files have it, else NULL."""
    return f'"{column}"' if column in present else "NULL"


class StagedWarehouse:
    """A new warehouse being written beside the published one (see `staged`).

    Tables are appended to piece by piece (a build writes each chunk's rows as it goes, so no
    view is ever held whole in memory); the first piece of a table creates it. Pieces go in by
    column name, so a table that already has a column the piece lacks (`tenant_id`, added after
    the views) gets nulls there. A warehouse staged as a copy of the published one (an
    incremental build) starts with its tables, whose rows the build deletes where it recomputes.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self._tables: set[str] = {
            _qualified(name, schema)
            for schema, name in con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() "
                "WHERE database_name = current_database()"
            ).fetchall()
        }

    def append(self, name: str, table: pa.Table | ds.Dataset) -> None:
        """Add `table`'s rows to table `name` (created by its first piece)."""
        qualified = f'"{name}"'
        _append_table(self._con, qualified, table, create=qualified not in self._tables)
        self._tables.add(qualified)

    def has(self, name: str, schema: str = "main") -> bool:
        """True when the warehouse has table `schema.name` (a copied one, or one written)."""
        return _qualified(name, schema) in self._tables

    def delete(
        self,
        name: str,
        where: str = "true",
        parameters: Mapping[str, Any] | None = None,
        schema: str = "main",
    ) -> int:
        """Delete the rows of table `schema.name` that `where` holds for (all by default; a
        table not there has none); the number of rows deleted."""
        if not self.has(name, schema):
            return 0
        qualified = _qualified(name, schema)
        deleted = self._con.execute(
            f"DELETE FROM {qualified} WHERE {where}", parameters or {}
        ).fetchone()
        return int(deleted[0]) if deleted else 0

    @contextmanager
    def registered(self, name: str, table: pa.Table) -> Iterator[None]:
        """`table` readable as `name` in this warehouse's queries while the block runs."""
        self._con.register(name, table)
        try:
            yield
        finally:
            self._con.unregister(name)

    def count(self, name: str) -> int:
        """The rows of table `name` (0 when it is not there)."""
        if not self.has(name):
            return 0
        counted = self._con.execute(f'SELECT count(*) FROM "{name}"').fetchone()
        return int(counted[0]) if counted else 0

    def append_parquet(
        self,
        name: str,
        files: Sequence[Path],
        schema: pa.Schema,
        file_column: str | None = None,
        relative_to: Path | None = None,
    ) -> None:
        """Add the rows of Parquet `files` to table `name`, typed by `schema`, read by DuckDB;
        `schema`'s `file_column`, if given, holds each row's file path relative to `relative_to`.

        DuckDB's own reader streams the files in parallel; through an Arrow dataset the same
        copy took twice the time and five times the memory (benchmarks/analysis.md). Columns
        are matched by name and cast to `schema`'s types, so the table's types are declared,
        not whatever the files say.
        """
        if not files:
            self.append(name, schema.empty_table())
            return
        declared = self._con.from_arrow(schema.empty_table())
        # Never the folders' key=value pairs: DuckDB would read them as columns over the files'
        # own (the lake's `source=query` folder over a row's `source`, its collector).
        source = (
            "read_parquet($files, union_by_name = true, hive_partitioning = false, "
            f"filename = {bool(file_column)})"
        )
        files_given = {"files": [str(path) for path in files]}
        # A nullable column added after some partitions were written reads as null where no
        # file has it yet, so a lake collected by an older mdecost keeps building.
        present = {
            row[0]
            for row in self._con.execute(f"DESCRIBE SELECT * FROM {source}", files_given).fetchall()
        }
        cut = len(str(relative_to)) + 2 if relative_to is not None else 1

        def read(column: str) -> str:
            if column == file_column:
                return f"substr(filename, {cut})"
            return _column_or_null(column, present)

        columns = ", ".join(
            f'CAST({read(column)} AS {kind}) AS "{column}"'
            for column, kind in zip(declared.columns, declared.types, strict=True)
        )
        qualified = f'"{name}"'
        if qualified in self._tables:
            sql = f"INSERT INTO {qualified} BY NAME SELECT {columns} FROM {source}"
        else:
            sql = f"CREATE TABLE {qualified} AS SELECT {columns} FROM {source}"
        self._con.execute(sql, files_given)
        self._tables.add(qualified)

    def attach_read_only(self, path: Path, alias: str) -> None:
        """Attach the database at `path` read-only as `alias` (the published warehouse, whose
        rows an incremental build copies)."""
        quoted = str(path).replace("'", "''")
        self._con.execute(f"ATTACH '{quoted}' AS {alias} (READ_ONLY)")

    def rows(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[tuple]:
        """The rows of a query (of the attached published warehouse's small tables)."""
        return self._con.execute(sql, parameters or {}).fetchall()

    def read(self, sql: str, parameters: Mapping[str, Any] | None = None) -> pa.Table:
        """The result of a query as an Arrow table."""
        return self._con.sql(sql, params=dict(parameters or {})).to_arrow_table()

    def append_state(self, schema: str, name: str, table: pa.Table) -> None:
        """Add `table`'s rows to `schema.name`, a table of the build's own records, kept apart
        from the views analysts query."""
        self._con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        qualified = _qualified(name, schema)
        _append_table(self._con, qualified, table, create=qualified not in self._tables)
        self._tables.add(qualified)

    def document_schema(
        self,
        schema: str,
        comments: Mapping[str, tuple[str, Mapping[str, str]]],
        default_column: str,
    ) -> None:
        """DuckDB comments on the tables of `schema` (`comments`: table -> its comment and its
        columns'; a column without one gets `default_column`)."""
        for name, (comment, columns) in comments.items():
            qualified = f'{schema}."{name}"'
            self._con.execute(f"COMMENT ON TABLE {qualified} IS '{_quote(comment)}'")
            present = self._con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE schema_name = $schema "
                "AND table_name = $name",
                {"schema": schema, "name": name},
            ).fetchall()
            for (column,) in present:
                text = columns.get(column, default_column)
                self._con.execute(f"COMMENT ON COLUMN {qualified}.\"{column}\" IS '{_quote(text)}'")

    def append_part(self, name: str, path: Path) -> None:
        """Add the rows of a Parquet file written from an Arrow table of `name`'s columns (a
        chunk's part, `flows.cluster`), read by DuckDB's own reader: Parquet keeps the Arrow
        types, so the table's types are those the Arrow table gives, in a third of the time
        of reading the file into Arrow first (1.0 s against 3.2 s for a 10k-lake chunk)."""
        qualified = f'"{name}"'
        if qualified in self._tables:
            sql = f"INSERT INTO {qualified} BY NAME SELECT * FROM read_parquet($file)"
        else:
            sql = f"CREATE TABLE {qualified} AS SELECT * FROM read_parquet($file)"
        self._con.execute(sql, {"file": str(path)})
        self._tables.add(qualified)

    def add_tenants(self, tables: Sequence[str], names: str = "subscriptions") -> None:
        """A `tenant_id` column on each of `tables` written, from the `names` table's rows.

        The listing says which tenant a subscription belongs to, so it wins wherever it lists
        the subscription: a billing-account cost query collected in one tenant can return
        subscriptions of another. A table that already has the column (`costs` carries the
        lake's, the tenant the row was collected in) keeps it for subscriptions not listed."""
        for name in tables:
            if f'"{name}"' not in self._tables:
                continue
            self._con.execute(f'ALTER TABLE "{name}" ADD COLUMN IF NOT EXISTS tenant_id VARCHAR')
            # Only rows whose tenant differs are written: in a warehouse copied from the
            # published one (an incremental build) that is the rows the build added.
            self._con.execute(
                f'UPDATE "{name}" SET tenant_id = s.tenant_id FROM "{names}" s '
                f'WHERE "{name}".subscription_id = s.subscription_id '
                f'AND "{name}".tenant_id IS DISTINCT FROM s.tenant_id'
            )

    def document(
        self,
        table_comments: Mapping[str, str],
        column_comments: Mapping[str, Mapping[str, str]],
    ) -> None:
        """DuckDB comments on the tables written, so `duckdb_columns()` documents every column."""
        for name, comment in table_comments.items():
            if f'"{name}"' in self._tables:
                self._con.execute(f"COMMENT ON TABLE \"{name}\" IS '{_quote(comment)}'")
        for name, columns in column_comments.items():
            if f'"{name}"' not in self._tables:
                continue
            for column, text in columns.items():
                self._con.execute(f'COMMENT ON COLUMN "{name}"."{column}" IS \'{_quote(text)}\'')


@contextmanager
def staged(warehouse: Path, copy_published: bool = False) -> Iterator[StagedWarehouse]:
    """A `StagedWarehouse` written beside `warehouse`, swapped in when the block ends cleanly;
    with `copy_published`, it starts as a copy of the published file (an incremental build
    deletes what it recomputes: copying the file takes a fraction of re-inserting its rows).

    The new database is checkpointed, closed and synced before `os.replace` moves it over the
    old name; on any error it is deleted and the published warehouse is untouched. Hold
    `build_lock` around it: one build at a time (the published file is then only ever read, so
    its copy is whole).
    """
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    staging = warehouse.with_name(f".{warehouse.name}.{uuid.uuid4().hex}.building")
    try:
        if copy_published:
            shutil.copyfile(warehouse, staging)
        with duckdb.connect(str(staging)) as con:
            # Rows go in as they come; keeping their order would cost memory and buys nothing:
            # a SQL table has no order (queries say ORDER BY).
            con.execute("SET preserve_insertion_order = false")
            # DuckDB's buffer pool defaults to 80% of the machine; the build's own frames need
            # the memory more. Written pages are flushed to the file rather than kept.
            con.execute(f"SET memory_limit = '{STAGING_MEMORY_LIMIT}'")
            yield StagedWarehouse(con)
            con.execute("CHECKPOINT")
        with staging.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(staging, warehouse)
    finally:
        staging.unlink(missing_ok=True)
        staging.with_name(staging.name + ".wal").unlink(missing_ok=True)


def sweep_abandoned_builds(warehouse: Path) -> list[Path]:
    """Delete staging files a killed build left beside the warehouse; call under `build_lock`.

    Nothing ever reads them (the published name is only ever replaced whole), but they take
    disk space. Only a holder of the build lock may delete them: otherwise they may be live.
    """
    abandoned = sorted(warehouse.parent.glob(f".{warehouse.name}.*.building*"))
    for path in abandoned:
        path.unlink(missing_ok=True)
    return abandoned


def _append_table(
    con: duckdb.DuckDBPyConnection, qualified_name: str, table: pa.Table | ds.Dataset, create: bool
) -> None:
    con.register("_incoming", table)
    try:
        if create:
            con.execute(f"CREATE TABLE {qualified_name} AS SELECT * FROM _incoming")
        else:
            con.execute(f"INSERT INTO {qualified_name} BY NAME SELECT * FROM _incoming")
    finally:
        con.unregister("_incoming")


def _qualified(name: str, schema: str = "main") -> str:
    """Table `name` of `schema` as SQL names it (the views' schema unnamed)."""
    return f'"{name}"' if schema == "main" else f'{schema}."{name}"'


def _quote(text: str) -> str:
    """Comments are our own constant text; double any quote so they stay SQL literals."""
    return text.replace("'", "''")


# Every connection the product opens for analysts (`mdecost sql`, the report) answers queries
# over the warehouse and nothing else. DuckDB's own settings close the rest: no file outside the
# database (COPY ... TO, read_text/read_csv/glob, ATTACH, EXPORT DATABASE, INSTALL), no extension
# installed or loaded behind the analyst's back, and `lock_configuration` so no SET or RESET can
# reopen any of it. A forged file written into the lake from here would become the next build's
# truth, and `/proc/self/environ` holds the credentials: neither may be reachable.
ANALYST_SANDBOX: Final = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,
}


class QueryRefusedError(ValueError):
    """A statement the analyst front end does not run: not exactly one SELECT."""


def connect_read_only(warehouse: Path) -> duckdb.DuckDBPyConnection:
    """A read-only, sandboxed connection (`ANALYST_SANDBOX`): what `mdecost sql` and the report
    use."""
    if not warehouse.exists():
        raise WarehouseMissingError(
            f"no warehouse at {warehouse}; run `mdecost build` (or `mdecost demo`) first"
        )
    return duckdb.connect(str(warehouse), read_only=True, config=dict(ANALYST_SANDBOX))


def single_select(sql: str) -> str:
    """`sql` if it is exactly one SELECT (WITH, VALUES, FROM-first, DESCRIBE and SHOW are
    SELECTs to DuckDB), else QueryRefusedError saying why.

    The sandbox already makes writes and file access fail; refusing every other statement type
    up front (SET, PRAGMA, CALL, ATTACH, COPY, EXPORT, INSTALL, LOAD, CREATE...) says so in one
    line instead of relying on each one's own error, and keeps one statement per call.
    """
    statements = duckdb.extract_statements(sql)
    if not statements:
        raise QueryRefusedError("no SQL statement given: pass one SELECT query")
    if len(statements) > 1:
        raise QueryRefusedError(
            f"{len(statements)} statements given: `mdecost sql` runs one SELECT query at a time"
        )
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise QueryRefusedError(
            f"a {kind.name} statement: `mdecost sql` is read-only and runs SELECT queries only"
        )
    return sql


def query(warehouse: Path, sql: str, parameters: Mapping[str, Any] | None = None) -> pa.Table:
    """Run one read-only SELECT (`single_select`) on a sandboxed connection; values reach SQL
    only as bound parameters (`$name`)."""
    with connect_read_only(warehouse) as con:
        return con.sql(single_select(sql), params=dict(parameters or {})).to_arrow_table()
