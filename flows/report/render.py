"""Render the month's finance report from the warehouse into `<out_dir>/YYYY-MM/`.

The only I/O of the report: one read-only connection to the warehouse, then each file written
beside its final name and renamed into place, so a failed render never leaves half a report
and a reader never opens a half-written file.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb

from flows.config import PricingSettings
from flows.report.csvfile import write_comparison_csv
from flows.report.data import ReportData, ReportDataError, load_report_data
from flows.report.html import render_html
from flows.report.periods import Periods, load_periods
from flows.report.xlsx import write_workbook
from flows.warehouse import connect_read_only

FORMATS = frozenset({"html", "csv", "xlsx"})
FILE_NAMES = {"html": "report.html", "csv": "comparison.csv", "xlsx": "comparison.xlsx"}
# The licensing options of the month, a CSV of their own beside comparison.csv.
OPTIONS_CSV = "licensing_options.csv"


@dataclass(frozen=True)
class ReportPaths:
    """Where the report for `month` was written; a format not asked for is None."""

    month: date
    directory: Path
    html: Path | None
    csv: Path | None
    xlsx: Path | None
    options_csv: Path | None  # licensing_options.csv, written with the csv format
    data: ReportData  # what the files say, for summaries and Prefect artifacts
    periods: Periods | None = None  # trend, showback, month in progress (with html)

    @property
    def files(self) -> list[Path]:
        """Every file written, in a stable order (the mail attaches them)."""
        return [
            path for path in (self.html, self.csv, self.options_csv, self.xlsx) if path is not None
        ]


def report_directory(out_dir: Path, month: date) -> Path:
    """`<out_dir>/YYYY-MM`, the folder of one month's report."""
    return out_dir / f"{month:%Y-%m}"


def parse_formats(text: str) -> frozenset[str]:
    """`"html,csv"` -> {"html", "csv"}; an unknown name is an error listing the known ones."""
    names = frozenset(part.strip().lower() for part in text.split(",") if part.strip())
    unknown = sorted(names - FORMATS)
    if unknown or not names:
        raise ValueError(
            f"unknown report format {', '.join(unknown) or repr(text)}; "
            f"choose from {', '.join(sorted(FORMATS))} (comma-separated)"
        )
    return names


def render_report(
    warehouse_path: Path,
    month: date,
    out_dir: Path,
    formats: Iterable[str] = FORMATS,
    pricing: PricingSettings | None = None,
    generated_at: datetime | None = None,
    trend_from: date | None = None,
) -> ReportPaths:
    """Render the report for the month containing `month` from `warehouse_path`.

    Writes `report.html`, `comparison.csv` (with `licensing_options.csv`) and `comparison.xlsx`
    (those in `formats`) into `<out_dir>/YYYY-MM/`. `pricing` supplies what the methodology
    states about settings the warehouse does not record (partial hours, configured overrides);
    default: the defaults. `trend_from`: the first month of the trend (`--months A..B`);
    default: the last 12 complete months.
    Raises WarehouseMissingError when there is no warehouse, ReportDataError when the month
    has no data, ValueError for an unknown format.
    """
    chosen = parse_formats(",".join(formats))
    pricing = pricing or PricingSettings()
    with connect_read_only(warehouse_path) as con:
        data = load_report_data(con, month, str(warehouse_path))
        try:
            periods = load_periods(
                con, data.month, data.assumptions, data.headline.currency, trend_from
            )
        except (duckdb.CatalogException, duckdb.BinderException) as error:
            raise ReportDataError(
                f"warehouse {warehouse_path} lacks a view or column the report reads "
                f"({str(error).splitlines()[0]}); rebuild it with `mdecost build`"
            ) from None
    directory = report_directory(out_dir, data.month)
    directory.mkdir(parents=True, exist_ok=True)

    def write_html(path: Path) -> None:
        page = render_html(
            data,
            warehouse_name=warehouse_path.name,
            generated_at=generated_at or datetime.now(UTC),
            partial_hours=pricing.partial_hours,
            overrides=_overrides(pricing),
            periods=periods,
            trend_range=trend_from is not None,
        )
        path.write_text(page, encoding="utf-8")

    writers: dict[str, Callable[[Path], None]] = {
        "html": write_html,
        "csv": lambda path: write_comparison_csv(data.machines, path),
        "xlsx": lambda path: write_workbook(data, path, periods),
    }
    written = {
        name: _write_atomically(directory / FILE_NAMES[name], writers[name])
        for name in sorted(chosen)
    }
    options_csv = None
    if "csv" in chosen:
        options_csv = _write_atomically(
            directory / OPTIONS_CSV, lambda path: write_comparison_csv(data.options, path)
        )
    return ReportPaths(
        month=data.month,
        directory=directory,
        html=written.get("html"),
        csv=written.get("csv"),
        xlsx=written.get("xlsx"),
        options_csv=options_csv,
        data=data,
        periods=periods,
    )


def _overrides(pricing: PricingSettings) -> dict[str, str]:
    """The configured changes to list prices, as the methodology lists them."""
    overrides = {
        option: f"seat price {price:g} {pricing.currency} per month"
        for option, price in sorted(pricing.seat_prices.items())
    }
    for option, percent in sorted(pricing.discounts.items()):
        text = f"{percent:g}% off list"
        overrides[option] = f"{overrides[option]}, {text}" if option in overrides else text
    return overrides


def _write_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(staging)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    return path
