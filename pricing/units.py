"""Pricing block sizes of Cost Management units of measure (FinOps toolkit `PricingUnits.csv`).

Cost Management prices some meters per block of units: a `UnitOfMeasure` of `10 Hours`,
`100 Hours` or `10K` means the unit price is for 10 hours, 100 hours or 10,000 units. The FinOps
toolkit's open-data file maps every unit string seen in Cost Management to its block size and
its distinct unit (`Hours`, `Units`); it ships with mdecost in `pricing/reference/` (MIT, see the
README there) and is read once per process.

Unit strings are matched on a key that ignores case and surrounding or repeated whitespace: the
file itself lists variants such as `"1"` and `"1 "`, and every such variant has the same block
size (checked when the file is loaded).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Final

import polars as pl

PRICING_UNITS_FILE: Final = Path(__file__).parent / "reference" / "PricingUnits.csv"
_FILE_COLUMNS: Final = ("UnitOfMeasure", "AccountTypes", "PricingBlockSize", "DistinctUnits")


def unit_key(unit: pl.Expr) -> pl.Expr:
    """The match key of a unit-of-measure column: trimmed, inner whitespace collapsed, lower."""
    return unit.str.strip_chars().str.replace_all(r"\s+", " ").str.to_lowercase()


@cache
def pricing_units() -> pl.DataFrame:
    """One row per unit key: `unit_key`, `pricing_block_size` (float), `distinct_units`.

    Raises ValueError if the shipped file has changed shape or two spellings of one unit
    disagree, since every cost quantity would then be divided by a guess.
    """
    raw = pl.read_csv(
        PRICING_UNITS_FILE,
        schema=dict.fromkeys(_FILE_COLUMNS, pl.String),
        has_header=True,
    )
    units = raw.select(
        unit_key(pl.col("UnitOfMeasure")).alias("unit_key"),
        pl.col("PricingBlockSize").str.strip_chars().cast(pl.Float64).alias("pricing_block_size"),
        pl.col("DistinctUnits").alias("distinct_units"),
    ).unique(maintain_order=True)
    conflicting = units.filter(pl.col("unit_key").is_duplicated())
    if conflicting.height:
        raise ValueError(
            f"{PRICING_UNITS_FILE}: units with conflicting block sizes or distinct units: "
            f"{', '.join(sorted(set(conflicting['unit_key'])))}"
        )
    if units["pricing_block_size"].null_count() or (units["pricing_block_size"] <= 0).any():
        raise ValueError(f"{PRICING_UNITS_FILE}: every PricingBlockSize must be a positive number")
    return units
