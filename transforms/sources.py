"""One source of truth per charge: which cost rows of the lake a build counts.

The lake may hold the same charges more than once, and adding them would double the bill:
- a month collected from the Query API and also imported from an export file;
- the same charges in a FOCUS export and in an EA / MCA cost-details export;
- an export imported, then a restated export of the same month imported later.

So a build counts, for each *owner* (the subscription a row was billed under, else its
sub-account, else its billing scope: `charge_owner`), month and *cost view*, the rows of one
delivery only. A delivery is one lake partition file. The cost views are `actual` (what was
billed) and `amortized` (commitments spread over their term); ActualCost rows state the first,
AmortizedCost rows the second, and FOCUS rows (`FocusCost`, with BilledCost and EffectiveCost)
both. The precedence, `PRECEDENCE` below:

1. exports over the Query API: an export is the invoice-grade bulk record of a billing
   account, and the Query API is re-asked every day, so "newest" would always pick it;
2. among deliveries of one kind, the newest ingestion (`ingested_at`, the import's or the
   collection's instant) wins: a restated export imported later replaces the earlier one;
3. two deliveries of equal rank that state one view (for example a FOCUS and an EA file
   imported together) are refused, naming both: no rule can tell which one is right.

A delivery is taken whole for an (owner, month) or left out whole; one that states two views
(FOCUS) is left out when either view is already stated by a delivery ranked above it, so a
view's rows never come from two deliveries. What was left out is listed (`Resolution.notes`)
for the build's output and `build_info`. Pure: frames in, decisions out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import polars as pl

from transforms.charges import cost_row_subscription, is_billed_defender_row
from transforms.costs import AMOUNT_COLUMNS, implausible_amount

PRECEDENCE: Final = (
    "one delivery per (subscription, month, cost view): exports over the Query API, then the "
    "newest ingestion; FOCUS rows state both the actual and the amortized view; two deliveries "
    "of equal rank for one view are refused"
)
# The cost views each cost type states.
COST_VIEWS: Final = {
    "ActualCost": frozenset({"actual"}),
    "AmortizedCost": frozenset({"amortized"}),
    "FocusCost": frozenset({"actual", "amortized"}),
}
UNASSIGNED: Final = "unassigned"
# Columns of the deliveries frame (`deliveries`).
DELIVERY_KEY: Final = ("file", "owner", "month", "cost_source", "cost_type")


class CostOverlapError(ValueError):
    """Two deliveries of equal rank state one cost view of one owner and month."""


def charge_owner() -> pl.Expr:
    """What a raw cost row's charges belong to, the unit one delivery states the whole truth
    for: the lower-case subscription it was billed under, else its sub-account, else its
    billing scope; a row of none (a file naming no account, scope `file:<name>`) is
    `unassigned`, whatever the file was called."""
    scope = pl.col("scope").str.strip_chars().str.to_lowercase()
    return pl.coalesce(
        cost_row_subscription(),
        pl.col("sub_account_id").str.strip_chars().str.to_lowercase(),
        pl.when(~scope.str.starts_with("file:")).then(scope),
        pl.lit(UNASSIGNED),
    )


def survey(costs_with_file: pl.LazyFrame) -> pl.LazyFrame:
    """What a build must know of the lake's cost rows before it counts any, in one pass over
    rows that carry their partition file in column `file`: per delivery key
    (`DELIVERY_KEY`), billing currency and whether the rows are billed Defender charges
    (`defender`), the newest `ingested_at`, the row count and how many rows hold an amount that
    is no amount (`implausible`: NaN, infinite, absurd; `transforms.costs.implausible_amount`),
    and `content`: a fingerprint of the rows' values but when they were collected, the same
    whatever their order (their hashes added, wrapping), so a file collected again with the
    same rows is told apart from one that restated some (`flows.incremental`).
    """
    return (
        costs_with_file.with_columns(
            content=pl.struct(pl.exclude("file", "ingested_at")).hash(),
            owner=charge_owner(),
            month=pl.col("charge_period_start").dt.strftime("%Y-%m"),
            defender=is_billed_defender_row(),
            implausible=pl.any_horizontal(
                implausible_amount(pl.col(column)) for column in AMOUNT_COLUMNS
            ),
        )
        .group_by(*DELIVERY_KEY, "billing_currency", "defender")
        .agg(
            pl.col("ingested_at").max(),
            pl.len().alias("rows"),
            pl.col("implausible").sum(),
            pl.col("content").sum(),
        )
    )


def deliveries(surveyed: pl.DataFrame) -> pl.DataFrame:
    """One row per delivery key (`DELIVERY_KEY`) of a `survey`: newest `ingested_at`, rows."""
    return surveyed.group_by(DELIVERY_KEY).agg(pl.col("ingested_at").max(), pl.col("rows").sum())


def billed_currencies(
    surveyed: pl.DataFrame, left_out: dict[str, frozenset[tuple[str, str]]], months: Sequence[str]
) -> dict[str, list[str]]:
    """The owners of the billed Defender charges a build counts in `months`, by currency."""
    counted = surveyed.filter(pl.col("defender") & pl.col("month").is_in(list(months)))
    found: dict[str, set[str]] = defaultdict(set)
    for file, owner, month, currency in counted.select(
        "file", "owner", "month", "billing_currency"
    ).iter_rows():
        if (owner, month) not in left_out.get(file, frozenset()):
            found[currency].add(owner)
    return {currency: sorted(owners) for currency, owners in sorted(found.items())}


@dataclass(frozen=True)
class Candidate:
    file: str
    cost_source: str
    cost_type: str
    ingested_at: datetime
    rows: int

    @property
    def rank(self) -> tuple[bool, datetime]:
        return (self.cost_source == "export", self.ingested_at)

    @property
    def views(self) -> frozenset[str]:
        return COST_VIEWS.get(self.cost_type, frozenset({self.cost_type}))

    def describe(self) -> str:
        return (
            f"{self.cost_source} {self.cost_type} ingested {self.ingested_at:%Y-%m-%d %H:%M:%S} "
            f"({self.rows} rows, {self.file})"
        )


@dataclass(frozen=True)
class Resolution:
    """What a build counts: `left_out` maps a partition file to the (owner, month) pairs of it
    that are not counted; `notes` says, per overlap, what was kept and what left out."""

    left_out: dict[str, frozenset[tuple[str, str]]]
    notes: tuple[str, ...]


def resolve(found: pl.DataFrame) -> Resolution:
    """Pick one delivery per (owner, month, cost view) from `deliveries`, by `PRECEDENCE`;
    raises CostOverlapError naming both files for a tie."""
    by_owner_month: dict[tuple[str, str], list[Candidate]] = defaultdict(list)
    for row in found.sort(DELIVERY_KEY).iter_rows(named=True):
        by_owner_month[(row["owner"], row["month"])].append(
            Candidate(
                row["file"], row["cost_source"], row["cost_type"], row["ingested_at"], row["rows"]
            )
        )
    left_out: dict[str, set[tuple[str, str]]] = defaultdict(set)
    notes: list[str] = []
    for (owner, month), candidates in sorted(by_owner_month.items()):
        if len(candidates) == 1:
            continue
        kept: list[Candidate] = []
        dropped: list[Candidate] = []
        for candidate in sorted(candidates, key=lambda c: c.rank, reverse=True):
            stating = [other for other in kept if other.views & candidate.views]
            tied = [other for other in stating if other.rank == candidate.rank]
            if tied:
                raise CostOverlapError(
                    f"{tied[0].file} and {candidate.file} both state {owner}'s "
                    f"{'/'.join(sorted(tied[0].views & candidate.views))} cost for {month}, "
                    "ingested at the same instant: no precedence tells which is right - delete "
                    "one of the two partitions, or import the right export again on its own"
                )
            (dropped if stating else kept).append(candidate)
        for candidate in dropped:
            left_out[candidate.file].add((owner, month))
        if dropped:
            notes.append(
                f"{month} {owner}: counted {'; '.join(c.describe() for c in kept)}; left out "
                f"{'; '.join(c.describe() for c in dropped)}"
            )
    return Resolution({file: frozenset(pairs) for file, pairs in left_out.items()}, tuple(notes))


def without(
    costs_with_file: pl.LazyFrame, left_out: dict[str, frozenset[tuple[str, str]]]
) -> pl.LazyFrame:
    """`costs_with_file` (raw cost rows with their partition file in `file`) without the rows
    `left_out` names, and without the `file` column."""
    if not left_out:
        return costs_with_file.drop("file")
    keys = sorted(
        f"{file}\0{owner}\0{month}" for file, pairs in left_out.items() for owner, month in pairs
    )
    key = pl.concat_str(
        pl.col("file"),
        pl.lit("\0"),
        charge_owner(),
        pl.lit("\0"),
        pl.col("charge_period_start").dt.strftime("%Y-%m"),
    )
    return costs_with_file.filter(~key.is_in(keys)).drop("file")
