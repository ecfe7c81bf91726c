"""Read Cost Management export files from disk into the `costs` dataset (`mdecost import-costs`).

The I/O half of export import: find the files, read each header, let `transforms.costs` say
which layout it is, scan the rows as strings (never inferred types: a column that looks numeric
in one file and not in the next must not change meaning) and hand them to the pure transform.

Accepted files: `.csv`, `.csv.gz` and `.parquet`, given one by one or as folders (searched
recursively; Cost Management writes one folder per export run, with a `manifest.json` beside the
data files, which is skipped). CSV files may start with a UTF-8 byte-order mark; the string
`NULL` and empty fields are nulls.

Uncertain in the real world: EA / MCA cost-details files look the same whether they hold actual
or amortized cost (FOCUS files, told apart by their columns, hold both). The cost type of a
cost-details file is taken from the caller, else from a whole word of the path (`Actual` or
`Amortized` in a file or folder name, as Cost Management names exports by default and the
FinOps toolkit names its samples; `contractual-2026/` says nothing); a file with rows and no
such word, or both, is refused, asking for `--cost-type`.

Bad input is refused before anything is written, with the file and, where there is one, the row
(counted from 1, the first row after the header) and the file's own column name: a row with more
or fewer fields than the header, an empty required field, a cost or quantity that is not a
number, a date that is not a date, a damaged gzip or Parquet file, one sub-account billed in two
currencies (see `transforms.costs.refuse_mixed_currency_sub_accounts`; different currencies for
different sub-accounts of one billing account are kept, and listed). Negative quantities and
costs (refunds, credits, corrections) are kept as they are, and counted per file.

`import_costs_to_lake` writes the lake: one partition per month, owner (the subscription a row
was billed under, else its sub-account, else its billing account: `transforms.sources`) and cost
type, `costs/source=export/month=/sub_account=<guid or digest>/cost_type=`. So an export states
the whole truth for every (month, owner, cost type) it holds and nothing else: the same file
imported again replaces its rows instead of adding them, a later export of a month (restated)
replaces the earlier one, and importing subscription B's export after A's (one billing account)
leaves A's rows alone. Rows of a partition dated outside the days the new file covers are kept
and reported. The files of one partitioned export run (one folder) are imported together; two
folders feeding the same partition in one import (two runs of one export) are refused, as are a
FOCUS and an EA / MCA file stating the same owner's month together; a file whose content was
already read in the same import is skipped. Which of several sources a build counts when the
lake holds more than one for a month (Query API and export, FOCUS and EA, imports of different
days) is `transforms.sources`' business.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import logging
import re
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import combinations
from pathlib import Path
from typing import Final, cast

import polars as pl
import pyarrow as pa

from flows.lake import partition_path, scan_files, write_partition
from transforms.costs import (
    COST_TYPES,
    EXPORT_SOURCE,
    CostDataError,
    ExportLayout,
    currencies_by_sub_account,
    detect_layout,
    export_to_costs,
    first_unreadable_value,
    non_arm_ids,
    refuse_mixed_currency_sub_accounts,
    to_costs_table,
    unknown_units,
    unsafe_id,
    unusual_currencies,
)
from transforms.schemas import COSTS, PROVENANCE_COLUMNS, SchemaError
from transforms.sources import COST_VIEWS, charge_owner

log = logging.getLogger(__name__)

EXPORT_SUFFIXES: Final = (".csv", ".csv.gz", ".parquet")
# The id columns of `costs` rows, checked for values that are no id (`transforms.costs.unsafe_id`).
_ID_COLUMNS: Final = ("resource_id", "sub_account_id", "subscription_id", "scope")
CSV_NULL_VALUES: Final = ["NULL"]


@dataclass(frozen=True)
class ImportedFile:
    """What one file contributed: its layout, how many rows, which units PricingUnits lacks,
    how many rows are refunds or credits (a negative quantity or cost, kept), its currencies, the
    (month, owner, cost type) partitions it feeds, whether it repeats a file already read, and
    the resource ids that are not ARM ids (kept: other clouds' rows in a FOCUS file)."""

    path: Path
    layout: str
    rows: int
    cost_type: str | None
    unknown_units: tuple[str, ...]
    negative_rows: int = 0
    currencies: tuple[str, ...] = ()
    partitions: tuple[tuple[str, str, str], ...] = ()
    duplicate_of: Path | None = None
    non_arm_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class CostImport:
    """Every imported row in the `costs` schema, and a line per file for the user."""

    table: pa.Table
    files: tuple[ImportedFile, ...]


def _is_export_file(path: Path) -> bool:
    return path.name.lower().endswith(EXPORT_SUFFIXES)


_URL: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")


def export_files(paths: Iterable[Path]) -> list[Path]:
    """The export files named by `paths`: files as given, folders searched recursively (sorted).

    Raises CostDataError for a path that does not exist, a file of another kind, or a folder
    with no export file in it, so a typo never imports nothing silently. A URL is refused
    without its query string, which for a storage account holds the SAS token.
    """
    found: list[Path] = []
    for path in paths:
        if _URL.match(str(path)):
            shown = str(path).split("?", 1)[0]
            raise CostDataError(
                f"{shown}: a URL; mdecost imports export files on disk - download them first "
                "(the URL's query string is not shown: it may hold a SAS token)"
            )
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
    # Columns are matched without case (EA spells `MeterName`, MCA `meterName`): two spellings
    # of one name would leave which one is read to chance.
    spellings: dict[str, list[str]] = defaultdict(list)
    for name in header:
        spellings[name.strip().lower()].append(name)
    clashing = [names for names in spellings.values() if len(names) > 1]
    if clashing:
        raise CostDataError(
            f"{path}: columns {' and '.join(clashing[0])} differ only in case; mdecost reads "
            "columns without case, so it cannot tell which one to use - export the file again"
        )
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


# A path's words: runs of letters or digits, camelCase split (`ActualCost` -> actual, cost), so
# `contractual-2026/` holds the word `contractual`, not `actual`.
_WORD: Final = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_COST_TYPE_WORDS: Final = {"actual": "ActualCost", "amortized": "AmortizedCost"}


def cost_type_from_path(path: Path) -> str | None:
    """`AmortizedCost` or `ActualCost` when a whole word of the file's or a folder's name says
    so (`EA_ActualCost_Small.csv`, `amortized/2026-10/`), else None: no word, or both."""
    words = {word.lower() for word in _WORD.findall(str(path))}
    found = {kind for word, kind in _COST_TYPE_WORDS.items() if word in words}
    return found.pop() if len(found) == 1 else None


def _is_csv(path: Path) -> bool:
    return not path.name.lower().endswith(".parquet")


def first_ragged_row(path: Path, fields: int) -> tuple[int, int] | None:
    """(row, fields) of the first data row whose field count is not `fields`, else None.

    Only called once a file has been found faulty (a loop over rows, to name the row): polars
    reports a row with too many fields without saying which, and reads one with too few as nulls.
    """
    with _open_text(path) as handle:
        rows = csv.reader(handle)
        next(rows, None)
        for number, row in enumerate((row for row in rows if row), start=1):
            if len(row) != fields:
                return number, len(row)
    return None


def _ragged_row_error(path: Path, header: Sequence[str]) -> CostDataError | None:
    ragged = first_ragged_row(path, len(header))
    if ragged is None:
        return None
    row, fields = ragged
    return CostDataError(
        f"{path}: row {row} has {fields} fields, the header has {len(header)}: a value with an "
        "unquoted comma, or a line cut short - check the file, or export it again"
    )


def check_row_lengths(path: Path, raw: pl.LazyFrame, header: Sequence[str]) -> None:
    """Refuse a CSV file with a row longer than its header, naming the row.

    The transform reads only the columns it needs, and polars then does not notice a row with an
    extra field; yet an unquoted comma shifts every later value of that row into the wrong
    column. Counting the nulls of every column parses every field of every row (streamed).
    """
    try:
        raw.select(pl.all().null_count()).collect(engine="streaming")
    except pl.exceptions.ComputeError as error:
        located = _ragged_row_error(path, header)
        if located is None:
            raise
        raise located from error


def _why_unreadable(
    path: Path,
    raw: pl.LazyFrame,
    layout: ExportLayout,
    header: Sequence[str],
    latest_year: int | None = None,
) -> CostDataError | None:
    """The row and column behind a refused value: a short row, else the first bad value."""
    found = first_unreadable_value(raw, layout, latest_year=latest_year)
    if found is None:
        return None
    if _is_csv(path):
        ragged = first_ragged_row(path, len(header))
        if ragged is not None and ragged[0] <= found.row:
            return _ragged_row_error(path, header)
    return CostDataError(found.describe(str(path)))


def _damaged(path: Path, error: BaseException) -> CostDataError:
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    if path.name.lower().endswith(".gz"):
        what = "a damaged or incomplete gzip file"
    elif path.name.lower().endswith(".parquet"):
        what = "not a readable Parquet file"
    else:
        what = "not a readable text file"
    return CostDataError(f"{path}: {what} ({first_line}); download or export it again")


def import_cost_file(
    path: Path, *, cost_type: str | None, ingested_at: datetime
) -> tuple[pa.Table, ImportedFile]:
    """One export file as a `costs` table (schema-conformed) and its summary line.

    Raises CostDataError naming the file (and the row and column where there is one) for
    anything it cannot read; see the module docstring.
    """
    try:
        return _import_cost_file(path, cost_type=cost_type, ingested_at=ingested_at)
    except CostDataError:
        raise
    except (
        OSError,
        EOFError,
        zlib.error,
        UnicodeDecodeError,
        csv.Error,  # e.g. a field over the csv module's 128 KiB limit, met naming a row
        pl.exceptions.PolarsError,
    ) as error:
        raise _damaged(path, error) from error


def _import_cost_file(
    path: Path, *, cost_type: str | None, ingested_at: datetime
) -> tuple[pa.Table, ImportedFile]:
    header = read_header(path)
    layout = detect_layout(header, str(path))
    raw = scan_export(path, header)
    if _is_csv(path):
        check_row_lengths(path, raw, header)
    resolved = None
    if not layout.is_focus:
        resolved = cost_type or cost_type_from_path(path)
        if resolved is None:
            if raw.head(1).collect().height:
                raise CostDataError(
                    f"{path}: {layout.name} files do not say whether they hold actual or "
                    "amortized cost and no word of the path does either; pass --cost-type "
                    f"({' or '.join(COST_TYPES)})"
                )
            # A header-only file: no row will carry the cost type.
            resolved = COST_TYPES[0]
    costs = export_to_costs(
        raw, layout, cost_type=resolved, ingested_at=ingested_at, fallback_scope=f"file:{path.name}"
    )
    latest_year = ingested_at.year + 1
    try:
        table = to_costs_table(costs, str(path), latest_year=latest_year)
    except (CostDataError, SchemaError) as error:
        located = _why_unreadable(path, raw, layout, header, latest_year)
        if located is None:
            raise
        raise located from error
    frame = pl.from_arrow(table).lazy()  # type: ignore[union-attr]
    if (
        not frame.filter(pl.any_horizontal(unsafe_id(pl.col(c)) for c in _ID_COLUMNS))
        .head(1)
        .collect()
        .is_empty()
    ):
        located = _why_unreadable(path, raw, layout, header, latest_year)
        raise located or CostDataError(
            f"{path}: an id starts like a spreadsheet formula or holds a control character"
        )
    odd_ids = tuple(non_arm_ids(frame))
    if odd_ids:
        log.warning(
            "%s: %d resource id(s) that are not Azure resource ids, kept (they match no "
            "machine), e.g. %r",
            path,
            len(odd_ids),
            odd_ids[0],
        )
    unusual = unusual_currencies(frame)
    if unusual:
        located = _why_unreadable(path, raw, layout, header)
        raise located or CostDataError(
            f"{path}: billing currencies {', '.join(map(repr, unusual))} are not currency codes"
        )
    refuse_mixed_currency_sub_accounts(frame, str(path))
    missing_units = tuple(unknown_units(frame))
    if missing_units:
        log.warning(
            "%s: unit(s) not in PricingUnits.csv, block size 1 assumed: %s",
            path,
            ", ".join(missing_units),
        )
    currencies = tuple(sorted(set(currencies_by_sub_account(frame)["billing_currency"])))
    if len(currencies) > 1:
        log.warning(
            "%s: sub-accounts billed in different currencies (%s), kept apart: amounts of "
            "different currencies are never added together",
            path,
            ", ".join(currencies),
        )
    negative = (
        frame.filter(
            (pl.col("consumed_quantity") < 0)
            | (pl.col("billed_cost") < 0)
            | (pl.col("effective_cost") < 0)
        )
        .select(pl.len())
        .collect()
        .item()
    )
    if negative:
        log.info(
            "%s: %d row(s) with a negative quantity or cost (refunds, credits) kept", path, negative
        )
    summary = ImportedFile(
        path,
        layout.name,
        table.num_rows,
        resolved,
        missing_units,
        negative_rows=negative,
        currencies=currencies,
        partitions=tuple(sorted(_partition_keys(frame))),
        non_arm_ids=odd_ids,
    )
    return table, summary


def _month_label() -> pl.Expr:
    return pl.col("charge_period_start").dt.strftime("%Y-%m").alias("month")


def _owner_key() -> pl.Expr:
    """What a row's charges belong to (`transforms.sources.charge_owner`): a file states the
    whole truth for each owner, month and cost type it holds, and for nothing else."""
    return charge_owner().alias("owner")


def _partition_keys(costs: pl.LazyFrame) -> set[tuple[str, str, str]]:
    keys = costs.select(_month_label(), _owner_key(), "cost_type").unique().collect()
    return {(month, owner, cost_type) for month, owner, cost_type in keys.iter_rows()}


_GUID_VALUE: Final = re.compile(r"[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}")


def scope_partition_value(scope: str) -> str:
    """A stable digest of an ARM scope for a partition value (scopes hold slashes). Partitions
    of lakes written before exports were keyed by owner are named so (`scope=<digest>`)."""
    return hashlib.sha256(scope.strip().lower().encode()).hexdigest()[:16]


def owner_partition_value(owner: str) -> str:
    """The `sub_account=` partition value of an owner: a subscription's GUID as it is (a reader
    of the lake sees whose rows a folder holds), any other owner as `scope_partition_value`."""
    return owner if _GUID_VALUE.fullmatch(owner) else scope_partition_value(owner)


def _content_digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


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
    read: dict[str, Path] = {}
    for path in export_files(paths):
        digest = _content_digest(path)
        if digest in read:
            log.warning("%s: same content as %s, read once", path, read[digest])
            files.append(ImportedFile(path, "duplicate", 0, None, (), duplicate_of=read[digest]))
            continue
        read[digest] = path
        table, summary = import_cost_file(path, cost_type=cost_type, ingested_at=stamp)
        tables.append(table)
        files.append(summary)
    combined = pa.concat_tables(tables) if tables else COSTS.empty_table()
    return CostImport(combined, tuple(files))


@dataclass(frozen=True)
class LakeImport:
    """What `import_costs_to_lake` read, the partition files it wrote, and a line for each
    partition whose earlier rows outside the new file's days it kept."""

    files: tuple[ImportedFile, ...]
    written: tuple[Path, ...]
    rows: int
    kept: tuple[str, ...] = ()


def _refuse_two_runs_in_one_partition(files: Sequence[ImportedFile]) -> None:
    """Files of one export run share a folder; two folders feeding one (month, owner, cost type)
    are two runs of an export (an earlier and a restated one): adding both would count twice."""
    folders: dict[tuple[str, str, str], dict[Path, Path]] = defaultdict(dict)
    for imported in files:
        for key in imported.partitions:
            folders[key].setdefault(imported.path.parent, imported.path)
    for (month, owner, cost_type), by_folder in sorted(folders.items()):
        if len(by_folder) > 1:
            first, second = list(by_folder.values())[:2]
            raise CostDataError(
                f"{first} and {second} both hold {cost_type} rows of {owner} for {month}, from "
                "different folders (two runs of an export?); import only the latest run's folder"
            )


def _refuse_two_layouts_of_one_view(files: Sequence[ImportedFile]) -> None:
    """A FOCUS file states the actual and the amortized cost, an EA / MCA file one of them:
    imported together for one owner and month, they would be one ingestion stating one view
    twice, and the build could not tell which to count (`transforms.sources`)."""
    stated: dict[tuple[str, str], dict[str, Path]] = defaultdict(dict)
    for imported in files:
        for month, owner, cost_type in imported.partitions:
            stated[(month, owner)].setdefault(cost_type, imported.path)
    for (month, owner), by_type in sorted(stated.items()):
        for first, second in combinations(sorted(by_type), 2):
            if COST_VIEWS.get(first, frozenset()) & COST_VIEWS.get(second, frozenset()):
                raise CostDataError(
                    f"{by_type[first]} ({first}) and {by_type[second]} ({second}) both state the "
                    f"cost of {owner} for {month}; import one of them (a FOCUS export holds "
                    "both the actual and the amortized cost)"
                )


def _rows_outside(old: pl.DataFrame, new: pl.DataFrame) -> pl.DataFrame:
    """The rows of a partition's `old` file dated outside the days the `new` rows cover: a
    file states the truth for its own period, so an export of the 16th to the 31st leaves the
    1st to the 15th as they were."""
    first, last = new.select(
        first=pl.col("charge_period_start").min(), last=pl.col("charge_period_start").max()
    ).row(0)
    day = pl.col("charge_period_start").dt.date()
    return old.filter((day < first.date()) | (day > last.date()))


def import_costs_to_lake(
    paths: Sequence[Path],
    lake: Path,
    *,
    cost_type: str | None = None,
    ingested_at: datetime | None = None,
) -> LakeImport:
    """Import export files (what `mdecost import-costs PATH... [--cost-type]` runs) into `lake`.

    Every file is read and checked first; only then is each (month, owner, cost type) partition
    the files hold written (`flows.lake.write_partition`), rows in a fixed order. A partition
    is keyed by what the file covers: the owner (subscription, else sub-account, else billing
    scope) and the month, so importing subscription A's export and then B's (one billing
    account) keeps both, and a re-import of A replaces A's rows. Rows already in a partition
    that the new file does not cover (days outside the new rows' first to last day) are kept,
    and `LakeImport.kept` says so. Any refusal (CostDataError naming the file, row and column)
    leaves the lake as it was.
    """
    imported = import_cost_exports(paths, cost_type=cost_type, ingested_at=ingested_at)
    _refuse_two_runs_in_one_partition(imported.files)
    _refuse_two_layouts_of_one_view(imported.files)
    costs = cast(pl.DataFrame, pl.from_arrow(imported.table))
    order = [name for name in COSTS.names if name not in PROVENANCE_COLUMNS]
    written: list[Path] = []
    kept: list[str] = []
    by_partition = costs.with_columns(_month_label(), _owner_key()).partition_by(
        ["month", "owner", "cost_type"], as_dict=True, maintain_order=False
    )
    for (month, owner, kind), rows in sorted(by_partition.items()):
        partition = {
            "source": EXPORT_SOURCE,
            "month": str(month),
            "sub_account": owner_partition_value(str(owner)),
            "cost_type": str(kind),
        }
        new_rows = rows.drop("month", "owner")
        existing = partition_path(lake, "costs", partition)
        if existing.exists():
            # Read as declared: a partition an older mdecost wrote lacks the later columns.
            outside = _rows_outside(scan_files("costs", [existing]).collect(), new_rows)
            if outside.height:
                kept.append(
                    f"kept {outside.height} earlier {kind} row(s) of {owner} for {month} dated "
                    "outside the days the new file covers"
                )
                new_rows = pl.concat([new_rows, outside], how="vertical_relaxed")
        # polars hands strings to Arrow as large_string: back to the declared schema's types.
        table = new_rows.sort(order, nulls_last=True).to_arrow().cast(COSTS)
        origin = f"export rows of {owner} for {month} ({kind})"
        written.append(write_partition(lake, "costs", partition, table, origin=origin))
    return LakeImport(imported.files, tuple(written), costs.height, tuple(kept))
