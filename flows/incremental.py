"""Incremental builds: what the published warehouse was built from, and which of its rows the
next build may copy instead of computing them again.

The warehouse keeps, in its `build_state` schema, what it was built from: the lake's partition
files (path, size, modification time), the chunks of subscriptions it was built in, the digest
of everything else its figures depend on (settings, price book, the build's code), the estate's
facts, and each chunk's parts of the estate-wide views. The next build compares the lake with
that record. A chunk none of whose files changed, judged by unchanged facts, is copied whole; a
chunk whose files changed is recomputed from the first month the change can reach
(`transforms.incremental` says how that month is found) and its earlier months are copied. The
estate-wide views are always recomputed from every chunk's parts. Anything that cannot be
compared (no record, other settings, prices or code, an earlier history start, other chunks)
makes a full build, and says why.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Final

import polars as pl
import pyarrow as pa

import transforms
from flows.lake import Lake, ObjectStoreLake, dataset_files, partition_value, scan_files
from flows.warehouse import connect_read_only
from transforms.incremental import month_start
from transforms.schemas import DATASETS

STATE_SCHEMA: Final = "build_state"
# The build state's tables besides the chunks' parts.
STATE_TABLES: Final = ("context", "inputs", "chunks", "survey")
# The estate parts a chunk hands the estate step (`transforms.marts.EstateParts` fields), kept
# per chunk so a copied chunk still contributes its parts.
PART_NAMES: Final = (
    "fleet_rows",
    "estate_deltas",
    "option_parts",
    "block_members",
    "leaders",
    "cut_offs",
    "showback",
)
# A new pricings snapshot that says something new can move a trial's end (read from
# freeTrialRemainingTime) back over the 30 days of a trial: its change reaches that far back.
PRICINGS_REACH: Final = timedelta(days=31)
# The code the figures are computed by (and this module's rules): a change to it makes the next
# build a full one.
_CODE: Final = (
    Path(transforms.__file__).parent,
    *(Path(__file__).with_name(name) for name in ("build.py", "incremental.py", "lake.py")),
)

Listing = dict[str, tuple[int, int]]  # lake-relative partition path -> (bytes, mtime in ns)


def lake_listing(lake: Lake) -> Listing:
    """Every committed partition file of every dataset, with its size and modification time
    (in object storage: its ETag, as a number).

    Partitions are replaced by rename (in object storage: uploaded whole, a new ETag), so a
    rewritten file has another size or version; reading the files' contents is not needed.
    """
    listing: Listing = {}
    for dataset in DATASETS:
        if isinstance(lake, ObjectStoreLake):
            for blob, (size, etag) in lake.listing(dataset).items():
                version = int.from_bytes(hashlib.sha256(etag.encode()).digest()[:8], signed=True)
                listing[str(blob.relative_to(lake.root))] = (size, version)
            continue
        for path in dataset_files(lake, dataset):
            status = path.stat()
            listing[str(path.relative_to(lake))] = (status.st_size, status.st_mtime_ns)
    return listing


def listing_digest(listing: Listing) -> str:
    digest = hashlib.sha256()
    for path, (size, mtime) in listing.items():
        digest.update(f"{path}\0{size}\0{mtime}\n".encode())
    return digest.hexdigest()


def code_digest() -> str:
    """A digest of the code that computes the views (and of these rules)."""
    digest = hashlib.sha256()
    for root in _CODE:
        for source in sorted(root.rglob("*.py")) if root.is_dir() else [root]:
            digest.update(source.read_bytes())
    return digest.hexdigest()


def context_digest(settings_row: pa.Table, book: pa.Table) -> str:
    """A digest of what every figure depends on besides the lake: the build's settings (the
    `build_info` row without the columns of one build), the effective price book and the code
    that computes the views."""
    digest = hashlib.sha256()
    per_build = {"built_at", "lake_fingerprint", "history_start", "history_end"}
    settings = {
        name: settings_row.column(name).to_pylist()
        for name in settings_row.column_names
        if name not in per_build
    }
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, book.schema) as writer:
        writer.write_table(book)
    digest.update(sink.getvalue().to_pybytes())
    digest.update(code_digest().encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class Facts:
    """The estate's facts a build judged by (`transforms.marts.EstateFacts`), comparable."""

    window_start: datetime | None
    window_end: datetime | None
    latest_snapshot_date: date | None
    billed_through: date | None


@dataclass(frozen=True)
class Published:
    """What the published warehouse was built from (its `build_state`)."""

    context: str
    facts: Facts
    files: Listing
    chunks: dict[str, tuple[str, ...]]  # chunk key -> its subscriptions
    code: str  # `code_digest` of the mdecost that built it
    survey: pl.DataFrame  # `transforms.sources.survey` rows, `file` lake-relative


def chunk_key(subscriptions: Iterable[str]) -> str:
    """A chunk's name in the build state: its first subscription (a subscription is in one
    chunk only)."""
    return min(subscriptions)


def published_build(warehouse: Path) -> Published | None:
    """The build state of the published `warehouse`, or None when it has none (built by a
    mdecost before incremental builds, or before the state recorded what it now does)."""
    with connect_read_only(warehouse) as con:

        def rows(sql: str) -> list[tuple]:
            return con.execute(sql).fetchall()

        present = {
            (name, column)
            for name, column in rows(
                "SELECT table_name, column_name FROM duckdb_columns() "
                f"WHERE schema_name = '{STATE_SCHEMA}'"
            )
        }
        wanted = {
            ("context", "code"),
            ("inputs", "file"),
            ("chunks", "chunk_key"),
            ("survey", "file"),
            ("survey", "content"),
        }
        if not wanted <= present:
            return None
        state = STATE_SCHEMA
        facts = rows(
            "SELECT context, code, window_start, window_end, latest_snapshot_date, "
            f"billed_through FROM {state}.context"
        )
        if len(facts) != 1:
            return None
        context, code, *judged = facts[0]
        survey = normalised_part(
            pl.from_arrow(con.sql(f"SELECT * FROM {state}.survey").to_arrow_table())  # type: ignore[arg-type]
        )
        inputs = rows(f"SELECT file, bytes, mtime_ns FROM {state}.inputs")
        chunks: dict[str, list[str]] = {}
        for key, subscription in rows(
            f"SELECT chunk_key, subscription_id FROM {state}.chunks ORDER BY ALL"
        ):
            chunks.setdefault(key, []).append(subscription)
    return Published(
        context,
        Facts(*judged),
        {path: (size, mtime) for path, size, mtime in inputs},
        {key: tuple(members) for key, members in chunks.items()},
        code,
        survey,
    )


def state_tables(
    context: str,
    facts: Facts,
    listing: Listing,
    chunks: Mapping[str, tuple[str, ...]],
    survey: pl.DataFrame,
) -> dict[str, pa.Table]:
    """The build state's own tables (the parts are appended chunk by chunk)."""
    return {
        "context": pa.table(
            {
                "context": [context],
                "code": [code_digest()],
                "window_start": pa.array([facts.window_start], pa.timestamp("us", tz="UTC")),
                "window_end": pa.array([facts.window_end], pa.timestamp("us", tz="UTC")),
                "latest_snapshot_date": pa.array([facts.latest_snapshot_date], pa.date32()),
                "billed_through": pa.array([facts.billed_through], pa.date32()),
            }
        ),
        "inputs": pa.table(
            {
                "file": list(listing),
                "bytes": pa.array([size for size, _ in listing.values()], pa.int64()),
                "mtime_ns": pa.array([mtime for _, mtime in listing.values()], pa.int64()),
            }
        ),
        "chunks": pa.table(
            {
                "chunk_key": [key for key, members in chunks.items() for _ in members],
                "subscription_id": [member for members in chunks.values() for member in members],
            },
            schema=pa.schema([("chunk_key", pa.string()), ("subscription_id", pa.string())]),
        ),
        "survey": survey.to_arrow(),
    }


# What the build state's tables hold, for their DuckDB comments (the warehouse documents every
# table; these are mdecost's own records, not views to query).
STATE_COMMENTS: Final = {
    "context": (
        "mdecost's record (incremental builds): what this warehouse's figures depend on besides "
        "the lake, and the estate's facts it was judged by.",
        {
            "context": "Digest of the settings, the effective price book and mdecost's code.",
            "code": "Digest of mdecost's code alone (a survey of cost files is kept while it "
            "holds).",
            "window_start": "Start of the power history built.",
            "window_end": "End of the power history built (the latest evidence).",
            "latest_snapshot_date": "Day of the latest inventory snapshot.",
            "billed_through": "The estate's last day with a Defender charge.",
        },
    ),
    "inputs": (
        "mdecost's record (incremental builds): every lake partition file this warehouse was "
        "built from.",
        {
            "file": "Partition file, relative to the lake.",
            "bytes": "Its size.",
            "mtime_ns": "Its modification time (ns since the epoch): a rewrite changes it.",
        },
    ),
    "chunks": (
        "mdecost's record (incremental builds): the chunks of subscriptions the views were "
        "built in.",
        {
            "chunk_key": "The chunk (its first subscription; empty: rows of no subscription).",
            "subscription_id": "A subscription of the chunk.",
        },
    ),
    "survey": (
        "mdecost's record (incremental builds): what each cost partition file delivers "
        "(transforms.sources.survey), so the next build reads only the files that changed.",
        {
            "file": "Partition file, relative to the lake.",
            "owner": "Subscription (or scope) the rows are charged to.",
            "month": "Month of the charges (YYYY-MM).",
            "cost_source": "query or export.",
            "cost_type": "ActualCost, AmortizedCost or FocusCost.",
            "billing_currency": "Currency of the rows.",
            "defender": "Billed Defender for Servers rows.",
            "ingested_at": "Newest ingested_at of the rows.",
            "rows": "How many rows.",
            "implausible": "How many rows hold an amount that is no amount.",
            "content": "Fingerprint of the rows' values but ingested_at (their hashes added): "
            "the same when the file was collected again with the same rows.",
        },
    ),
}
# The chunks' resume states (`transforms.resume.ResumeState`), kept per chunk like the parts.
RESUME_COMMENTS: Final = {
    "resume_points": (
        "mdecost's record (incremental builds): where each machine's power timeline resumes in "
        "its chunk's next build, and what stands for its evidence before (transforms.resume).",
        {
            "cut": "The first instant of the month of the build's present: no power event "
            "before it is read again.",
            "resume_at": "The machine's last piece of evidence before the cut (or before an "
            "operation still running at it); null: rebuilt from its first.",
            "chunk_key": "The chunk.",
        },
    ),
    "resume_carried": (
        "mdecost's record (incremental builds): the Activity Log events before the cut of the "
        "operations from each machine's resume point on, read again by the next build.",
        {"chunk_key": "The chunk."},
    ),
    "resume_bounds": (
        "mdecost's record (incremental builds): each machine id's first and last Activity Log "
        "event before the cut (transforms.machines.EVENT_BOUNDS).",
        {"chunk_key": "The chunk."},
    ),
}
PART_COMMENT: Final = (
    "mdecost's record (incremental builds): each chunk's part of the estate-wide views "
    "(transforms.marts.EstateParts.{part}), so a copied chunk still adds its part."
)
PART_COLUMN_COMMENT: Final = "As the chunk handed it to the estate step; chunk_key: the chunk."


# The datasets a chunk's machines and power intervals are built from.
TIMELINE_DATASETS: Final = frozenset({"inventory", "power_events"})
# When a change's month is not known (a partition without a month), or reaches the whole
# history: the chunk is recomputed whole.
WHOLE_HISTORY: Final = date.min


def _changed_month(
    lake: Lake,
    relative: str,
    earliest_pricings: date | None,
    previous_pricings: str | None,
) -> date:
    """The first month a change of the partition `relative` reaches; for a pricings snapshot,
    `earliest_pricings` is its subscription's earliest snapshot day (old or new files) and
    `previous_pricings` the snapshot before it."""
    path = Path(relative)
    month = partition_value(path, "month")
    if month is not None:
        return date.fromisoformat(f"{month}-01")
    day = partition_value(path, "snapshot_date")
    if day is None:
        return WHOLE_HISTORY
    snapshot = date.fromisoformat(day)
    if _dataset_of(relative) == "pricings":
        if earliest_pricings is None or snapshot <= earliest_pricings:
            return WHOLE_HISTORY  # the earliest snapshot stands for the days before it
        if previous_pricings is None or not _same_pricings(lake, previous_pricings, relative):
            return month_start(snapshot - PRICINGS_REACH)
    return month_start(snapshot)


def _dataset_of(relative: str) -> str:
    return Path(relative).parts[1]  # raw/<dataset>/...


def _subscription_of(relative: str) -> str | None:
    subscription = partition_value(Path(relative), "subscription_id")
    return subscription.lower() if subscription else None


# A pricings row's columns that differ between two snapshots of unchanged settings.
_PRICINGS_MOMENT: Final = ("snapshot_at", "ingested_at", "free_trial_remaining")


def _same_pricings(lake: Lake, earlier: str, later: str) -> bool:
    """True when the pricings snapshot `later` says what `earlier` said (a trial's remaining
    time counted to the same end): it then changes only the days from its own on, like any
    snapshot."""

    def settings(relative_path: str) -> pl.DataFrame:
        store = lake if isinstance(lake, ObjectStoreLake) else None
        where = lake.root if isinstance(lake, ObjectStoreLake) else lake
        return (
            scan_files("pricings", [where / relative_path], store=store)
            .with_columns(
                trial_ends_at=pl.when(pl.col("free_trial_remaining") > timedelta(0)).then(
                    pl.col("snapshot_at") + pl.col("free_trial_remaining")
                )
            )
            .drop(_PRICINGS_MOMENT)
            .collect()
        )

    first, second = settings(earlier), settings(later)
    return first.sort(first.columns, nulls_last=True).equals(
        second.sort(second.columns, nulls_last=True)
    )


def collected_again_alike(previous: Published, survey: pl.DataFrame, listing: Listing) -> set[str]:
    """The cost files rewritten since the published build with the same rows but for when they
    were collected (`ingested_at`; the survey's `content` compares them): a restatement window
    collected again that restated nothing, as most nights' is. Their change reaches no month,
    though their `costs` rows are still replaced (`changed_cost_files`: the collection time).
    `survey`: this build's, `file` lake-relative (`flows.build.relative_survey`)."""
    rewritten = [
        path
        for path, stat in listing.items()
        if _dataset_of(path) == "costs" and previous.files.get(path, stat) != stat
    ]
    compared = [column for column in survey.columns if column != "ingested_at"]

    def delivered(frame: pl.DataFrame, path: str) -> pl.DataFrame:
        rows = frame.filter(pl.col("file") == path).select(compared)
        return rows.sort(compared, nulls_last=True)

    return {
        path
        for path in rewritten
        if delivered(previous.survey, path).equals(delivered(survey, path))
    }


def changed_months(
    lake: Lake,
    previous: Published,
    listing: Listing,
    alike: AbstractSet[str] = frozenset(),
    datasets: AbstractSet[str] | None = None,
) -> dict[str | None, date]:
    """The first month the changed lake files of each subscription reach (key None: files of
    no subscription, which every chunk reads), worked out once for the whole lake; the files
    `alike` (`collected_again_alike`) reach none; with `datasets`, the files of those only."""
    snapshots: dict[str | None, list[tuple[str, str]]] = {}  # pricings: (day, file), old and new
    for path in set(previous.files) | set(listing):
        day = partition_value(Path(path), "snapshot_date")
        if _dataset_of(path) == "pricings" and day is not None:
            snapshots.setdefault(_subscription_of(path), []).append((day, path))
    reached: dict[str | None, date] = {}
    for path in set(previous.files) | set(listing):
        if previous.files.get(path) == listing.get(path) or path in alike:
            continue
        if datasets is not None and _dataset_of(path) not in datasets:
            continue
        subscription = _subscription_of(path)
        days = sorted(snapshots.get(subscription, []))
        day = partition_value(Path(path), "snapshot_date")
        earlier = [
            other for other_day, other in days if day and other_day < day and other in listing
        ]
        month = _changed_month(
            lake,
            path,
            date.fromisoformat(days[0][0]) if days else None,
            earlier[-1] if earlier else None,
        )
        reached[subscription] = min(reached.get(subscription, month), month)
    return reached


def changed_cost_files(previous: Published, listing: Listing) -> set[str]:
    """The cost partition files whose rows in the warehouse's `costs` are replaced: those added,
    rewritten or removed since the published build. Which of a file's rows count depends on the
    other sources' files too (`transforms.sources`), but a change of that changes the overlaps
    `build_info` states, which are part of the context: the build is then a full one."""
    return {
        path
        for path in set(previous.files) | set(listing)
        if _dataset_of(path) == "costs" and previous.files.get(path) != listing.get(path)
    }


def facts_month(old: Facts, new: Facts) -> date | None:
    """The first month a move of the estate's facts reaches; None: they did not move."""
    months = []
    for before, after in (
        (old.window_end, new.window_end),
        (old.latest_snapshot_date, new.latest_snapshot_date),
    ):
        if before != after:
            months.append(month_start(min(before, after)) if before and after else WHOLE_HISTORY)
    if old.billed_through != new.billed_through:
        # The days judged by the estate's cut-off are those up to it: a move changes the days
        # after the earlier one.
        months.append(
            month_start(min(old.billed_through, new.billed_through) + timedelta(days=1))
            if old.billed_through and new.billed_through
            else WHOLE_HISTORY
        )
    return min(months, default=None)


def first_changed_month(
    changed: Mapping[str | None, date], subscriptions: tuple[str, ...], facts: date | None
) -> date | None:
    """The first month a change of the lake's files of `subscriptions` (or of files of no
    subscription, read by every chunk: `changed_months`) or of the estate's facts
    (`facts_month`) can reach, before the timelines are compared; None: nothing the chunk is
    built from changed."""
    months = [changed[key] for key in (*subscriptions, None) if key in changed]
    return min([*months, *([facts] if facts else [])], default=None)


def normalised_part(frame: pl.DataFrame) -> pl.DataFrame:
    """A part read back from DuckDB in the polars types it was written in (DuckDB names UTC
    `Etc/UTC`)."""
    return frame.with_columns(
        pl.col(name).dt.convert_time_zone("UTC")
        for name, dtype in frame.schema.items()
        if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None
    )
