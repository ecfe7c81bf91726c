"""The licensing answer, like for like: `licensing_options_monthly`.

What a customer can actually decide, per month, scope (a subscription, or the estate) and plan,
each option priced for the machines that plan covered (`plans.machine_plans_daily`):

- `billed`: the Defender for Servers charges on those machines, as billed;
- `hourly_list`: their billable hours at the plan's list rate of each day (trial days at 0);
- `seats_plus_hourly_remainder`: keep Defender for Servers and bring MDE seats: seats x the seat
  price + billable hours x (plan rate - MDE component rate). The like-for-like "per hour versus
  per seat" for the MDE licence: what the plan adds beyond MDE is still paid by the hour, and
  the MDE part is paid by seat (Microsoft discounts it for seat holders, from approval on);
- `seats_only`: endpoint protection by seats alone, Defender for Servers off: seats x the seat
  price; `eligibility_note` names what is lost (billing.LOST_WITHOUT_DEFENDER_FOR_SERVERS);
- `p1_instead_of_p2` (P2 rows): the same hours at the P1 rate; the note names what is lost.

Seat counts a licence allows (`seat_rule`): `per_machine`, one seat per covered machine with
billable time in the month; `reassign_<N>d`, seats fixed per block of calendar months at least
`seat_reassignment_days` long (90 days: calendar quarters): the covered machines billable at any
time in the block, the same count in every month of it. A plan that reassigns seats only at
block starts respects the reassignment rule, so that count is licensable, an upper bound of what
a careful licence manager needs; the peak of machines billable in one clock hour
(`fleet_comparison_monthly.peak_concurrent_machines`) is a lower bound no licence reaches. A
machine that changed plan within a month needs its seat in each plan's answer.

A month is `month_complete` once the scope's cost data reaches its last day (the subscription's
own last billed day, else the estate's), and for the estate once every subscription's is: the
month in progress never is. The estate rows add the chunks' parts (a machine is in one chunk),
and eligibility (the 60-server cap of Defender for Business servers) is judged on the estate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Final

import polars as pl

from transforms import billing
from transforms.contract import conform_view, order_free_sum, order_free_sum_or_null

_HOURS_PER_DAY: Final = 24
_KEYS: Final = ("month", "scope", "plan")
# An option part's columns added across chunks besides its keys and its seat blocks' count
# (`block_machines`, which `seat_block_parts` carries alone).
_PART_AMOUNTS: Final = (
    "machines",
    "billable_hours",
    "hourly_list",
    "mde_component_cost",
    "p1_cost",
    "billed",
)


@dataclass(frozen=True)
class LicensingTerms:
    """The settings the licensing answer rests on ([pricing]; each stated in the report)."""

    seat_term: str = "annual"
    monthly_term_uplift_percent: float = billing.MONTHLY_TERM_UPLIFT_PERCENT_DEFAULT
    seat_reassignment_days: int = billing.SEAT_REASSIGNMENT_DAYS_DEFAULT
    mde_component: Mapping[str, float] = field(default_factory=dict)
    seat_eligibility: Mapping[str, bool] = field(default_factory=dict)
    mde_benefit_from: date | None = None

    @property
    def seat_price_factor(self) -> float:
        """The seat price's multiplier: 1 for annual seats, 1 + the uplift for monthly ones."""
        if self.seat_term == "monthly":
            return 1 + self.monthly_term_uplift_percent / 100
        return 1.0

    @property
    def reassignment_months(self) -> int:
        """Calendar months per seat block: the fewest whole months covering the reassignment
        period (90 days: 3, a calendar quarter)."""
        return min(12, max(1, math.ceil(self.seat_reassignment_days / 30)))

    @property
    def reassign_rule(self) -> str:
        return f"reassign_{self.seat_reassignment_days}d"


def term_priced_book(price_book: pl.LazyFrame, terms: LicensingTerms) -> pl.LazyFrame:
    """The price book with seat rates at the configured term (monthly seats cost more)."""
    return price_book.with_columns(
        rate=pl.when(pl.col("kind") == "seat")
        .then(pl.col("rate") * terms.seat_price_factor)
        .otherwise("rate")
    )


def plan_rates(calendar: pl.LazyFrame, terms: LicensingTerms) -> pl.LazyFrame:
    """Per day of `calendar` and plan: the plan's hourly `rate`, the P1 rate (`p1_rate`) and the
    MDE component's rate (`component_rate`): `[pricing.mde_component]` where set, else the
    plan's rate less its MDATP benefit rate where the book lists one
    (billing.MDE_BENEFIT_OPTIONS), else the day's P1 rate (billing.MDE_COMPONENT_DEFAULT_OPTION).
    A rate the book lacks is null. One frame, so a machine day is priced with one join.
    """
    hourly = calendar.filter(pl.col("kind") == "hourly").select("usage_date", "option", "rate")
    p1 = hourly.filter(pl.col("option") == billing.MDE_COMPONENT_DEFAULT_OPTION).select(
        "usage_date", p1_rate="rate"
    )
    plans = pl.LazyFrame(
        {
            "plan": list(billing.PLANS),
            "option": [billing.HOURLY_OPTIONS[plan] for plan in billing.PLANS],
            "benefit_option": [billing.MDE_BENEFIT_OPTIONS[plan] for plan in billing.PLANS],
        }
    )
    configured = pl.col("plan").replace_strict(
        dict(terms.mde_component), default=None, return_dtype=pl.Float64
    )
    return (
        hourly.select("usage_date")
        .unique()
        .join(plans, how="cross")
        .join(hourly, on=["usage_date", "option"], how="left")
        .join(
            hourly.rename({"option": "benefit_option", "rate": "benefit_rate"}),
            on=["usage_date", "benefit_option"],
            how="left",
        )
        .join(p1, on="usage_date", how="left")
        .select(
            "usage_date",
            "plan",
            "rate",
            "p1_rate",
            component_rate=pl.coalesce(
                configured, pl.col("rate") - pl.col("benefit_rate"), pl.col("p1_rate")
            ),
        )
    )


def in_scopes(dtype: pl.DataType | type[pl.DataType] = pl.String) -> pl.Expr:
    """The scopes a row counts in: its subscription and the estate (null). A row of an unknown
    subscription counts in the estate only. `dtype`: the `subscription_id` column's (a
    dictionary code's, for one)."""
    estate = pl.lit(None, dtype=dtype)
    return (
        pl.when(pl.col("subscription_id").is_not_null())
        .then(pl.concat_list(pl.col("subscription_id"), estate))
        .otherwise(pl.concat_list(estate))
    )


def _block(month: pl.Expr, months_per_block: int) -> pl.Expr:
    """The index of `month`'s seat block (blocks of whole calendar months from January)."""
    return (month.dt.year().cast(pl.Int64) * 12 + month.dt.month().cast(pl.Int64) - 1) // (
        months_per_block
    )


def _covered_months(days: pl.LazyFrame) -> pl.LazyFrame:
    """Each covered machine-month of `days` (machine_key, subscription_id, month, plan): whether
    it had billable time, and its money (null when any day's is)."""
    money = ("billable_hours", "hourly_cost", "mde_component_cost", "p1_cost", "billed_cost")
    return (
        days.filter(pl.col("plan").is_not_null())
        .group_by("machine_key", "subscription_id", "month", "plan")
        .agg(
            billable=(pl.col("billable_hours") > 0).any(),
            **{
                name: pl.when(pl.col(name).is_null().any()).then(None).otherwise(pl.col(name).sum())
                for name in money
            },
        )
    )


def option_parts(days: pl.LazyFrame) -> pl.LazyFrame:
    """One chunk's additive part of `licensing_options_monthly`, per month, scope and plan.

    `days`: priced machine days (`comparison.PricedUsage.days`). Output: month, scope (null: the
    estate), plan, machines, billable_hours, hourly_list, mde_component_cost, p1_cost, billed.
    The seat blocks are counted at the estate step from the chunks' `block_members`
    (`seat_block_parts`): a block spans months, and an incremental build recomputes a chunk
    from its changed month, not from its block's first (`transforms.incremental`).
    """
    # Machine-months first, then scopes: the scope explosion doubles a few rows per machine and
    # month rather than every machine-day. A machine-month's few days are added in a fixed order
    # (the in-memory engine), the large scope groups as decimals (`order_free_sum`).
    covered = _covered_months(days).with_columns(scope=in_scopes()).explode("scope")
    billable = pl.col("billable")
    return (
        covered.group_by(_KEYS)
        .agg(
            machines=pl.col("machine_key").filter(billable).n_unique().cast(pl.Int64),
            billable_hours=order_free_sum_or_null("billable_hours"),
            hourly_list=order_free_sum_or_null("hourly_cost"),
            mde_component_cost=order_free_sum_or_null("mde_component_cost"),
            p1_cost=order_free_sum_or_null("p1_cost"),
            billed=order_free_sum_or_null("billed_cost"),
        )
        .with_columns(
            *(
                pl.col(name).fill_null(0.0)
                for name in ("billable_hours", "mde_component_cost", "p1_cost", "billed")
            ),
            # A month with no covered hours in this chunk costs nothing by the hour.
            hourly_list=pl.when(pl.col("billable_hours").is_null())
            .then(0.0)
            .otherwise("hourly_list"),
        )
        .select(*_KEYS, *_PART_AMOUNTS)
    )


def block_members(days: pl.LazyFrame, terms: LicensingTerms) -> pl.LazyFrame:
    """One chunk's covered machines with billable time in each seat block: month (the first
    month of the block the machine had billable time in), subscription_id, plan, machine_key.

    What its seat blocks count (`seat_block_parts`). One row per machine and block rather than
    per month (a third of the rows with blocks of a quarter), and still dated by a month: an
    incremental build keeps the rows of the months it copies and recomputes the rest, and a
    machine then listed twice in a block (a copied month and a recomputed one) is counted once.
    """
    return (
        _covered_months(days)
        .filter(pl.col("billable"))
        .with_columns(block=_block(pl.col("month"), terms.reassignment_months))
        .group_by("block", "subscription_id", "plan", "machine_key")
        .agg(pl.col("month").min())
        .select("month", "subscription_id", "plan", "machine_key")
    )


def seat_block_parts(
    members: Sequence[pl.LazyFrame],
    history_months: pl.LazyFrame,
    terms: LicensingTerms,
) -> pl.LazyFrame:
    """Option-part rows (`option_parts`' columns, zero but `block_machines`) that carry each
    seat block's machine count to every month of the block.

    `members`: each chunk's `block_members`; `history_months`: every month of the lake's
    history (column `month`), so a block's count reaches each of its months even where no
    machine was billable in it. A block counts the distinct machines billable at any time in
    it, per chunk (a machine is in one chunk), the chunks' counts added.
    """
    block = _block(pl.col("month"), terms.reassignment_months)
    listed = pl.concat(
        [frame.with_columns(chunk=pl.lit(index)) for index, frame in enumerate(members)]
    ).with_columns(block=block)
    distinct = pl.col("machine_key").n_unique().cast(pl.Int64).alias("block_machines")
    # A subscription's blocks and the estate's (`in_scopes`), counted apart rather than from
    # rows exploded into both scopes (twice the rows, ~130-character keys).
    per_scope = pl.concat(
        [
            listed.filter(pl.col("subscription_id").is_not_null())
            .group_by("chunk", "block", "plan", scope="subscription_id")
            .agg(distinct),
            listed.group_by("chunk", "block", "plan")
            .agg(distinct)
            .with_columns(scope=pl.lit(None, dtype=pl.String)),
        ],
        how="diagonal",
    )
    counted = per_scope.group_by("block", "scope", "plan").agg(pl.col("block_machines").sum())
    return (
        counted.join(history_months.select("month", block=block).unique(), on="block")
        .drop("block")
        .with_columns(
            machines=pl.lit(0, dtype=pl.Int64),
            **{name: pl.lit(0.0) for name in _PART_AMOUNTS if name != "machines"},
        )
        .select(*_KEYS, *_PART_AMOUNTS, "block_machines")
    )


def _seat_rows(
    base: pl.LazyFrame, seat_prices: pl.LazyFrame, terms: LicensingTerms
) -> pl.LazyFrame:
    """The two seat options under both seat rules, for every seat option of the book."""
    rules = pl.LazyFrame(
        {"seat_rule": ["per_machine", terms.reassign_rule]},
    )
    with_seats = (
        base.join(seat_prices, on="month", how="inner")
        .join(rules, how="cross")
        .with_columns(
            seats=pl.when(pl.col("seat_rule") == "per_machine")
            .then("machines")
            .otherwise("block_machines")
        )
    )
    seats_cost = pl.col("seats") * pl.col("seat_price")
    remainder = pl.col("hourly_list") - pl.col("mde_component_cost")
    return pl.concat(
        [
            with_seats.with_columns(
                option=pl.lit("seats_plus_hourly_remainder"), cost=seats_cost + remainder
            ),
            with_seats.with_columns(option=pl.lit("seats_only"), cost=seats_cost),
        ]
    )


def _eligibility(rows: pl.LazyFrame, terms: LicensingTerms) -> pl.LazyFrame:
    """`eligible` and `eligibility_note` of every row (see the module docstring)."""
    cap = billing.DEFENDER_BUSINESS_SERVERS_MAX
    estate_seats = (
        rows.filter(pl.col("scope").is_null() & (pl.col("option") == "seats_only"))
        .group_by("month", "seat_option", "seat_rule")
        .agg(estate_seats=pl.col("seats").sum())
    )
    allowed = pl.col("seat_option").replace_strict(
        dict(terms.seat_eligibility), default=True, return_dtype=pl.Boolean
    )
    over_cap = (pl.col("seat_option") == "defender_business_servers") & (
        pl.col("estate_seats") > cap
    )
    requirement = pl.col("seat_option").replace_strict(
        billing.SEAT_REQUIREMENTS, default="", return_dtype=pl.String
    )
    lost = pl.col("plan").replace_strict(
        billing.LOST_WITHOUT_DEFENDER_FOR_SERVERS, default="", return_dtype=pl.String
    )
    seat_note = pl.concat_str(
        pl.when(pl.col("option") == "seats_only").then(
            pl.concat_str(pl.lit("switches Defender for Servers off: loses "), lost, pl.lit("; "))
        ),
        pl.when(pl.col("option") == "seats_plus_hourly_remainder").then(
            pl.lit(
                "assumes Microsoft discounts the MDE part for seat holders (from approval, "
                "not backdated); "
            )
        ),
        pl.lit("seat "),
        requirement,
        pl.when(~allowed).then(pl.lit("; not eligible per [pricing.seat_eligibility]")),
        pl.when(over_cap).then(
            pl.format("; {} servers exceed the cap of {}", "estate_seats", pl.lit(cap))
        ),
        ignore_nulls=True,
    )
    is_seat = pl.col("seat_option").is_not_null()
    return rows.join(
        estate_seats, on=["month", "seat_option", "seat_rule"], how="left", nulls_equal=True
    ).with_columns(
        eligible=pl.when(is_seat).then(allowed & ~over_cap.fill_null(False)).otherwise(True),
        eligibility_note=pl.when(is_seat)
        .then(seat_note)
        .when(pl.col("option") == "p1_instead_of_p2")
        .then(pl.concat_str(pl.lit("keeps MDE by the hour; loses "), lost))
        .when(pl.col("option") == "hourly_list")
        .then(pl.lit("list rates; the bill may carry discounts or trial days")),
    )


def finish_options(
    parts: pl.LazyFrame,
    seat_prices: pl.LazyFrame,
    cut_offs: pl.LazyFrame,
    terms: LicensingTerms,
    *,
    currency: str,
) -> pl.LazyFrame:
    """The `licensing_options_monthly` view from every chunk's `option_parts`.

    `seat_prices`: month, seat_option, seat_price (term-adjusted, the rate of the month's first
    day); `cut_offs`: scope (null: the estate), billed_through (the scope's last billed day).
    """
    base = parts.group_by(_KEYS).agg(
        pl.col("machines").sum(),
        pl.col("block_machines").sum(),
        order_free_sum("billable_hours"),
        pl.when(pl.col("hourly_list").is_null().any())
        .then(None)
        .otherwise(order_free_sum("hourly_list"))
        .alias("hourly_list"),
        pl.when(pl.col("mde_component_cost").is_null().any())
        .then(None)
        .otherwise(order_free_sum("mde_component_cost"))
        .alias("mde_component_cost"),
        order_free_sum("p1_cost"),
        order_free_sum("billed"),
    )
    hourly = pl.concat(
        [
            base.with_columns(option=pl.lit("billed"), cost="billed"),
            base.with_columns(option=pl.lit("hourly_list"), cost="hourly_list"),
            base.filter(pl.col("plan") == "P2").with_columns(
                option=pl.lit("p1_instead_of_p2"), cost="p1_cost"
            ),
        ]
    ).with_columns(
        seat_option=pl.lit(None, dtype=pl.String),
        seat_rule=pl.lit(None, dtype=pl.String),
        seats=pl.lit(None, dtype=pl.Int64),
        seat_price=pl.lit(None, dtype=pl.Float64),
    )
    seat = _seat_rows(base, seat_prices, terms)
    rows = pl.concat([hourly, seat], how="diagonal_relaxed")
    estate_cut_off = cut_offs.filter(pl.col("scope").is_null()).select(
        estate_billed_through="billed_through"
    )
    month_end = pl.col("month").dt.month_end()
    reached = (month_end <= pl.coalesce("billed_through", "estate_billed_through")).fill_null(False)
    # The estate's month is complete once every subscription's is.
    every_subscription = pl.col("reached").filter(pl.col("scope").is_not_null()).all().over("month")
    view = (
        _eligibility(rows, terms)
        .join(cut_offs, on="scope", how="left", nulls_equal=True)
        .join(estate_cut_off, how="cross")
        .with_columns(reached=reached)
        .with_columns(
            reached=pl.when(pl.col("scope").is_null())
            .then(pl.col("reached") & every_subscription)
            .otherwise("reached")
        )
        .select(
            "month",
            subscription_id="scope",
            plan="plan",
            option="option",
            seat_option="seat_option",
            seat_rule="seat_rule",
            machines="machines",
            seats="seats",
            billable_hours="billable_hours",
            cost="cost",
            billed="billed",
            cost_vs_billed=pl.col("cost") - pl.col("billed"),
            month_complete="reached",
            eligible="eligible",
            eligibility_note="eligibility_note",
            currency=pl.lit(currency.upper()),
        )
        .sort(
            "month",
            "subscription_id",
            "plan",
            "option",
            "seat_option",
            "seat_rule",
            nulls_last=True,
        )
    )
    return conform_view(view, "licensing_options_monthly")


def cut_offs(defender_charges_daily: pl.LazyFrame) -> pl.LazyFrame:
    """Each subscription's last billed day in this part (column `scope`). The estate's own
    cut-off is the estate's last billed day (`marts.EstateFacts.billed_through`), not a part's."""
    return (
        defender_charges_daily.filter(pl.col("subscription_id").is_not_null())
        .group_by(scope="subscription_id")
        .agg(billed_through=pl.col("usage_date").max())
    )
