"""`build`: the lake -> the DuckDB warehouse, as a Prefect flow.

Three steps, each a task: price the estate (the effective price book), compute every view from
the lake (pure transforms, `transforms.marts`), publish the warehouse atomically under the build
lock. The warehouse records what it was built from (`build_info`): the lake's fingerprint, so a
scheduled report rebuilds only when the lake changed, and the settings the numbers depend on,
so the report's methodology states the ones actually used.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError

from flows import warehouse
from flows.config import Settings, load_settings
from flows.lake import dataset_files, scan_dataset
from pricing.book import load_price_book, pricing_choices
from transforms.dictionary import column_comments, table_comments
from transforms.marts import MartOptions, RawLake, build_marts, history_window
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
    """A digest of every committed partition's path, size and modification time.

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


def raw_lake(lake: Path) -> RawLake:
    return RawLake(
        inventory=scan_dataset(lake, "inventory"),
        pricings=scan_dataset(lake, "pricings"),
        power_events=scan_dataset(lake, "power_events"),
        costs=scan_dataset(lake, "costs"),
    )


@task(cache_policy=NO_CACHE)
def price_book(settings: Settings) -> pa.Table:
    """The effective price book: shipped list prices, refreshed prices, the user's overrides."""
    return load_price_book(settings)


@task(cache_policy=NO_CACHE)
def compute_views(settings: Settings, book: pa.Table) -> dict[str, pa.Table]:
    """Every warehouse view from the lake (pure transforms), as Arrow tables."""
    choices = pricing_choices(settings.pricing, book)
    options = MartOptions(
        seat_option=choices.seat_option,
        currency=choices.currency,
        partial_hours=settings.pricing.partial_hours,
        seats_owned=choices.seats_owned,
    )
    raw = raw_lake(settings.lake.path)
    views = build_marts(raw, pl.from_arrow(book).lazy(), options)  # type: ignore[union-attr]
    # Arrow string views: polars hands its buffers over as they are (the default converts every
    # string column to large_string, a full copy of the views in memory); DuckDB reads both.
    newest = pl.CompatLevel.newest()
    tables = {name: frame.to_arrow(compat_level=newest) for name, frame in views.items()}
    tables["prices"] = book
    return tables


def raw_costs(lake: Path) -> pa.Table | ds.Dataset:
    """The lake's cost rows for the warehouse's `costs` table, as a dataset DuckDB streams.

    Cost rows are the largest raw dataset (a row per machine, meter and day): copying them
    through polars into one Arrow table held them in memory twice for nothing.
    """
    files = dataset_files(lake, "costs")
    if not files:
        return DATASETS["costs"].empty_table()
    return ds.dataset([str(path) for path in files], schema=DATASETS["costs"], format="parquet")


@task(cache_policy=NO_CACHE)
def publish_warehouse(
    settings: Settings, tables: dict[str, pa.Table], fingerprint: str
) -> BuildSummary:
    """Write the views and `build_info` into a new warehouse file and swap it in."""
    window = history_window(raw_lake(settings.lake.path))
    info = build_info(settings, fingerprint, window)
    costs = raw_costs(settings.lake.path)
    published = warehouse.publish(
        settings.warehouse.path,
        {**tables, "costs": costs, "build_info": info},  # type: ignore[dict-item]
        table_comments=table_comments(),
        column_comments=column_comments(),
    )
    rows = {name: table.num_rows for name, table in tables.items()}
    rows["costs"] = costs.num_rows if isinstance(costs, pa.Table) else costs.count_rows()
    start, end = window or (None, None)
    return BuildSummary(published, rows, start, end, fingerprint)


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
    """Rebuild the warehouse from the lake and publish it atomically (one build at a time)."""
    settings = load_settings(config_file)
    with warehouse.build_lock(settings.warehouse.path):
        for leftover in warehouse.sweep_abandoned_builds(settings.warehouse.path):
            _logger().info(f"removed {leftover.name}, left by an interrupted build")
        fingerprint = lake_fingerprint(settings.lake.path)
        book = price_book(settings)
        tables = compute_views(settings, book)
        summary = publish_warehouse(settings, tables, fingerprint)
    for line in summary.lines():
        _logger().info(line)
    return summary
