"""The whole warehouse from the raw lake: every contract view, computed in dependency order.

raw (lake datasets) -> staging (machines, power intervals, billable hours) -> marts (charges,
comparisons, findings), as in dbt's raw -> staging -> marts. Each view is materialised once and
fed to the views that depend on it, so a view used five times is computed once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import polars as pl

from transforms.charges import defender_charges_daily
from transforms.comparison import fleet_comparison_monthly, licensing_comparison_monthly
from transforms.findings import findings
from transforms.machines import machines
from transforms.power import machine_hours_daily, power_intervals

# Polars' streaming engine runs a plan in morsels; in a per-view profile of the 10k benchmark
# estate it ran these views in ~60% of the time (benchmarks/analysis.md). It is used only where
# the result cannot depend on the order rows are
# combined in: the machines (first/last sightings) and the power views, which add integer
# microseconds. Views that sum floating-point money or hours keep the in-memory engine, whose
# order is fixed, so a build gives the same figures to the last bit every time.
ORDER_FREE_ENGINE: Final = "streaming"


@dataclass(frozen=True)
class MartOptions:
    """The choices a build is made with; recorded in the warehouse beside the views."""

    seat_option: str
    currency: str
    partial_hours: str
    seats_owned: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RawLake:
    """The raw lake datasets, as lazy scans with their declared schemas."""

    inventory: pl.LazyFrame
    pricings: pl.LazyFrame
    power_events: pl.LazyFrame
    costs: pl.LazyFrame


def history_window(raw: RawLake) -> tuple[datetime, datetime] | None:
    """[start, end) of what the lake knows about power states, or None for an empty lake.

    It starts on the first day of the month of the earliest event or snapshot (collection
    covers whole months) and ends at the latest one: the present, as the last run saw it.
    """
    bounds = pl.concat(
        [
            raw.power_events.select(at=pl.col("event_at")),
            raw.inventory.select(at=pl.col("snapshot_at")),
        ]
    ).select(first=pl.col("at").min(), last=pl.col("at").max())
    first, last = bounds.collect(engine=ORDER_FREE_ENGINE).row(0)
    if first is None:
        return None
    month_start = first.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return month_start, last.astimezone(UTC)


def build_marts(
    raw: RawLake, price_book: pl.LazyFrame, options: MartOptions
) -> dict[str, pl.DataFrame]:
    """Every warehouse view from the raw lake and the effective price book.

    Cost rows outside the power-history window are left out of the machine views (nothing is
    known of the machines' hours then, so every charge would look billed-while-not-billable);
    they stay in `costs`.
    """
    window = history_window(raw)
    if window is None:
        start = end = datetime(1970, 1, 1, tzinfo=UTC)
    else:
        start, end = window
    views: dict[str, pl.DataFrame] = {}
    views["machines"] = machines(raw.inventory, raw.power_events, raw.pricings).collect(
        engine=ORDER_FREE_ENGINE
    )
    views["power_intervals"] = power_intervals(
        raw.inventory, raw.power_events, window_start=start, window_end=end
    ).collect(engine=ORDER_FREE_ENGINE)
    views["machine_hours_daily"] = machine_hours_daily(
        views["power_intervals"].lazy(),
        views["machines"].lazy(),
        partial_hours=options.partial_hours,
    ).collect(engine=ORDER_FREE_ENGINE)
    costs_in_window = raw.costs.filter(
        pl.col("charge_period_start").is_between(start, end, closed="left")
    )
    views["defender_charges_daily"] = defender_charges_daily(
        costs_in_window, views["machine_hours_daily"].lazy()
    ).collect()
    views["licensing_comparison_monthly"] = licensing_comparison_monthly(
        views["machines"].lazy(),
        views["machine_hours_daily"].lazy(),
        views["defender_charges_daily"].lazy(),
        price_book,
        seat_option=options.seat_option,
        currency=options.currency,
    ).collect()
    views["fleet_comparison_monthly"] = fleet_comparison_monthly(
        views["machines"].lazy(),
        views["machine_hours_daily"].lazy(),
        views["power_intervals"].lazy(),
        views["defender_charges_daily"].lazy(),
        price_book,
        seat_option=options.seat_option,
        currency=options.currency,
    ).collect()
    views["findings"] = findings(
        views["machines"].lazy(),
        views["machine_hours_daily"].lazy(),
        views["defender_charges_daily"].lazy(),
        views["licensing_comparison_monthly"].lazy(),
        views["fleet_comparison_monthly"].lazy(),
        price_book,
        currency=options.currency,
        seats_owned=options.seats_owned,
    ).collect()
    return views
