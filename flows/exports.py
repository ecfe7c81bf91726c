"""Read Cost Management export files from disk into the `costs` dataset (`mdecost import-costs`).

The I/O half of export import: find the files, read each header, let `transforms.costs` say
which layout it is, scan the rows as strings (never inferred types: a column that looks numeric
in one file and not in the next must not change meaning) and hand them to the pure transform.

Accepted files: `.csv`, `.csv.gz` and `.parquet`, given one by one or as folders (searched
recursively; Cost Management writes one folder per export run, with a `manifest.json` beside the
data files, which is skipped). CSV files may start with a UTF-8 byte-order mark; the string
`NULL` and empty fields are nulls.

Uncertain in the real world: EA / MCA cost-details files look the same whether they hold actual
or amortized cost. The cost type is taken from the caller, else from the path (`...Amortized...`
or `...Actual...` in a file or folder name, as Cost Management names exports by default and the
FinOps toolkit names its samples); a file with rows and neither is refused.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import polars as pl
import pyarrow as pa

from transforms.costs import (
    COST_TYPES,
    CostDataError,
    detect_layout,
    export_to_costs,
    to_costs_table,
    unknown_units,
)
from transforms.schemas import COSTS

log = logging.getLogger(__name__)

EXPORT_SUFFIXES: Final = (".csv", ".csv.gz", ".parquet")
CSV_NULL_VALUES: Final = ["NULL"]


@dataclass(frozen=True)
class ImportedFile:
    """What one file contributed: its layout, how many rows, which units PricingUnits lacks."""

    path: Path
    layout: str
    rows: int
    cost_type: str | None
    unknown_units: tuple[str, ...]


@dataclass(frozen=True)
class CostImport:
    """Every imported row in the `costs` schema, and a line per file for the user."""

    table: pa.Table
    files: tuple[ImportedFile, ...]


def _is_export_file(path: Path) -> bool:
    return path.name.lower().endswith(EXPORT_SUFFIXES)


def export_files(paths: Iterable[Path]) -> list[Path]:
    """The export files named by `paths`: files as given, folders searched recursively (sorted).

    Raises CostDataError for a path that does not exist, a file of another kind, or a folder
    with no export file in it, so a typo never imports nothing silently.
    """
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.is_file() and _is_export_file(p))
            if not inside:
                raise CostDataError(
                    f"{path}: no {', '.join(EXPORT_SUFFIXES)} file in this folder or below"
                )
            found.extend(inside)
        elif path.is_file():
            if not _is_export_file(path):
                raise CostDataError(
                    f"{path}: not a cost export file (expected {', '.join(EXPORT_SUFFIXES)})"
                )
            found.append(path)
        else:
            raise CostDataError(f"{path}: no such file or folder")
    return found


def _open_text(path: Path) -> io.TextIOBase:
    """The file as text, BOM removed (`utf-8-sig`), decompressed if it is `.gz`."""
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, mode="rt", encoding="utf-8-sig", newline="")  # type: ignore[return-value]
    return path.open(encoding="utf-8-sig", newline="")


def read_header(path: Path) -> list[str]:
    """The column names of an export file, as written (BOM removed)."""
    if path.name.lower().endswith(".parquet"):
        return list(pl.read_parquet_schema(path))
    with _open_text(path) as handle:
        header = next(csv.reader(handle), None)
    if not header:
        raise CostDataError(f"{path}: empty file, not even a header row")
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise CostDataError(f"{path}: column(s) {', '.join(duplicated)} appear more than once")
    return header


def scan_export(path: Path, header: Sequence[str]) -> pl.LazyFrame:
    """Every column of the file as a string, lazily: types are decided by the transform."""
    if path.name.lower().endswith(".parquet"):
        return pl.scan_parquet(path).select(pl.all().cast(pl.String))
    return pl.scan_csv(
        path,
        has_header=True,
        schema=dict.fromkeys(header, pl.String),
        null_values=CSV_NULL_VALUES,
    )


def cost_type_from_path(path: Path) -> str | None:
    """`AmortizedCost` or `ActualCost` when the file or a folder above it says so, else None."""
    lowered = str(path).lower()
    amortized, actual = "amortized" in lowered, "actual" in lowered
    if amortized == actual:
        return None
    return "AmortizedCost" if amortized else "ActualCost"


def import_cost_file(
    path: Path, *, cost_type: str | None, ingested_at: datetime
) -> tuple[pa.Table, ImportedFile]:
    """One export file as a `costs` table (schema-conformed) and its summary line."""
    header = read_header(path)
    layout = detect_layout(header, str(path))
    raw = scan_export(path, header)
    resolved = None
    if not layout.is_focus:
        resolved = cost_type or cost_type_from_path(path)
        if resolved is None:
            if raw.head(1).collect().height:
                raise CostDataError(
                    f"{path}: {layout.name} files do not say whether they hold actual or "
                    f"amortized cost and the path does not either; pass the cost type "
                    f"({' or '.join(COST_TYPES)})"
                )
            # A header-only file: no row will carry the cost type.
            resolved = COST_TYPES[0]
    costs = export_to_costs(
        raw, layout, cost_type=resolved, ingested_at=ingested_at, fallback_scope=f"file:{path.name}"
    )
    table = to_costs_table(costs, str(path))
    missing_units = tuple(unknown_units(pl.from_arrow(table).lazy()))  # type: ignore[union-attr]
    if missing_units:
        log.warning(
            "%s: unit(s) not in PricingUnits.csv, block size 1 assumed: %s",
            path,
            ", ".join(missing_units),
        )
    return table, ImportedFile(path, layout.name, table.num_rows, resolved, missing_units)


def import_cost_exports(
    paths: Sequence[Path],
    *,
    cost_type: str | None = None,
    ingested_at: datetime | None = None,
) -> CostImport:
    """Read every export file under `paths` into one `costs` table (what `import-costs` runs).

    `cost_type` (`ActualCost` / `AmortizedCost`) applies to EA / MCA cost-details files; FOCUS
    files carry both costs and ignore it. `ingested_at` defaults to now (UTC). Any file that
    cannot be read stops the import with a CostDataError naming the file: nothing is half
    imported. Writing the table to the lake is the caller's business.
    """
    if cost_type is not None and cost_type not in COST_TYPES:
        raise CostDataError(f"cost type must be one of {', '.join(COST_TYPES)}, got {cost_type!r}")
    stamp = ingested_at or datetime.now(UTC)
    tables: list[pa.Table] = []
    files: list[ImportedFile] = []
    for path in export_files(paths):
        table, summary = import_cost_file(path, cost_type=cost_type, ingested_at=stamp)
        tables.append(table)
        files.append(summary)
    combined = pa.concat_tables(tables) if tables else COSTS.empty_table()
    return CostImport(combined, tuple(files))
