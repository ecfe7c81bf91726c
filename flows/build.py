"""`build`: the lake -> the DuckDB warehouse, as a Prefect flow.

Under the build lock: price the estate (the effective price book), judge what the whole lake
says (`EstateFacts`), cut the lake into chunks of whole subscriptions, and for each chunk compute
its rows of every view (pure transforms, `transforms.marts`) and append them to a new warehouse
beside the published one; then the estate-wide rows, and the swap. Memory holds one chunk at a
time, so it follows `[warehouse] chunk_megabytes`, not the estate's size.

The warehouse records what it was built from (`build_info`): the lake's fingerprint, so a
scheduled report rebuilds only when the lake changed, and the settings the numbers depend on,
so the report's methodology states the ones actually used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError

from flows import warehouse
from flows.config import Settings, load_settings
from flows.lake import dataset_files, partition_value, scan_files
from pricing.book import load_price_book, pricing_choices
from transforms.charges import charge_subscription
from transforms.dictionary import column_comments, table_comments
from transforms.marts import (
    CHUNKED_VIEWS,
    ESTATE_VIEWS,
    EstateFacts,
    EstateParts,
    MartOptions,
    RawLake,
    chunk_views,
    estate_facts,
    estate_views,
    linked_subscriptions,
    plan_chunks,
)
from transforms.options import LicensingTerms
from transforms.schemas import DATASETS


@dataclass(frozen=True)
class BuildSummary:
    warehouse: Path
    rows: dict[str, int]
    window_start: datetime | None
    window_end: datetime | None
    lake_fingerprint: str

    def lines(self) -> list[str]:
        window = (
            f"{self.window_start:%Y-%m-%d %H:%M} .. {self.window_end:%Y-%m-%d %H:%M} UTC"
            if self.window_start and self.window_end
            else "no power history in the lake"
        )
        rows = ", ".join(f"{name} {count:,}" for name, count in self.rows.items())
        return [f"warehouse {self.warehouse} (history {window})", f"rows: {rows}"]


def _logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("mdecost.build")


def lake_fingerprint(lake: Path) -> str:
    """A digest of every committed partition's path, size and modification time, of every
    dataset (refreshed retail prices change the price book, hence the warehouse).

    Partitions are replaced by rename, so any rewrite changes the fingerprint; reading the
    files' contents is not needed.
    """
    digest = hashlib.sha256()
    for dataset in DATASETS:
        for path in dataset_files(lake, dataset):
            status = path.stat()
            digest.update(
                f"{path.relative_to(lake)}\0{status.st_size}\0{status.st_mtime_ns}\n".encode()
            )
    return digest.hexdigest()


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

    def describe(self) -> str:
        if self.unknown:
            return "rows of no collected subscription"
        return f"{len(self.subscriptions)} subscription(s), {self.raw_bytes / 1e6:,.1f} MB raw"


def _subscription_of_file(path: Path) -> str | None:
    value = partition_value(path, "subscription_id")
    return value.lower() if value else None


@dataclass(frozen=True)
class LakeFiles:
    """The partition files the views are built from, listed once per build (listing the 10,400
    files of the 100k benchmark lake for each of its chunks took 0.4 s a chunk)."""

    by_subscription: dict[str, dict[str, list[Path]]]  # dataset -> subscription -> files
    shared: dict[str, list[Path]]  # dataset -> files with no subscription partition key

    @classmethod
    def of(cls, lake: Path) -> LakeFiles:
        by_subscription: dict[str, dict[str, list[Path]]] = {name: {} for name in BUILT_FROM}
        shared: dict[str, list[Path]] = {name: [] for name in BUILT_FROM}
        for dataset in BUILT_FROM:
            for path in dataset_files(lake, dataset):
                subscription = _subscription_of_file(path)
                if subscription is None:
                    shared[dataset].append(path)
                else:
                    by_subscription[dataset].setdefault(subscription, []).append(path)
        return cls(by_subscription, shared)

    def whole(self) -> RawLake:
        """Lazy scans of the whole lake."""
        return RawLake(**{name: scan_files(name, self.every(name)) for name in BUILT_FROM})

    def every(self, dataset: str) -> list[Path]:
        """Every file of `dataset`, in the lake's order."""
        owned = [path for paths in self.by_subscription[dataset].values() for path in paths]
        return sorted(owned + self.shared[dataset])

    def subscription_bytes(self) -> dict[str, int]:
        weights: dict[str, int] = {}
        for files in self.by_subscription.values():
            for subscription, paths in files.items():
                size = sum(path.stat().st_size for path in paths)
                weights[subscription] = weights.get(subscription, 0) + size
        return weights


def plan_lake_chunks(files: LakeFiles, chunk_megabytes: float) -> list[LakeChunk]:
    """The lake cut into chunks of whole subscriptions, about `chunk_megabytes` of Parquet each,
    the subscriptions of a moved machine together (`transforms.marts.plan_chunks`)."""
    weights = files.subscription_bytes()
    owned_costs = [path for paths in files.by_subscription["costs"].values() for path in paths]
    links = linked_subscriptions(
        scan_files("inventory", files.every("inventory")), scan_files("costs", owned_costs)
    )
    planned = plan_chunks(weights, links, max_weight=int(chunk_megabytes * 1e6))
    chunks = [LakeChunk(group, sum(weights[member] for member in group)) for group in planned]
    if any(files.shared.values()) or not chunks:
        chunks.append(LakeChunk((), 0, unknown=True))
    return chunks


def chunk_lake(files: LakeFiles, chunk: LakeChunk, known: frozenset[str]) -> RawLake:
    """The lazy scans of `chunk`'s part of the lake (see `LakeChunk`); `known` is every
    subscription some file is partitioned by."""

    def scan(dataset: str) -> pl.LazyFrame:
        own = [
            path
            for subscription in chunk.subscriptions
            for path in files.by_subscription[dataset].get(subscription, [])
        ]
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
        parts = [scan_files(dataset, own)] if own else []
        if shared:
            parts.append(scan_files(dataset, shared).filter(of_chunk))
        return pl.concat(parts) if parts else scan_files(dataset, [])

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
    )


def _book(book: pa.Table) -> pl.LazyFrame:
    return pl.from_arrow(book).lazy()  # type: ignore[union-attr]


def _arrow(frame: pl.DataFrame) -> pa.Table:
    # Arrow string views: polars hands its buffers over as they are (the default converts every
    # string column to large_string, a full copy of the view in memory); DuckDB reads both.
    return frame.to_arrow(compat_level=pl.CompatLevel.newest())


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
    by_month: dict[str | None, list[Path]] = {}
    for path in files.every("costs"):
        by_month.setdefault(partition_value(path, "month"), []).append(path)
    if None in by_month:  # not partitioned by month: no order to rely on, read them all
        return estate_facts(whole)
    months = sorted((month for month in by_month if month is not None), reverse=True)
    return estate_facts(whole, [scan_files("costs", by_month[month]) for month in months])


@task(cache_policy=NO_CACHE)
def plan_build(settings: Settings, files: LakeFiles) -> list[LakeChunk]:
    """The chunks the lake is built in (`plan_lake_chunks`)."""
    return plan_lake_chunks(files, settings.warehouse.chunk_megabytes)


@dataclass(frozen=True)
class StagedChunk:
    """What a chunk leaves for the estate step: its row counts and its estate parts."""

    rows: dict[str, int]
    parts: EstateParts


@task(cache_policy=NO_CACHE)
def stage_chunk(
    settings: Settings,
    book: pa.Table,
    facts: EstateFacts,
    files: LakeFiles,
    chunk: LakeChunk,
    known: frozenset[str],
    new: warehouse.StagedWarehouse,
) -> StagedChunk:
    """Compute one chunk's rows of every view (pure transforms) and append them to the new
    warehouse, so memory holds one chunk's views at a time."""
    raw = chunk_lake(files, chunk, known)
    computed = chunk_views(raw, _book(book), _options(settings, book), facts)
    for name in CHUNKED_VIEWS:
        new.append(name, _arrow(computed.views[name]))
    rows = {name: frame.height for name, frame in computed.views.items()}
    return StagedChunk(rows, computed.parts)


@task(cache_policy=NO_CACHE)
def stage_estate(
    settings: Settings,
    book: pa.Table,
    facts: EstateFacts,
    files: LakeFiles,
    chunks: list[StagedChunk],
    fingerprint: str,
    new: warehouse.StagedWarehouse,
) -> BuildSummary:
    """The estate-wide rows (fleet comparison, double licensing), the price book, the raw
    costs and `build_info`, appended to the new warehouse and documented."""
    estate = estate_views(
        [chunk.parts for chunk in chunks], _book(book), _options(settings, book), facts
    )
    for name in ESTATE_VIEWS:
        new.append(name, _arrow(estate[name]))
    new.append("prices", book)
    cost_files = files.every("costs")
    new.append_parquet("costs", cost_files, DATASETS["costs"])
    new.append("build_info", build_info(settings, fingerprint, facts.history))
    new.document(table_comments(), column_comments())
    rows = {name: 0 for name in CHUNKED_VIEWS}
    for chunk in chunks:
        for name, count in chunk.rows.items():
            rows[name] += count
    rows["fleet_comparison_monthly"] = estate["fleet_comparison_monthly"].height
    rows["licensing_options_monthly"] = estate["licensing_options_monthly"].height
    rows["findings"] += estate["findings"].height
    rows["prices"] = book.num_rows
    rows["costs"] = sum(pq.ParquetFile(path).metadata.num_rows for path in cost_files)
    start, end = facts.history or (None, None)
    return BuildSummary(settings.warehouse.path, rows, start, end, fingerprint)


def build_info(
    settings: Settings, fingerprint: str, window: tuple[datetime, datetime] | None
) -> pa.Table:
    """One row: when and from what the warehouse was built, and the settings it used."""
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


@flow(name="build", log_prints=False)
def build(config_file: Path | None = None) -> BuildSummary:
    """Rebuild the warehouse from the lake, chunk by chunk, and publish it atomically (one build
    at a time)."""
    settings = load_settings(config_file)
    logger = _logger()
    with warehouse.build_lock(settings.warehouse.path):
        for leftover in warehouse.sweep_abandoned_builds(settings.warehouse.path):
            logger.info(f"removed {leftover.name}, left by an interrupted build")
        fingerprint = lake_fingerprint(settings.lake.path)
        files = LakeFiles.of(settings.lake.path)
        book = price_book(settings)
        facts = judge_estate(files)
        chunks = plan_build(settings, files)
        known = frozenset(member for chunk in chunks for member in chunk.subscriptions)
        with warehouse.staged(settings.warehouse.path) as new:
            staged: list[StagedChunk] = []
            for number, chunk in enumerate(chunks, start=1):
                started = time.perf_counter()
                staged.append(stage_chunk(settings, book, facts, files, chunk, known, new))
                logger.info(
                    f"chunk {number}/{len(chunks)} ({chunk.describe()}) built in "
                    f"{time.perf_counter() - started:.1f} s"
                )
            summary = stage_estate(settings, book, facts, files, staged, fingerprint, new)
    for line in summary.lines():
        logger.info(line)
    return summary
