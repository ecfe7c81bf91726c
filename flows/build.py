"""`build`: the lake -> the DuckDB warehouse, as a Prefect flow.

Under the build lock: price the estate (the effective price book), judge what the whole lake
says (`EstateFacts`), cut the lake into chunks of whole subscriptions, and for each chunk compute
its rows of every view (pure transforms, `transforms.marts`) and append them to a new warehouse
beside the published one; then the estate-wide rows, and the swap. Memory holds one chunk at a
time, so it follows `[warehouse] chunk_megabytes`, not the estate's size. With `[warehouse]
executor = "dask"` the chunks are computed in parallel on a Dask cluster (`flows.cluster`) by
the same function, and this process appends their parts in the same order.

The warehouse records what it was built from (`build_info`): the lake's fingerprint, so a
scheduled report rebuilds only when the lake changed, and the settings the numbers depend on,
so the report's methodology states the ones actually used. It also keeps the build's own record
(`flows.incremental`), so the next build recomputes only the (chunk, month) units the lake's
changes can reach and copies the others from the published warehouse.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path, PurePath
from typing import Final

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from azure.core.exceptions import AzureError
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError

from flows import cluster, warehouse
from flows.config import Settings, load_settings
from flows.incremental import (
    PART_COLUMN_COMMENT,
    PART_COMMENT,
    PART_NAMES,
    RESUME_COMMENTS,
    STATE_COMMENTS,
    STATE_SCHEMA,
    STATE_TABLES,
    TIMELINE_DATASETS,
    WHOLE_HISTORY,
    Facts,
    Listing,
    Published,
    changed_cost_files,
    changed_months,
    chunk_key,
    code_digest,
    collected_again_alike,
    context_digest,
    facts_month,
    first_changed_month,
    lake_listing,
    listing_digest,
    normalised_part,
    published_build,
    state_tables,
)
from flows.lake import (
    Lake,
    ObjectStoreCredentialError,
    ObjectStoreLake,
    dataset_files,
    partition_value,
    scan_dataset,
    scan_files,
)
from pricing.book import load_price_book, pricing_choices
from transforms.anomalies import AnomalyRule
from transforms.charges import charge_subscription
from transforms.contract import UTC_TIMESTAMP
from transforms.dictionary import column_comments, table_comments, tenant_tables
from transforms.incremental import (
    first_difference_sql,
    lookback_start,
    machines_differ,
    month_start,
    recompute_start,
    reusable_plan,
)
from transforms.machines import EVENT_BOUNDS
from transforms.marts import (
    CHUNKED_VIEWS,
    ESTATE_FINDINGS,
    ESTATE_VIEWS,
    VIEW_MONTH_COLUMNS,
    ChunkViews,
    EstateFacts,
    EstateParts,
    MartOptions,
    RawLake,
    Timelines,
    chunk_timelines,
    chunk_views,
    estate_facts,
    estate_views,
    linked_subscriptions,
    plan_chunks,
    resumed_timelines,
)
from transforms.options import LicensingTerms
from transforms.resume import RESUME_POINTS, ResumeState, spliced_intervals
from transforms.schemas import DATASETS, WAREHOUSE_COSTS
from transforms.sources import (
    PRECEDENCE,
    CostOverlapError,
    billed_currencies,
    deliveries,
    resolve,
    survey,
    without,
)
from transforms.tags import TAG_DTYPE


class BuildRefusedError(RuntimeError):
    """The lake or the configuration cannot make a warehouse that tells the truth; the message
    is one line naming what is wrong and what to do. The published warehouse is untouched."""


@dataclass(frozen=True)
class BuildSummary:
    warehouse: Path
    rows: dict[str, int]
    window_start: datetime | None
    window_end: datetime | None
    lake_fingerprint: str
    cost_overlaps: tuple[str, ...] = ()
    made: str = ""

    def lines(self) -> list[str]:
        window = (
            f"{self.window_start:%Y-%m-%d %H:%M} .. {self.window_end:%Y-%m-%d %H:%M} UTC"
            if self.window_start and self.window_end
            else "no power history in the lake"
        )
        rows = ", ".join(f"{name} {count:,}" for name, count in self.rows.items())
        lines = [f"warehouse {self.warehouse} (history {window})", f"rows: {rows}"]
        if self.made:
            lines.append(self.made)
        if self.cost_overlaps:
            lines.append(f"overlapping cost sources, resolved by precedence ({PRECEDENCE}):")
            lines.extend(f"  {note}" for note in self.cost_overlaps)
        return lines


def _logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("mdecost.build")


def lake_fingerprint(lake: Lake) -> str:
    """A digest of every committed partition's path, size and modification time (in object
    storage: its ETag), of every dataset (refreshed retail prices change the price book, hence
    the warehouse).

    Partitions are replaced by rename (in object storage: uploaded whole, a new ETag), so any
    rewrite changes the fingerprint; reading the files' contents is not needed.
    """
    return listing_digest(lake_listing(lake))


# The lake datasets the views are built from (the others, such as retail prices, feed the
# price book).
BUILT_FROM: Final = tuple(field.name for field in fields(RawLake))


@dataclass(frozen=True)
class LakeChunk:
    """The part of the lake one build step reads.

    Files partitioned by subscription belong to the chunk of their subscription. Files that are
    not (cost exports, partitioned by billing scope) are read by every chunk, each taking the rows
    of its own subscriptions; the `unknown` chunk takes their rows of no known subscription.
    """

    subscriptions: tuple[str, ...]
    raw_bytes: int
    unknown: bool = False

    @property
    def key(self) -> str:
        """The chunk's name in the build state (`flows.incremental.chunk_key`; "" for the rows
        of no collected subscription)."""
        return "" if self.unknown else chunk_key(self.subscriptions)

    def describe(self) -> str:
        if self.unknown:
            return "rows of no collected subscription"
        return f"{len(self.subscriptions)} subscription(s), {self.raw_bytes / 1e6:,.1f} MB raw"


def _subscription_of_file(path: PurePath) -> str | None:
    value = partition_value(path, "subscription_id")
    return value.lower() if value else None


@dataclass(frozen=True)
class LakeFiles:
    """The partition files the views are built from, listed once per build (listing the 10,400
    files of the 100k benchmark lake for each of its chunks took 0.4 s a chunk)."""

    by_subscription: dict[str, dict[str, list[PurePath]]]  # dataset -> subscription -> files
    shared: dict[str, list[PurePath]]  # dataset -> files with no subscription partition key
    root: PurePath  # the lake the paths are in
    # Cost partition file -> the (owner, month) pairs of it not counted (`transforms.sources`).
    left_out: dict[str, frozenset[tuple[str, str]]] = field(default_factory=dict)
    # An object-storage lake: where its files are read from, and their sizes from its listing.
    store: ObjectStoreLake | None = None
    sizes: dict[PurePath, int] = field(default_factory=dict)

    @classmethod
    def of(cls, lake: Lake) -> LakeFiles:
        by_subscription: dict[str, dict[str, list[PurePath]]] = {name: {} for name in BUILT_FROM}
        shared: dict[str, list[PurePath]] = {name: [] for name in BUILT_FROM}
        sizes: dict[PurePath, int] = {}
        for dataset in BUILT_FROM:
            listed: list[PurePath]
            if isinstance(lake, ObjectStoreLake):
                listing = lake.listing(dataset)
                sizes.update({blob: size for blob, (size, _) in listing.items()})
                listed = list(listing)
            else:
                listed = list(dataset_files(lake, dataset))
            for path in listed:
                subscription = _subscription_of_file(path)
                if subscription is None:
                    shared[dataset].append(path)
                else:
                    by_subscription[dataset].setdefault(subscription, []).append(path)
        store = lake if isinstance(lake, ObjectStoreLake) else None
        root = lake.root if isinstance(lake, ObjectStoreLake) else lake
        return cls(by_subscription, shared, root, store=store, sizes=sizes)

    def relative(self, path: PurePath) -> str:
        """`path` relative to the lake, as the build state's listing names it."""
        return str(path.relative_to(self.root))

    def whole(self) -> RawLake:
        """Lazy scans of the whole lake."""
        return RawLake(**{name: self.scan(name, self.every(name)) for name in BUILT_FROM})

    def scan(self, dataset: str, paths: list[PurePath]) -> pl.LazyFrame:
        """A lazy scan of `paths` of `dataset`, cost rows that are not counted left out."""
        partial = [path for path in paths if str(path) in self.left_out]
        if dataset != "costs" or not partial:
            return self.scan_all(dataset, paths)
        whole = [path for path in paths if str(path) not in self.left_out]
        counted = without(self.scan_all(dataset, partial, with_file="file"), self.left_out)
        return pl.concat([self.scan_all(dataset, whole), counted]) if whole else counted

    def scan_all(
        self, dataset: str, paths: list[PurePath], with_file: str | None = None
    ) -> pl.LazyFrame:
        """A lazy scan of every row of `paths` (`flows.lake.scan_files`), wherever the lake is."""
        return scan_files(dataset, paths, with_file=with_file, store=self.store)

    def size(self, path: PurePath) -> int:
        return self.sizes[path] if self.store is not None else Path(path).stat().st_size

    def every(self, dataset: str) -> list[PurePath]:
        """Every file of `dataset`, in the lake's order."""
        owned = [path for paths in self.by_subscription[dataset].values() for path in paths]
        return sorted(owned + self.shared[dataset])

    def subscription_bytes(self) -> dict[str, int]:
        weights: dict[str, int] = {}
        for files in self.by_subscription.values():
            for subscription, paths in files.items():
                size = sum(self.size(path) for path in paths)
                weights[subscription] = weights.get(subscription, 0) + size
        return weights


def plan_lake_chunks(
    files: LakeFiles,
    chunk_megabytes: float,
    previous: Mapping[str, tuple[str, ...]] | None = None,
) -> list[LakeChunk]:
    """The lake cut into chunks of whole subscriptions, about `chunk_megabytes` of Parquet each,
    the subscriptions of a moved machine together (`transforms.marts.plan_chunks`); or the
    `previous` build's chunks, where they still fit (`transforms.incremental.reusable_plan`)."""
    weights = files.subscription_bytes()
    owned_costs = [path for paths in files.by_subscription["costs"].values() for path in paths]
    links = linked_subscriptions(
        files.scan_all("inventory", files.every("inventory")), files.scan_all("costs", owned_costs)
    )
    kept = reusable_plan(previous, set(weights), links) if previous is not None else None
    planned = (
        kept
        if kept is not None
        else plan_chunks(weights, links, max_weight=int(chunk_megabytes * 1e6))
    )
    chunks = [LakeChunk(group, sum(weights[member] for member in group)) for group in planned]
    if any(files.shared.values()) or not chunks:
        chunks.append(LakeChunk((), 0, unknown=True))
    return chunks


def chunk_lake(
    files: LakeFiles, chunk: LakeChunk, known: frozenset[str], events_from: datetime | None = None
) -> RawLake:
    """The lazy scans of `chunk`'s part of the lake (see `LakeChunk`); `known` is every
    subscription some file is partitioned by. `events_from` (the first instant of a month):
    the power events from then on only, read from the partitions of their months."""

    def scan(dataset: str) -> pl.LazyFrame:
        own = [
            path
            for subscription in chunk.subscriptions
            for path in files.by_subscription[dataset].get(subscription, [])
        ]
        if dataset == "power_events" and events_from is not None:
            first_month = f"{events_from:%Y-%m}"
            own = [path for path in own if (partition_value(path, "month") or "") >= first_month]
        shared = files.shared[dataset]
        row_subscription = (
            charge_subscription()
            if dataset == "costs"
            else pl.col("subscription_id").str.strip_chars().str.to_lowercase()
        )
        if chunk.unknown:
            of_chunk = row_subscription.is_null() | ~row_subscription.is_in(sorted(known))
        else:
            of_chunk = row_subscription.is_in(list(chunk.subscriptions))
        parts = [files.scan(dataset, own)] if own else []
        if shared:
            parts.append(files.scan(dataset, shared).filter(of_chunk))
        scanned = pl.concat(parts) if parts else files.scan_all(dataset, [])
        if dataset == "power_events" and events_from is not None:
            return scanned.filter(pl.col("event_at") >= events_from)
        return scanned

    return RawLake(**{dataset: scan(dataset) for dataset in BUILT_FROM})


def _options(settings: Settings, book: pa.Table) -> MartOptions:
    choices = pricing_choices(settings.pricing, book)
    pricing = settings.pricing
    return MartOptions(
        seat_option=choices.seat_option,
        currency=choices.currency,
        partial_hours=pricing.partial_hours,
        seats_owned=choices.seats_owned,
        terms=LicensingTerms(
            seat_term=pricing.seat_term,
            monthly_term_uplift_percent=pricing.monthly_term_uplift_percent,
            seat_reassignment_days=pricing.seat_reassignment_days,
            mde_component={plan: rate for plan, rate in pricing.mde_component.items()},
            seat_eligibility=dict(pricing.seat_eligibility),
            mde_benefit_from=pricing.mde_benefit_from,
        ),
        group_by=tuple(settings.report.group_by),
        anomaly=AnomalyRule(
            threshold_percent=settings.report.anomaly_threshold_percent,
            min_amount=settings.report.anomaly_min_amount,
        ),
    )


def _book(book: pa.Table) -> pl.LazyFrame:
    return pl.from_arrow(book).lazy()  # type: ignore[union-attr]


def _arrow(frame: pl.DataFrame) -> pa.Table:
    # Arrow string views: polars hands its buffers over as they are (the default converts every
    # string column to large_string, a full copy of the view in memory); DuckDB reads both.
    table = frame.to_arrow(compat_level=pl.CompatLevel.newest())
    for index, name in enumerate(table.column_names):
        if frame.schema[name] == TAG_DTYPE:
            table = table.set_column(index, name, _as_map(table.column(index)))
    return table


_TAG_ENTRIES: Final = pa.list_(pa.struct([("key", pa.string()), ("value", pa.string())]))


def _as_map(entries: pa.ChunkedArray) -> pa.ChunkedArray:
    """Key/value lists (polars' and Arrow's way of carrying a map) as an Arrow map, which
    DuckDB stores as MAP(VARCHAR, VARCHAR): `tags['CostCenter']` in SQL."""
    chunks = [
        pa.MapArray.from_arrays(
            chunk.offsets, chunk.values.field("key"), chunk.values.field("value")
        )
        for chunk in entries.cast(_TAG_ENTRIES).chunks
    ]
    return pa.chunked_array(chunks, pa.map_(pa.string(), pa.string()))


@task(cache_policy=NO_CACHE)
def price_book(settings: Settings) -> pa.Table:
    """The effective price book: shipped list prices, refreshed prices, the user's overrides."""
    return load_price_book(settings)


@task(cache_policy=NO_CACHE)
def judge_estate(files: LakeFiles) -> EstateFacts:
    """What every chunk is judged by, from the whole lake (`transforms.marts.EstateFacts`).

    Cost partitions hold one month of `charge_period_start` each (the collectors and the export
    importer both partition so), so they are handed over month by month, newest first.
    """
    whole = files.whole()
    by_month: dict[str | None, list[PurePath]] = {}
    for path in files.every("costs"):
        by_month.setdefault(partition_value(path, "month"), []).append(path)
    if None in by_month:  # not partitioned by month: no order to rely on, read them all
        return estate_facts(whole)
    months = sorted((month for month in by_month if month is not None), reverse=True)
    return estate_facts(whole, [files.scan("costs", by_month[month]) for month in months])


@task(cache_policy=NO_CACHE)
def plan_build(
    settings: Settings, files: LakeFiles, previous: Published | None = None
) -> list[LakeChunk]:
    """The chunks the lake is built in (`plan_lake_chunks`)."""
    return plan_lake_chunks(
        files, settings.warehouse.chunk_megabytes, previous.chunks if previous else None
    )


# How a chunk none of whose inputs changed was made: its rows and parts are the published ones.
COPIED: Final = "copied"


@dataclass(frozen=True)
class StagedChunk:
    """What a chunk leaves for the estate step: its estate parts, and how it was made
    (`computed`, `copied`, or `from YYYY-MM`: recomputed from that month). `recorded_before`:
    the month before which its parts are the published build's, which the copied build state
    holds already (None: none of them; a copied chunk's are all there). `resume`: what its
    next build resumes its timelines from (None: a copied chunk's, in the copied state)."""

    parts: EstateParts
    made: str = "computed"
    recorded_before: date | None = None
    resume: ResumeState | None = None


# The published warehouse, attached to the staged one while an incremental build reads it.
PUBLISHED: Final = "mdecost_published"
# A recomputed chunk's power intervals, as the staged warehouse's queries read them.
CHUNK_INTERVALS: Final = "mdecost_chunk_intervals"


@dataclass(frozen=True)
class ChunkReuse:
    """What the published warehouse still holds of a chunk: `first_changed` is the first month
    a change of its lake files or of the estate's facts reaches
    (`flows.incremental.first_changed_month`; None: nothing changed, its rows are kept);
    `kept_before` the month before which its dated rows were kept when the build forgot the
    rest (`forget_changed_rows`; None: none were kept); `timelines_changed` the first month a
    change of its power events or inventory files reaches (None: none changed), which its
    timelines' resume needs to be no earlier than the cut it resumes from."""

    first_changed: date | None
    kept_before: date | None = None
    timelines_changed: date | None = None


def compute_chunk(
    settings: Settings,
    book: pa.Table,
    facts: EstateFacts,
    files: LakeFiles,
    chunk: LakeChunk,
    known: frozenset[str],
) -> ChunkViews:
    """One chunk's rows of every view and its estate parts (pure transforms), the same on
    either executor."""
    raw = chunk_lake(files, chunk, known)
    return chunk_views(raw, _book(book), _options(settings, book), facts)


@task(cache_policy=NO_CACHE)
def stage_chunk(
    settings: Settings,
    book: pa.Table,
    facts: EstateFacts,
    files: LakeFiles,
    chunk: LakeChunk,
    known: frozenset[str],
    new: warehouse.StagedWarehouse,
    reuse: ChunkReuse | None = None,
) -> StagedChunk:
    """Compute one chunk's rows of every view (pure transforms) and append them to the new
    warehouse, so memory holds one chunk's views at a time; with `reuse`, keep the published
    rows the chunk's changes did not reach (`flows.incremental`)."""
    if reuse is not None and reuse.first_changed is None:
        return _kept_chunk(new, chunk)
    if reuse is None:
        computed = compute_chunk(settings, book, facts, files, chunk, known)
        for name in CHUNKED_VIEWS:
            new.append(name, _arrow(computed.views[name]))
        return StagedChunk(computed.parts, resume=computed.resume)
    return _recomputed_chunk(settings, book, facts, files, chunk, known, new, reuse)


def record_parts(
    new: warehouse.StagedWarehouse, recorded: list[tuple[LakeChunk, StagedChunk]]
) -> None:
    """Keep the `recorded` chunks' estate parts and resume states in the build state, for a
    later build that keeps or resumes them: a chunk's parts from `recorded_before` on (all of
    them when None; its cut-offs always) replace the ones a copied state holds, the earlier
    ones are there already. One statement per table for all the chunks, not one per chunk."""
    if not recorded:
        return
    starts = pl.DataFrame(
        {
            "chunk_key": [chunk.key for chunk, _ in recorded],
            "first": [staged.recorded_before for _, staged in recorded],
        },
        schema={"chunk_key": pl.String(), "first": pl.Date()},
    )
    keys = {"keys": starts.get_column("chunk_key").to_list()}
    with new.registered(RECORDED_CHUNKS, _arrow(starts)):
        for name in PART_NAMES:
            dated = name != "cut_offs"
            parts = []
            for chunk, staged in recorded:
                part = getattr(staged.parts, name)
                if dated and staged.recorded_before is not None:
                    part = part.filter(pl.col("month") >= staged.recorded_before)
                parts.append(part.with_columns(chunk_key=pl.lit(chunk.key)))
            table = f'"part_{name}"'
            after_first = f" AND (r.first IS NULL OR {table}.month >= r.first)" if dated else ""
            new.delete(
                f"part_{name}",
                f"EXISTS (SELECT 1 FROM {RECORDED_CHUNKS} AS r "
                f"WHERE r.chunk_key = {table}.chunk_key{after_first})",
                schema=STATE_SCHEMA,
            )
            new.append_state(STATE_SCHEMA, f"part_{name}", _arrow(pl.concat(parts)))
    resumes = [(chunk, staged.resume) for chunk, staged in recorded if staged.resume is not None]
    frames: dict[str, list[pl.DataFrame]] = {name: [] for name in RESUME_COMMENTS}
    for chunk, resume in resumes:
        key = pl.lit(chunk.key)
        frames["resume_points"].append(
            resume.points.with_columns(cut=pl.lit(resume.cut).cast(UTC_TIMESTAMP), chunk_key=key)
        )
        frames["resume_carried"].append(resume.carried.with_columns(chunk_key=key))
        frames["resume_bounds"].append(resume.bounds.with_columns(chunk_key=key))
    for name, tables in frames.items():
        new.delete(name, "list_contains($keys, chunk_key)", keys, schema=STATE_SCHEMA)
        if tables:
            new.append_state(STATE_SCHEMA, name, _arrow(pl.concat(tables)))


# The chunks whose parts a build records, as the staged warehouse's queries read them.
RECORDED_CHUNKS: Final = "mdecost_recorded_chunks"


def _recomputed_chunk(
    settings: Settings,
    book: pa.Table,
    facts: EstateFacts,
    files: LakeFiles,
    chunk: LakeChunk,
    known: frozenset[str],
    new: warehouse.StagedWarehouse,
    reuse: ChunkReuse,
) -> StagedChunk:
    """`chunk` recomputed from the first month its changes reach, its earlier rows kept; in
    full when they reach its whole history. Rows the changes reach further back than
    `forget_changed_rows` foresaw are deleted here. Its timelines are resumed from the last
    build's resume points when they may be (`transforms.resume`), else rebuilt whole."""
    raw = chunk_lake(files, chunk, known)
    options = _options(settings, book)
    of_chunk, members = _of_chunks([chunk])
    resumed = _resumed_timelines(new, files, chunk, known, facts, reuse)
    timelines = resumed.timelines if resumed else chunk_timelines(raw, facts)
    starts = resumed.starts if resumed else pl.DataFrame(schema=RESUME_STARTS_SCHEMA)
    with new.registered(RESUME_STARTS, _arrow(starts)):
        # The intervals from each resumed machine's resume point (every interval of the
        # others), against the published ones from there: those before it are the same.
        tail = _spliced_tail(new, resumed) if resumed else timelines.power_intervals
        with new.registered(CHUNK_INTERVALS, _arrow(tail)):
            published_tail = (
                f"SELECT p.* FROM {PUBLISHED}.power_intervals AS p "
                f"LEFT JOIN {RESUME_STARTS} AS r USING (resource_id) "
                f"WHERE {_published_machines(of_chunk)} "
                "AND (r.resume_at IS NULL OR p.end_at >= r.resume_at OR p.end_at IS NULL)"
            )
            found: datetime | None = new.rows(
                first_difference_sql(published_tail, f"SELECT * FROM {CHUNK_INTERVALS}"),
                members,
            )[0][0]
        differs = found.astimezone(UTC) if found is not None else None
        start = _recompute_start(new, chunk, timelines, reuse, facts, differs)
        if resumed and start is not None:
            read_from = lookback_start(start)
            timelines = replace(timelines, power_intervals=_intervals_from(new, tail, read_from))
        elif resumed:
            # Every month is recomputed: the views read the whole history's intervals.
            timelines = chunk_timelines(raw, facts)
        computed = chunk_views(
            raw,
            _book(book),
            options,
            facts,
            timelines,
            recompute_from=start,
            earlier_cut_offs=_earlier_cut_offs(new, chunk, start) if start else None,
        )
        if start is not None and _cut_off_moved_before(new, chunk, computed.parts.cut_offs, start):
            start = None
            if resumed:
                timelines = chunk_timelines(raw, facts)
            computed = chunk_views(raw, _book(book), options, facts, timelines)
        if reuse.kept_before is not None and (start is None or start < reuse.kept_before):
            forget_dated_rows(new, [(chunk, start, reuse.kept_before)], known)
        if differs is not None:
            # Before the first difference (and a resumed machine's resume point), the two
            # timelines hold the same intervals (each one ending before it is in both,
            # `first_difference_sql`): only the rest is replaced.
            new.delete(
                "power_intervals",
                f"(end_at >= $differs OR end_at IS NULL) AND {_published_machines(of_chunk)} "
                f"AND NOT EXISTS (SELECT 1 FROM {RESUME_STARTS} AS r "
                "WHERE r.resource_id = power_intervals.resource_id "
                "AND power_intervals.end_at < r.resume_at)",
                {**members, "differs": differs},
            )
            changed = (
                tail.join(starts, on="resource_id", how="left")
                .filter(
                    (pl.col("end_at") >= differs) | pl.col("end_at").is_null(),
                    pl.col("resume_at").is_null() | (pl.col("end_at") >= pl.col("resume_at")),
                )
                .drop("resume_at")
            )
            new.append("power_intervals", _arrow(changed))
    for name in CHUNKED_VIEWS:
        if name != "power_intervals":
            new.append(name, _arrow(computed.views[name]))
    if start is None:
        return StagedChunk(computed.parts, resume=computed.resume)

    def with_published(name: str) -> pl.DataFrame:
        computed_part: pl.DataFrame = getattr(computed.parts, name)
        published = _published_part(new, name, chunk, before=start)
        return pl.concat([published.cast(computed_part.schema), computed_part])

    # The cut-offs are the chunk's own: `chunk_views` had the earlier ones.
    parts = replace(
        computed.parts, **{name: with_published(name) for name in PART_NAMES if name != "cut_offs"}
    )
    made = f"from {start:%Y-%m}" + (" (timelines resumed)" if resumed else "")
    return StagedChunk(parts, made, recorded_before=start, resume=computed.resume)


# Each resumed machine's resume point, as the staged warehouse's queries read them.
RESUME_STARTS: Final = "mdecost_resume_starts"
RESUME_STARTS_SCHEMA: Final = pl.Schema({"resource_id": pl.String(), "resume_at": UTC_TIMESTAMP})
_INTERVAL_COLUMNS: Final = "resource_id, state, start_at, end_at, billable"


@dataclass(frozen=True)
class ResumedTimelines:
    """A chunk's timelines resumed from the last build's resume points (`transforms.resume`):
    its resumed machines' intervals from their resume points (`starts`) on."""

    timelines: Timelines
    starts: pl.DataFrame


def _resumed_timelines(
    new: warehouse.StagedWarehouse,
    files: LakeFiles,
    chunk: LakeChunk,
    known: frozenset[str],
    facts: EstateFacts,
    reuse: ChunkReuse,
) -> ResumedTimelines | None:
    """`chunk`'s timelines resumed from the published build's resume state, reading the power
    events from its cut on; None when they may not be: a change reaches before the cut, or
    `transforms.resume.resume_refused` (then logged)."""
    if reuse.first_changed is None or reuse.first_changed == WHOLE_HISTORY:
        return None
    previous = _published_resume(new, chunk)
    changed = reuse.timelines_changed
    if previous is None or (changed is not None and changed < previous.cut.date()):
        return None
    raw = chunk_lake(files, chunk, known, events_from=previous.cut)
    timelines = resumed_timelines(raw, facts, previous)
    if isinstance(timelines, str):
        _logger().info(f"chunk {chunk.describe()}: timelines rebuilt whole, {timelines}")
        return None
    return ResumedTimelines(timelines, previous.points.select(RESUME_STARTS_SCHEMA.names()))


def _published_resume(new: warehouse.StagedWarehouse, chunk: LakeChunk) -> ResumeState | None:
    """The resume state the published build recorded for `chunk` (None: none)."""

    def frame(table: str, schema: pa.Schema | None = None) -> pl.DataFrame:
        read = _published_state(new, table, chunk)
        return pl.from_arrow(read.cast(schema) if schema else read)  # type: ignore[return-value]

    points = frame("resume_points")
    if points.is_empty():
        return None
    (cut,) = points.get_column("cut").unique().to_list()
    return ResumeState(
        cut.astimezone(UTC),
        points.drop("cut").cast(dict(RESUME_POINTS)),  # type: ignore[arg-type]
        frame("resume_carried", DATASETS["power_events"]),
        frame("resume_bounds").cast(dict(EVENT_BOUNDS)),  # type: ignore[arg-type]
    )


def _spliced_tail(new: warehouse.StagedWarehouse, resumed: ResumedTimelines) -> pl.DataFrame:
    """The chunk's intervals from each resumed machine's resume point (an interval across it
    merged with its published part before it), every interval of the other machines."""
    published = new.read(
        f"SELECT {_INTERVAL_COLUMNS} FROM {PUBLISHED}.power_intervals AS p "
        f"JOIN {RESUME_STARTS} AS r USING (resource_id) "
        "WHERE r.resume_at IS NOT NULL AND (p.end_at >= r.resume_at OR p.end_at IS NULL)"
    )
    suffix = resumed.timelines.power_intervals
    prefix: pl.DataFrame = pl.from_arrow(published)  # type: ignore[assignment]
    return spliced_intervals(
        prefix.cast(suffix.schema).lazy(), suffix.lazy(), resumed.starts.lazy()
    ).collect()


def _intervals_from(
    new: warehouse.StagedWarehouse, tail: pl.DataFrame, read_from: date
) -> pl.DataFrame:
    """The chunk's intervals ending after `read_from`: the published ones of resumed machines
    ending before their resume points, and `tail`."""
    published = new.read(
        f"SELECT {_INTERVAL_COLUMNS} FROM {PUBLISHED}.power_intervals AS p "
        f"JOIN {RESUME_STARTS} AS r USING (resource_id) "
        "WHERE p.end_at > $read_from AND p.end_at < r.resume_at",
        {"read_from": datetime(read_from.year, read_from.month, read_from.day, tzinfo=UTC)},
    )
    middle: pl.DataFrame = pl.from_arrow(published)  # type: ignore[assignment]
    return pl.concat([middle.cast(tail.schema), tail])


def _recompute_start(
    new: warehouse.StagedWarehouse,
    chunk: LakeChunk,
    timelines: Timelines,
    reuse: ChunkReuse,
    facts: EstateFacts,
    differs: datetime | None,
) -> date | None:
    """The first month of `chunk` to recompute (`transforms.incremental`); None: all of it.
    `differs` is the first instant its new power intervals differ from the published ones."""
    if reuse.first_changed is None or reuse.first_changed == WHOLE_HISTORY:
        return None
    members = {"subscriptions": list(chunk.subscriptions)}
    published_machines = normalised_part(
        pl.from_arrow(  # type: ignore[arg-type]
            new.read(
                f"SELECT {_as_lists(new, 'machines')} FROM {PUBLISHED}.machines "
                "WHERE list_contains($subscriptions, subscription_id)",
                members,
            )
        )
    )
    if machines_differ(published_machines, timelines.machines):
        return None
    months = [reuse.first_changed]
    if differs is not None:
        months.append(month_start(differs))
    return recompute_start(min(months), facts.window_start)


def _cut_off_moved_before(
    new: warehouse.StagedWarehouse, chunk: LakeChunk, cut_offs: pl.DataFrame, start: date
) -> bool:
    """True when a subscription's last billed day moved so that days before `start` are judged
    otherwise (the days after the earlier of its two cut-offs: its charges restated away, or
    its first ever): `billable_not_billed` changed in months the build would copy, so the chunk
    is recomputed whole."""
    published = _published_part(new, "cut_offs", chunk).rename({"billed_through": "before"})
    paired = published.join(cut_offs, on="scope", how="full", coalesce=True)
    moved = paired.filter(
        pl.col("before").ne_missing(pl.col("billed_through"))
        & (
            pl.col("before").is_null()
            | pl.col("billed_through").is_null()
            | (pl.min_horizontal("before", "billed_through") + timedelta(days=1) < start)
        )
    )
    return moved.height > 0


def _as_lists(new: warehouse.StagedWarehouse, table: str) -> str:
    """The published `table`'s columns but `tenant_id` (added after the views), its MAPs as
    key/value lists: the views' own polars types."""
    return ", ".join(
        f'map_entries("{column}") AS "{column}"' if kind.startswith("MAP(") else f'"{column}"'
        for column, kind in new.rows(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = $db "
            "AND schema_name = 'main' AND table_name = $table AND column_name <> 'tenant_id' "
            "ORDER BY column_index",
            {"db": PUBLISHED, "table": table},
        )
    )


def _of_chunks(chunks: list[LakeChunk]) -> tuple[str, dict[str, object]]:
    """A SQL condition on a row's `subscription_id` that holds for the rows of `chunks`, and
    its parameters (the chunk of no subscription: rows of none, or of no chunk's)."""
    members = [member for chunk in chunks for member in chunk.subscriptions]
    condition = "list_contains($members, subscription_id)"
    if any(chunk.unknown for chunk in chunks):
        condition = (
            f"({condition} OR subscription_id IS NULL "
            "OR NOT list_contains($known, subscription_id))"
        )
    return condition, {"members": members}


def _published_machines(condition: str) -> str:
    """A SQL condition on a row's `resource_id`: a machine of the published warehouse whose row
    `condition` (`_of_chunks`) holds for."""
    return f"resource_id IN (SELECT resource_id FROM {PUBLISHED}.machines WHERE {condition})"


def _used(parameters: Mapping[str, object], sql: str) -> dict[str, object]:
    """The `parameters` that `sql` names ($name): DuckDB refuses any other."""
    named = set(re.findall(r"\$(\w+)", sql))
    return {key: value for key, value in parameters.items() if key in named}


def forget_changed_rows(
    new: warehouse.StagedWarehouse,
    plans: list[tuple[LakeChunk, ChunkReuse | None]],
    known: frozenset[str],
    window_start: datetime | None,
    computed_whole: bool,
) -> list[ChunkReuse | None]:
    """Delete from the new warehouse (a copy of the published one) the rows the changed chunks
    recompute: their machines, and their dated rows from the month their lake changes reach
    (`transforms.incremental.recompute_start`; all of them for the chunk of no subscription,
    computed whole); the power intervals of chunks computed whole (that one, or every changed
    chunk when `computed_whole`: on Dask), the others' being replaced where they changed
    (`_recomputed_chunk`). What the chunks keep is returned in their reuse (`kept_before`): a
    chunk whose timelines say a change reached further back deletes more. One pass per view."""
    changed = [
        (chunk, reuse) for chunk, reuse in plans if reuse is None or reuse.first_changed is not None
    ]
    kept: list[ChunkReuse | None] = []
    ranges: list[tuple[LakeChunk, date | None, date | None]] = []
    for chunk, reuse in plans:
        if reuse is None or reuse.first_changed is None:
            kept.append(reuse)
            continue
        keeps = (
            recompute_start(reuse.first_changed, window_start)
            if reuse.first_changed != WHOLE_HISTORY
            else None
        )
        kept.append(replace(reuse, kept_before=keeps))
        ranges.append((chunk, keeps, None))
    ranges.extend((chunk, None, None) for chunk, reuse in plans if reuse is None)
    if not changed:
        return kept
    condition, parameters = _of_chunks([chunk for chunk, _ in changed])
    parameters["known"] = sorted(known)
    new.delete("machines", condition, _used(parameters, condition))
    whole = [chunk for chunk, reuse in changed if reuse is None or computed_whole]
    if whole:
        condition, parameters = _of_chunks(whole)
        parameters["known"] = sorted(known)
        new.delete("power_intervals", _published_machines(condition), _used(parameters, condition))
    forget_dated_rows(new, ranges, known)
    return kept


def forget_dated_rows(
    new: warehouse.StagedWarehouse,
    ranges: list[tuple[LakeChunk, date | None, date | None]],
    known: frozenset[str],
) -> None:
    """Delete the dated rows (`VIEW_MONTH_COLUMNS`) of each (chunk, from, until) of `ranges`
    dated from `from` (None: from the first) until before `until` (None: to the last)."""
    for name, dated in VIEW_MONTH_COLUMNS.items():
        conditions: list[str] = []
        parameters: dict[str, object] = {"known": sorted(known)}
        for number, (chunk, first, until) in enumerate(ranges):
            of_chunk, members = _of_chunks([chunk])
            of_chunk = of_chunk.replace("$members", f"$members_{number}")
            parameters[f"members_{number}"] = members["members"]
            if first is not None:
                of_chunk += f" AND {dated} >= $from_{number}"
                parameters[f"from_{number}"] = first
            if until is not None:
                of_chunk += f" AND {dated} < $until_{number}"
                parameters[f"until_{number}"] = until
            conditions.append(f"({of_chunk})")
        if not conditions:
            return
        where = " OR ".join(conditions)
        used = _used(parameters, where)
        new.delete(name, where, used)


def _published_state(
    new: warehouse.StagedWarehouse, table: str, chunk: LakeChunk, before: date | None = None
) -> pa.Table:
    """`chunk`'s rows of the build-state table `table` as the published build recorded them
    (those of the months before `before`), without their `chunk_key`."""
    condition = "chunk_key = $key" + (" AND month < $before" if before is not None else "")
    parameters: dict[str, object] = {"key": chunk.key}
    if before is not None:
        parameters["before"] = before
    return new.read(
        f'SELECT * EXCLUDE (chunk_key) FROM {PUBLISHED}.{STATE_SCHEMA}."{table}" WHERE {condition}',
        parameters,
    )


def _published_part(
    new: warehouse.StagedWarehouse, name: str, chunk: LakeChunk, before: date | None = None
) -> pl.DataFrame:
    """`chunk`'s part `name` as the published build recorded it (the months before `before`)."""
    table = _published_state(new, f"part_{name}", chunk, before)
    return normalised_part(pl.from_arrow(table))  # type: ignore[arg-type]


def _earlier_cut_offs(
    new: warehouse.StagedWarehouse, chunk: LakeChunk, start: date
) -> pl.DataFrame:
    """The last billed day of each of `chunk`'s subscriptions before the day the recomputed
    views are read from (`transforms.incremental.lookback_start`)."""
    table = new.read(
        f"SELECT subscription_id AS scope, max(usage_date) AS billed_through "
        f"FROM {PUBLISHED}.defender_charges_daily WHERE subscription_id IS NOT NULL "
        "AND list_contains($subscriptions, subscription_id) AND usage_date < $before "
        "GROUP BY subscription_id",
        {"subscriptions": list(chunk.subscriptions), "before": lookback_start(start)},
    )
    return pl.from_arrow(table)  # type: ignore[return-value]


def _kept_chunk(new: warehouse.StagedWarehouse, chunk: LakeChunk) -> StagedChunk:
    """`chunk` as the published warehouse holds it: nothing it is built from changed, so its
    rows stay in the new warehouse (a copy of the published one); its parts are read here."""
    parts = EstateParts(**{name: _published_part(new, name, chunk) for name in PART_NAMES})
    return StagedChunk(parts, COPIED)


@dataclass(frozen=True)
class PartedChunk:
    """What a chunk computed on a Dask worker hands back: its Parquet part of each view (in
    `CHUNKED_VIEWS` order), what it leaves for the estate step, and the worker's seconds."""

    views: dict[str, Path]
    staged: StagedChunk
    seconds: float


@task(cache_policy=NO_CACHE)
def part_chunk(
    settings: Settings,
    book: pa.Table,
    facts: EstateFacts,
    files: LakeFiles,
    chunk: LakeChunk,
    known: frozenset[str],
    number: int,
    folder: Path,
) -> PartedChunk:
    """Compute one chunk's rows of every view on a Dask worker and write them as Parquet parts
    into `folder`, for the building process to append (`flows.cluster`)."""
    started = time.perf_counter()
    computed = compute_chunk(settings, book, facts, files, chunk, known)
    views = {
        name: cluster.write_part(folder, number, name, _arrow(computed.views[name]))
        for name in CHUNKED_VIEWS
    }
    seconds = time.perf_counter() - started
    return PartedChunk(views, StagedChunk(computed.parts, resume=computed.resume), seconds)


def _stage_on_dask(
    settings: Settings,
    book: pa.Table,
    facts: EstateFacts,
    files: LakeFiles,
    chunks: list[LakeChunk],
    reuses: list[ChunkReuse | None],
    known: frozenset[str],
    new: warehouse.StagedWarehouse,
) -> list[StagedChunk]:
    """The chunks nothing changed kept here, the others computed whole on the Dask cluster
    (reusing some of a chunk's months needs the published warehouse, which only the building
    process reads; `forget_changed_rows` was told so), in chunk order."""
    unchanged = [reuse is not None and reuse.first_changed is None for reuse in reuses]
    changed = [chunk for chunk, same in zip(chunks, unchanged, strict=True) if not same]
    computed = iter(
        stage_chunks_on_dask(settings, book, facts, files, changed, known, new) if changed else []
    )
    return [
        _kept_chunk(new, chunk) if same else next(computed)
        for chunk, same in zip(chunks, unchanged, strict=True)
    ]


def stage_chunks_on_dask(
    settings: Settings,
    book: pa.Table,
    facts: EstateFacts,
    files: LakeFiles,
    chunks: list[LakeChunk],
    known: frozenset[str],
    new: warehouse.StagedWarehouse,
) -> list[StagedChunk]:
    """Every chunk computed on the Dask cluster at once, its parts appended to the new
    warehouse in chunk order by this process alone (one writer), each as soon as it is done."""
    logger = _logger()
    staged: list[StagedChunk] = []
    started = time.perf_counter()

    def append(index: int, parted: PartedChunk) -> None:
        appending = time.perf_counter()
        for name, path in parted.views.items():
            new.append_part(name, path)
            path.unlink()
        staged.append(parted.staged)
        logger.info(
            f"chunk {index + 1}/{len(chunks)} ({chunks[index].describe()}) computed on a Dask "
            f"worker in {parted.seconds:.1f} s, appended in "
            f"{time.perf_counter() - appending:.1f} s"
        )

    with cluster.parts_folder(settings.warehouse) as folder:
        given = dict(settings=settings, book=book, facts=facts, files=files, known=known)
        parameters = [
            {**given, "chunk": chunk, "number": number, "folder": folder}
            for number, chunk in enumerate(chunks, start=1)
        ]
        cluster.run_in_order(settings.warehouse, part_chunk, parameters, append)
    logger.info(
        f"{len(chunks)} chunks on Dask in {time.perf_counter() - started:.1f} s "
        "(the cluster's start and stop included)"
    )
    return staged


@task(cache_policy=NO_CACHE)
def stage_estate(
    settings: Settings,
    book: pa.Table,
    facts: EstateFacts,
    files: LakeFiles,
    chunks: list[StagedChunk],
    fingerprint: str,
    new: warehouse.StagedWarehouse,
    resolution_notes: tuple[str, ...] = (),
    costs_to_replace: set[str] | None = None,
) -> BuildSummary:
    """The estate-wide rows (fleet comparison, double licensing, showback with its management
    groups from the lake's subscriptions), the price book, the subscriptions, the raw costs and
    `build_info`, written to the new warehouse (replacing a copied warehouse's; of the raw
    costs, the rows of `costs_to_replace`, lake-relative files, when given) and documented."""
    names = latest_subscriptions(settings.lake.location())
    estate = estate_views(
        [chunk.parts for chunk in chunks],
        _book(book),
        _options(settings, book),
        facts,
        pl.from_arrow(names).lazy(),  # type: ignore[union-attr]
    )
    new.delete("findings", "list_contains($estate, finding)", {"estate": list(ESTATE_FINDINGS)})
    for name in ESTATE_VIEWS:
        if name != "findings":
            new.delete(name)
        new.append(name, _arrow(estate[name]))
    for name in ("prices", "subscriptions", "build_info"):
        new.delete(name)
    new.append("prices", book)
    new.append("subscriptions", names)
    if costs_to_replace is None:
        new.delete("costs")
    else:
        new.delete("costs", "list_contains($files, lake_file)", {"files": sorted(costs_to_replace)})
    append_costs(files, new, costs_to_replace)
    overlaps = resolution_notes
    new.append("build_info", build_info(settings, fingerprint, facts.history, overlaps))
    new.add_tenants(tenant_tables())
    new.document(table_comments(), column_comments())
    rows = {
        name: new.count(name)
        for name in (*CHUNKED_VIEWS, *ESTATE_VIEWS, "prices", "subscriptions", "costs")
    }
    start, end = facts.history or (None, None)
    return BuildSummary(settings.warehouse.path, rows, start, end, fingerprint, overlaps)


# Cost files polars reads at a time (the survey; the costs copy of an object-storage lake or of
# partitions with rows left out), so memory holds a few files' rows, not the lake's.
COST_FILES_AT_A_TIME: Final = 64


def append_costs(
    files: LakeFiles, new: warehouse.StagedWarehouse, only: set[str] | None = None
) -> None:
    """The lake's counted cost rows appended to the new warehouse as they are, each with its
    partition file (`WAREHOUSE_COSTS`); with `only`, the rows of those files (lake-relative).

    Whole partitions of a lake on disk are read by DuckDB itself (fastest); partitions with rows
    left out (`transforms.sources`), and an object-storage lake's, through polars, a few files
    at a time."""
    cost_files = [
        path for path in files.every("costs") if only is None or files.relative(path) in only
    ]

    def counted_rows(paths: list[PurePath]) -> pa.Table:
        scans = [
            files.scan("costs", [path]).with_columns(lake_file=pl.lit(files.relative(path)))
            for path in paths
        ]
        return pl.concat(scans).collect().to_arrow().cast(WAREHOUSE_COSTS)

    if files.store is not None:
        for start in range(0, len(cost_files), COST_FILES_AT_A_TIME):
            new.append("costs", counted_rows(cost_files[start : start + COST_FILES_AT_A_TIME]))
        if not cost_files:
            new.append("costs", WAREHOUSE_COSTS.empty_table())
        return
    whole = [Path(path) for path in cost_files if str(path) not in files.left_out]
    new.append_parquet(
        "costs", whole, WAREHOUSE_COSTS, file_column="lake_file", relative_to=Path(files.root)
    )
    partial = [path for path in cost_files if str(path) in files.left_out]
    if partial:
        new.append("costs", counted_rows(partial))


def latest_subscriptions(lake: Lake) -> pa.Table:
    """Each subscription as the latest collection that listed it saw it (names, group path)."""
    if not dataset_files(lake, "subscriptions"):
        return DATASETS["subscriptions"].empty_table()
    latest = (
        scan_dataset(lake, "subscriptions")
        .sort("snapshot_at", "ingested_at")
        .unique("subscription_id", keep="last")
        .sort("subscription_id")
        .collect()
    )
    return latest.to_arrow().cast(DATASETS["subscriptions"])


def build_info(
    settings: Settings,
    fingerprint: str,
    window: tuple[datetime, datetime] | None,
    cost_overlaps: tuple[str, ...] = (),
) -> pa.Table:
    """One row: when and from what the warehouse was built, the settings it used, and which
    cost sources it counted where the lake holds more than one (`transforms.sources`)."""
    start, end = window or (None, None)
    return pa.table(
        {
            "built_at": pa.array([datetime.now(UTC)], pa.timestamp("us", tz="UTC")),
            "lake_fingerprint": [fingerprint],
            "history_start": pa.array([start], pa.timestamp("us", tz="UTC")),
            "history_end": pa.array([end], pa.timestamp("us", tz="UTC")),
            "currency": [settings.pricing.currency],
            "seat_option": [settings.pricing.seat_option],
            "partial_hours": [settings.pricing.partial_hours],
            "cost_precedence": [PRECEDENCE],
            "cost_overlaps": [json.dumps(list(cost_overlaps))],
            "seat_prices": [json.dumps(settings.pricing.seat_prices, sort_keys=True)],
            "discounts": [json.dumps(settings.pricing.discounts, sort_keys=True)],
            "seats_owned": [json.dumps(settings.pricing.seats_owned, sort_keys=True)],
            "seat_term": [settings.pricing.seat_term],
            "monthly_term_uplift_percent": [settings.pricing.monthly_term_uplift_percent],
            "seat_reassignment_days": [settings.pricing.seat_reassignment_days],
            "mde_component": [json.dumps(settings.pricing.mde_component, sort_keys=True)],
            "seat_eligibility": [json.dumps(settings.pricing.seat_eligibility, sort_keys=True)],
            "mde_benefit_from": pa.array([settings.pricing.mde_benefit_from], pa.date32()),
        }
    )


def built_fingerprint(warehouse_path: Path) -> str | None:
    """The lake fingerprint the published warehouse was built from (None: none or unknown)."""
    if not warehouse_path.exists():
        return None
    try:
        rows = warehouse.query(warehouse_path, "SELECT lake_fingerprint FROM build_info")
    except duckdb.CatalogException:  # built before build_info existed: rebuild
        return None
    values = rows.column("lake_fingerprint").to_pylist()
    return values[0] if values else None


@task(cache_policy=NO_CACHE)
def survey_costs(files: LakeFiles, known: pl.DataFrame | None = None) -> pl.DataFrame:
    """One pass over the lake's cost rows (`transforms.sources.survey`): what each partition
    delivers, in which currencies, and whether it holds an amount that is no amount. The files
    `known` already surveys (`known_survey`) are not read again."""
    paths = files.every("costs")
    if known is not None:
        surveyed = set(known["file"])
        paths = [path for path in paths if str(path) not in surveyed]
    # A few files at a time: polars holds the rows of the files it scans at once (the whole
    # lake's 53M rows took 14 GB at 100,000 machines); a file's rows are in one batch, so the
    # batches' groups are the whole survey's.
    batches = [
        survey(
            files.scan_all("costs", paths[start : start + COST_FILES_AT_A_TIME], with_file="file")
        ).collect(engine="streaming")
        for start in range(0, len(paths), COST_FILES_AT_A_TIME)
    ]
    empty = survey(files.scan_all("costs", [], with_file="file")).collect()
    fresh = pl.concat([empty, *batches])
    if known is None:
        return fresh
    return pl.concat([known.cast(fresh.schema), fresh]).sort(pl.all())


def known_survey(
    files: LakeFiles, published: Published | None, listing: Listing
) -> pl.DataFrame | None:
    """The published build's survey of the cost files unchanged since (same size and
    modification time), named as this build scans them; None when its code differs."""
    if published is None or published.code != code_digest():
        return None
    unchanged = {
        files.relative(path): str(path)
        for path in files.every("costs")
        if (relative := files.relative(path)) in listing
        and published.files.get(relative) == listing[relative]
    }
    kept = published.survey.filter(pl.col("file").is_in(list(unchanged)))
    return kept.with_columns(pl.col("file").replace_strict(unchanged))


def relative_survey(files: LakeFiles, surveyed: pl.DataFrame) -> pl.DataFrame:
    """`surveyed` with each file named relative to the lake, as the build state keeps it."""
    names = {str(path): files.relative(path) for path in files.every("costs")}
    return surveyed.with_columns(pl.col("file").replace_strict(names, return_dtype=pl.String))


def refuse_implausible(surveyed: pl.DataFrame) -> None:
    """Refuse a lake partition holding NaN, infinite or absurd money (written before imports
    refused it, or by hand), naming it: no figure built on it would mean anything."""
    bad = surveyed.filter(pl.col("implausible") > 0).sort("file")
    if bad.height:
        file = bad["file"][0]
        rows = int(bad.filter(pl.col("file") == file)["implausible"].sum())
        raise BuildRefusedError(
            f"lake partition {file} holds {rows} cost row(s) with a NaN, infinite or absurd "
            "amount; delete that partition and import or collect its month again"
        )


def _months(window: tuple[datetime, datetime] | None) -> list[str]:
    """The months (YYYY-MM) the power history touches; charges outside it are not built."""
    if window is None:
        return []
    start, end = window
    months, year, month = [], start.year, start.month
    while (year, month) <= (end.year, end.month):
        months.append(f"{year:04d}-{month:02d}")
        year, month = year + month // 12, month % 12 + 1
    return months


def refuse_other_currencies(
    settings: Settings, surveyed: pl.DataFrame, files: LakeFiles, facts: EstateFacts
) -> None:
    """Refuse, in one line, Defender charges the build would count in another currency than
    `[pricing] currency`: comparisons add only charges in that currency, so the others would
    show as billed_cost 0, silently. Names the currencies the lake holds, their subscriptions,
    and what to set."""
    wanted = settings.pricing.currency.upper()
    held = billed_currencies(surveyed, files.left_out, _months(facts.history))
    others = {currency: owners for currency, owners in held.items() if currency != wanted}
    if not others:
        return

    def owners_of(currency: str) -> str:
        owners = held[currency]
        shown = ", ".join(owners[:3]) + (f" and {len(owners) - 3} more" if len(owners) > 3 else "")
        return f"{currency} ({shown})"

    found = "; ".join(owners_of(currency) for currency in held)
    if len(held) == 1:
        (currency,) = held
        advice = (
            f'set [pricing] currency = "{currency}" (with {currency} prices: `mdecost prices '
            f"refresh`, [pricing.seat_prices]) and build again"
        )
    else:
        advice = (
            "a warehouse compares in one currency: give the subscriptions of each currency "
            "their own [lake] path and [warehouse] path, each with its [pricing] currency"
        )
    raise BuildRefusedError(
        f"the lake's Defender for Servers charges are billed in {found}, but [pricing] "
        f"currency is {wanted}; {advice}"
    )


def refuse_empty_lake(lake: Lake) -> None:
    """Refuse to build from a lake that does not exist or holds no partition: a mistyped
    `[lake] path` would otherwise publish an empty warehouse over a good one."""
    if not (lake.exists() if isinstance(lake, ObjectStoreLake) else lake.is_dir()):
        raise BuildRefusedError(
            f"no lake at {lake}: check [lake] path (or MDECOST_LAKE__PATH); pass --allow-empty "
            "to build an empty warehouse on purpose"
        )
    if not any(dataset_files(lake, dataset) for dataset in DATASETS):
        raise BuildRefusedError(
            f"the lake at {lake} holds no partition: collect or import first, or check "
            "[lake] path; pass --allow-empty to build an empty warehouse on purpose"
        )


def _bad_partition(lake: Lake, error: Exception) -> BuildRefusedError:
    """The one-line refusal for lake data that failed to read: the first partition whose file
    cannot be opened or whose columns do not have the declared types, else the error itself."""
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    for dataset, schema in DATASETS.items():
        for path in dataset_files(lake, dataset):
            try:
                found = (
                    lake.read_schema(path)
                    if isinstance(lake, ObjectStoreLake)
                    else pq.read_schema(path)
                )
            except (OSError, pa.ArrowException) as unreadable:
                problem = (str(unreadable).strip().splitlines() or ["unreadable"])[0]
                return BuildRefusedError(
                    f"lake partition {path} is not a readable Parquet file ({problem}); "
                    "delete it and collect or import its data again"
                )
            for declared in schema:
                index = found.get_field_index(declared.name)
                if index >= 0 and not found.field(index).type.equals(declared.type):
                    return BuildRefusedError(
                        f"lake partition {path}: column {declared.name} is "
                        f"{found.field(index).type}, the {dataset} dataset declares "
                        f"{declared.type}; delete it and collect or import its data again"
                    )
    return BuildRefusedError(f"the lake at {lake} could not be read: {first_line}")


@flow(name="build", log_prints=False)
def build(
    config_file: Path | None = None, allow_empty: bool = False, full: bool = False
) -> BuildSummary:
    """Rebuild the warehouse from the lake, chunk by chunk, and publish it atomically (one build
    at a time).

    Incremental unless `full` (`flows.incremental`): what the lake's changes cannot reach is
    copied from the published warehouse; the result is the same as a full build's.

    Refused (BuildRefusedError, one line, the published warehouse untouched): an absent or
    empty lake unless `allow_empty`; a file at `[warehouse] path` that is not a mdecost
    warehouse; unreadable or implausible lake data, naming the partition; two cost sources of
    equal rank for one month (`transforms.sources`); Defender charges in another currency than
    `[pricing] currency`.
    """
    settings = load_settings(config_file)
    logger = _logger()
    with warehouse.build_lock(settings.warehouse.path):
        for leftover in warehouse.sweep_abandoned_builds(settings.warehouse.path):
            logger.info(f"removed {leftover.name}, left by an interrupted build")
        for leftover in cluster.sweep_abandoned_parts(settings.warehouse):
            logger.info(f"removed {leftover.name}, left by an interrupted build")
        try:
            if not allow_empty:
                refuse_empty_lake(settings.lake.location())
            warehouse.refuse_foreign(settings.warehouse.path)
            cluster.check_cluster(settings.warehouse)
        except (
            warehouse.ForeignWarehouseError,
            cluster.ClusterUnreachableError,
            ObjectStoreCredentialError,
        ) as error:
            raise BuildRefusedError(str(error)) from None
        except AzureError as error:  # an object-storage lake that refuses us or is not there
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise BuildRefusedError(
                f"the lake at {settings.lake.path} cannot be read ({first_line}); check [lake] "
                "path and its credential ([lake] connection_string_env, AZURE_STORAGE_*)"
            ) from None
        try:
            summary = _build_locked(settings, logger, full)
        except (pl.exceptions.PolarsError, pa.ArrowException, duckdb.IOException) as error:
            raise _bad_partition(settings.lake.location(), error) from None
    for line in summary.lines():
        logger.info(line)
    return summary


def _build_locked(
    settings: Settings, logger: logging.Logger | logging.LoggerAdapter, full: bool
) -> BuildSummary:
    listing = lake_listing(settings.lake.location())
    fingerprint = listing_digest(listing)
    files = LakeFiles.of(settings.lake.location())
    published = (
        None
        if full or not settings.warehouse.path.exists()
        else published_build(settings.warehouse.path)
    )
    surveyed = survey_costs(files, known_survey(files, published, listing))
    refuse_implausible(surveyed)
    lake_survey = relative_survey(files, surveyed)
    try:
        resolution = resolve(deliveries(surveyed))
    except CostOverlapError as error:
        raise BuildRefusedError(str(error)) from None
    files = replace(files, left_out=resolution.left_out)
    book = price_book(settings)
    facts = judge_estate(files)
    refuse_other_currencies(settings, surveyed, files, facts)
    context = context_digest(build_info(settings, fingerprint, None, resolution.notes), book)
    start, end = facts.history or (None, None)
    now = Facts(start, end, facts.latest_snapshot_date, facts.billed_through)
    previous, full_because = _previous_build(settings.warehouse.path, published, full, context, now)
    chunks = plan_build(settings, files, previous)
    known = frozenset(member for chunk in chunks for member in chunk.subscriptions)
    planned = {chunk.subscriptions for chunk in chunks if not chunk.unknown}
    if previous is not None and planned != set(previous.chunks.values()):
        previous, full_because = None, "the subscriptions or their chunks changed"
    logger.info(
        "incremental build: keeping what the lake's changes do not reach"
        if previous is not None
        else f"full build: {full_because}"
    )
    with warehouse.staged(settings.warehouse.path, copy_published=previous is not None) as new:
        reuses: list[ChunkReuse | None] = [None] * len(chunks)
        costs_to_replace = None
        if previous is not None:
            new.attach_read_only(settings.warehouse.path, PUBLISHED)
            alike = collected_again_alike(previous, lake_survey, listing)
            reuses = _reuses(settings, previous, listing, now, chunks, alike)
            reuses = forget_changed_rows(
                new,
                list(zip(chunks, reuses, strict=True)),
                known,
                facts.window_start,
                computed_whole=settings.warehouse.executor == "dask",
            )
            costs_to_replace = changed_cost_files(previous, listing)
        if settings.warehouse.executor == "dask":
            staged = _stage_on_dask(settings, book, facts, files, chunks, reuses, known, new)
        else:
            staged = []
            for number, (chunk, reuse) in enumerate(zip(chunks, reuses, strict=True), start=1):
                started = time.perf_counter()
                staged.append(stage_chunk(settings, book, facts, files, chunk, known, new, reuse))
                logger.info(
                    f"chunk {number}/{len(chunks)} ({chunk.describe()}) {staged[-1].made} in "
                    f"{time.perf_counter() - started:.1f} s"
                )
        record_state(new, context, now, listing, lake_survey, chunks, staged)
        summary = stage_estate(
            settings,
            book,
            facts,
            files,
            staged,
            fingerprint,
            new,
            resolution.notes,
            costs_to_replace,
        )
    return replace(summary, made=_made(staged, full_because if previous is None else None))


def _reuses(
    settings: Settings,
    previous: Published,
    listing: Listing,
    now: Facts,
    chunks: list[LakeChunk],
    alike: set[str],
) -> list[ChunkReuse | None]:
    """What each chunk keeps of the published build (`ChunkReuse`; None: the chunk of no
    subscription, computed whole), the cost files collected again `alike` reaching no month.
    On Dask a changed chunk is computed whole."""
    changed = changed_months(settings.lake.location(), previous, listing, alike)
    timelines = changed_months(
        settings.lake.location(), previous, listing, alike, datasets=TIMELINE_DATASETS
    )
    moved = facts_month(previous.facts, now)
    reuses: list[ChunkReuse | None] = []
    for chunk in chunks:
        if chunk.unknown:
            reuses.append(None)
            continue
        first = first_changed_month(changed, chunk.subscriptions, moved)
        if first is not None and settings.warehouse.executor == "dask":
            first = WHOLE_HISTORY
        reuses.append(
            ChunkReuse(
                first, timelines_changed=first_changed_month(timelines, chunk.subscriptions, None)
            )
        )
    return reuses


def record_state(
    new: warehouse.StagedWarehouse,
    context: str,
    now: Facts,
    listing: Listing,
    surveyed: pl.DataFrame,
    chunks: list[LakeChunk],
    staged: list[StagedChunk],
) -> None:
    """The build state (`flows.incremental`), replacing a copied warehouse's, documented: the
    parts of the chunks it copied stay as they are."""
    for name in STATE_TABLES:
        new.delete(name, schema=STATE_SCHEMA)
    record_parts(
        new,
        [
            (chunk, staged_chunk)
            for chunk, staged_chunk in zip(chunks, staged, strict=True)
            if staged_chunk.made != COPIED
        ],
    )
    members = {chunk.key: chunk.subscriptions for chunk in chunks}
    for name, table in state_tables(context, now, listing, members, surveyed).items():
        new.append_state(STATE_SCHEMA, name, table)
    parts: dict[str, tuple[str, dict[str, str]]] = {
        f"part_{name}": (PART_COMMENT.format(part=name), {}) for name in PART_NAMES
    }
    new.document_schema(
        STATE_SCHEMA, {**STATE_COMMENTS, **RESUME_COMMENTS, **parts}, PART_COLUMN_COMMENT
    )


def _previous_build(
    warehouse_path: Path, previous: Published | None, full: bool, context: str, now: Facts
) -> tuple[Published | None, str]:
    """The published build (its state, `previous`) an incremental build may keep rows of, or
    None and why not."""
    if full:
        return None, "asked for (--full)"
    if not warehouse_path.exists():
        return None, "no published warehouse"
    if previous is None:
        return None, "the published warehouse has no build state (built by an older mdecost)"
    if previous.context != context:
        return None, "the settings, the price book or mdecost's code changed"
    if previous.facts.window_start != now.window_start:
        return None, "the power history starts at another time"
    return previous, ""


def _made(staged: list[StagedChunk], full_because: str | None) -> str:
    """How the chunks were made, in a few words."""
    if full_because is not None:
        return f"full build ({full_because})"
    counts: dict[str, int] = {}
    for chunk in staged:
        counts[chunk.made] = counts.get(chunk.made, 0) + 1
    made = ", ".join(f"{count} {how}" for how, count in sorted(counts.items()))
    return f"incremental build: chunks {made}"
