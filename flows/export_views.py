"""`mdecost export`: every warehouse table as Parquet or CSV files, for Power BI and Excel.

One file per table (`<DIR>/<table>.parquet` or `.csv`), streamed from a read-only, sandboxed
connection in record batches (memory follows a batch, not the table) and written beside its
final name, then renamed, so a reader never opens half a file. Parquet keeps the warehouse's
types (`machines.tags` stays a map). CSV writes maps and lists as JSON text, and a text cell
starting with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'` (OWASP, CSV
injection), as comparison.csv does.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from flows.warehouse import connect_read_only

EXPORT_FORMATS: Final = ("parquet", "csv")
BATCH_ROWS: Final = 100_000
_NESTED: Final = ("MAP(", "[]", "STRUCT(", "UNION(")


@dataclass(frozen=True)
class ExportedTable:
    table: str
    path: Path
    rows: int


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _select(column: str, data_type: str, csv: bool) -> str:
    quoted = _quoted(column)
    if not csv:
        return quoted
    if any(marker in data_type for marker in _NESTED):
        value = f"CAST(to_json({quoted}) AS VARCHAR)"
    elif data_type == "VARCHAR":
        value = quoted
    else:
        return quoted
    return (
        f"CASE WHEN regexp_matches({value}, '^[=+\\-@\\t\\r]') THEN '''' || {value} "
        f"ELSE {value} END AS {quoted}"
    )


def export_warehouse(warehouse: Path, directory: Path, file_format: str) -> list[ExportedTable]:
    """Write every table of `warehouse` to `directory` as `file_format` (parquet or csv)."""
    if file_format not in EXPORT_FORMATS:
        raise ValueError(
            f"unknown export format {file_format!r}; choose {' or '.join(EXPORT_FORMATS)}"
        )
    directory.mkdir(parents=True, exist_ok=True)
    exported = []
    with connect_read_only(warehouse) as con:
        tables = [
            row[0]
            for row in con.sql(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' ORDER BY 1"
            ).fetchall()
        ]
        for table in tables:
            columns = con.execute(
                "SELECT column_name, data_type FROM duckdb_columns() "
                "WHERE schema_name = 'main' AND table_name = ? ORDER BY column_index",
                [table],
            ).fetchall()
            select = ", ".join(_select(name, kind, file_format == "csv") for name, kind in columns)
            reader = con.sql(f"SELECT {select} FROM {_quoted(table)}").to_arrow_reader(BATCH_ROWS)
            path = directory / f"{table}.{file_format}"
            rows = _write(reader, path, file_format)
            exported.append(ExportedTable(table, path, rows))
    return exported


def _write(reader: pa.RecordBatchReader, path: Path, file_format: str) -> int:
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    rows = 0
    try:
        writer: pq.ParquetWriter | pacsv.CSVWriter
        if file_format == "parquet":
            writer = pq.ParquetWriter(staging, reader.schema)
        else:
            writer = pacsv.CSVWriter(staging, reader.schema)
        with writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    return rows
