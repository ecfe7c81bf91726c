"""Per-hour billing versus per-seat licensing, per machine and per fleet, month by month.

Definitions (DESIGN.md "The warehouse contract"):

- A machine is its `machine_key` (a VM moved to another resource group or subscription is one
  machine; its row shows the id it had last that month).
- Its plan is a fact of each day (`plans.machine_plans_daily`). The month's row shows the plan
  on most of its billable days (then most covered days; a tie goes to P2) with `plan_days_p1` /
  `plan_days_p2` beside it. A machine covered on no day of the month is listed with plan,
  hourly_cost, per_hour_savings, break_even_utilization and cheaper null (there is no hourly
  price to compare), and counts in no fleet figure (the `defender_off` finding reports it).
- `hourly_cost` prices each covered day's billable hours at that day's plan and the rate in
  force that day (trial days at 0; uncovered days not at all), so a plan change or a price change
  within a month is priced day by day. A covered day with billable hours and no rate in the
  book makes the month's hourly_cost null rather than silently low.
- `seat_cost` is one seat of `seat_option` for the month, at the rate in force on the month's
  first day (a seat is bought for a whole month, as `pricing.book.seat_price_for_month` does).
- `break_even_utilization` = seat_cost / (hourly rate x hours_in_month), the hourly rate summed
  day by day (rate x 24 for each day of the month).
- Money from charges (`billed_cost`) counts only charges in `currency`.
- Fleet seats: `machines_distinct` counts machines with billable time on covered days in the
  month; `peak_concurrent_machines` the most machines billable in the same clock hour of a
  covered day (a machine billable for any part of an hour needs its seat that hour), computed
  by a sweep over +1 / -1 at each machine's clock-hour spans.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Final

import polars as pl

from transforms import billing
from transforms.contract import (
    conform_view,
    exact_sum,
    exact_sum_or_null,
    order_free_sum,
    order_free_sum_or_null,
)
from transforms.machines import machine_kind_of, machine_name_of, run_index
from transforms.options import LicensingTerms, in_scopes, plan_rates
from transforms.power import clock_hour_spans

_HOURS_PER_DAY: Final = 24


class MissingPriceError(ValueError):
    """The price book cannot price the comparison that was asked for."""


def _require_prices(price_book: pl.LazyFrame, seat_option: str, currency: str) -> None:
    """Refuse a seat option or currency the book has no price for (the book is a few rows)."""
    held = price_book.select("option", "kind", "currency").unique().collect()
    seats = held.filter((pl.col("option") == seat_option) & (pl.col("kind") == "seat"))
    if seats.is_empty():
        known = ", ".join(sorted(held.filter(pl.col("kind") == "seat")["option"].unique()))
        raise MissingPriceError(
            f"seat option {seat_option!r} is not in the price book (seat options: {known}); "
            "set [pricing] seat_option to one of them or add it to a [pricing] book file"
        )
    if seats.filter(pl.col("currency") == currency).is_empty():
        raise MissingPriceError(
            f"the price book has no {currency} price for {seat_option}: "
            f"set [pricing.seat_prices] {seat_option} in {currency}"
        )
    hourly = held.filter((pl.col("kind") == "hourly") & (pl.col("currency") == currency))
    if hourly.is_empty():
        raise MissingPriceError(
            f"the price book has no {currency} hourly rate for Defender for Servers: run "
            f'`mdecost prices refresh` with [pricing] currency = "{currency}"'
        )


def _month(date_column: str) -> pl.Expr:
    return pl.col(date_column).dt.month_start().alias("month")


def price_calendar(price_book: pl.LazyFrame, months: pl.LazyFrame, currency: str) -> pl.LazyFrame:
    """The rate of every option in `currency` on every day of `months` (column `month`; a month
    listed twice counts once).

    Output: option, kind, usage_date, month, rate. A day no book entry covers has no row.
    """
    days = (
        months.select("month")
        .unique()
        .select("month", usage_date=pl.date_ranges(pl.col("month"), pl.col("month").dt.month_end()))
        .explode("usage_date")
    )
    book = price_book.filter(pl.col("currency") == currency).select(
        "option", "kind", "rate", "effective_from", "effective_to"
    )
    return (
        days.join(book, how="cross")
        .filter(
            (pl.col("usage_date") >= pl.col("effective_from"))
            & (pl.col("effective_to").is_null() | (pl.col("usage_date") < pl.col("effective_to")))
        )
        .group_by("option", "kind", "usage_date", "month")
        .agg(rate=pl.col("rate").sort_by("effective_from").last())
    )


def _seat_prices(calendar: pl.LazyFrame, months: pl.LazyFrame, seat_option: str) -> pl.LazyFrame:
    """Per month: the seat price (the rate in force on its first day) and days_in_month."""
    month_days = months.select(
        "month", days_in_month=pl.col("month").dt.month_end().dt.day().cast(pl.Int64)
    ).unique()
    seat = (
        calendar.filter((pl.col("option") == seat_option) & (pl.col("kind") == "seat"))
        .filter(pl.col("usage_date") == pl.col("month"))
        .select("month", seat_price="rate")
    )
    return month_days.join(seat, on="month", how="left")


def _machine_days(machines: pl.LazyFrame, machine_days: pl.LazyFrame) -> pl.LazyFrame:
    """One row per machine id and day with billable hours or charges in the currency priced
    (`plans.machine_days`).

    Columns: usage_date, month, resource_id, subscription_id, machine_key, billable_hours,
    billed_hours and billed_cost (charges in the currency; 0 when none), and that day's `plan`
    and `trial`.
    """
    keys = machines.select("resource_id", "machine_key")
    return (
        machine_days.filter(pl.col("billable_hours").is_not_null() | pl.col("charged_in_currency"))
        .join(keys, on="resource_id", how="left")
        .select(
            "usage_date",
            _month("usage_date"),
            "resource_id",
            subscription_id=pl.coalesce("machine_subscription_id", "charged_subscription_id"),
            machine_key=pl.coalesce("machine_key", "resource_id"),
            billable_hours=pl.col("billable_hours").fill_null(0.0),
            billed_hours="billed_hours",
            billed_cost="billed_cost",
            plan="plan",
            trial="trial",
        )
    )


def machine_plans_monthly(machine_days: pl.LazyFrame) -> pl.LazyFrame:
    """Each machine's plans per month from its days (`_machine_days`): machine_key, month,
    plan (shown: the plan on most billable days, then most covered days, a tie to P2; null =
    covered on no day), plan_days_p1, plan_days_p2, trial_days, and `days` / `covered_days`
    (days it was seen, days a plan covered it). Days, not machine-id days: a moved machine's
    two ids on one day count once. One pass over the days: each condition's days are a bit mask
    of days of the month (bit d for day d), OR-ed over the group and counted, so a day seen on two
    ids sets its bit once, without a distinct count per condition."""
    plan = pl.col("plan")
    billable = pl.col("billable_hours") > 0
    day_bit = pl.lit(2, dtype=pl.Int64).pow(pl.col("usage_date").dt.day().cast(pl.Int64))

    def days_of(condition: pl.Expr) -> pl.Expr:
        return (
            pl.when(condition)
            .then(day_bit)
            .otherwise(0)
            .bitwise_or()
            .bitwise_count_ones()
            .cast(pl.Int64)
        )

    counted = machine_days.group_by("machine_key", "month").agg(
        days=days_of(pl.lit(True)),
        covered_days=days_of(plan.is_not_null()),
        plan_days_p1=days_of(plan == "P1"),
        plan_days_p2=days_of(plan == "P2"),
        billable_days_p1=days_of((plan == "P1") & billable),
        billable_days_p2=days_of((plan == "P2") & billable),
        trial_days=days_of(plan.is_not_null() & pl.col("trial")),
    )
    # P2 wins on more billable days, then on more covered days, and on a tie.
    p2_first = (pl.col("billable_days_p2") > pl.col("billable_days_p1")) | (
        (pl.col("billable_days_p2") == pl.col("billable_days_p1"))
        & (pl.col("plan_days_p2") >= pl.col("plan_days_p1"))
    )
    shown = (
        pl.when((pl.col("plan_days_p2") > 0) & (p2_first | (pl.col("plan_days_p1") == 0)))
        .then(pl.lit("P2"))
        .when(pl.col("plan_days_p1") > 0)
        .then(pl.lit("P1"))
    )
    return counted.select(
        "machine_key",
        "month",
        plan=shown,
        plan_days_p1="plan_days_p1",
        plan_days_p2="plan_days_p2",
        trial_days="trial_days",
        days="days",
        covered_days="covered_days",
    )


def _priced_days(machine_days: pl.LazyFrame, rates: pl.LazyFrame) -> pl.LazyFrame:
    """Machine days priced with their day's plan rates (`options.plan_rates`): `hourly_cost`
    (billable hours at the plan's rate; 0 on an uncovered or trial day, null where a covered
    day has no rate in the book), `mde_component_cost` (at the MDE component rate) and
    `p1_cost` (at the P1 rate), both 0 on an uncovered or trial day."""
    paid = pl.col("plan").is_not_null() & ~pl.col("trial")
    return machine_days.join(rates, on=["usage_date", "plan"], how="left").with_columns(
        hourly_cost=pl.when(~paid | (pl.col("billable_hours") == 0))
        .then(pl.lit(0.0))
        .otherwise(pl.col("billable_hours") * pl.col("rate")),
        mde_component_cost=pl.when(paid)
        .then(pl.col("billable_hours") * pl.col("component_rate"))
        .otherwise(0.0),
        p1_cost=pl.when(paid).then(pl.col("billable_hours") * pl.col("p1_rate")).otherwise(0.0),
    )


def _months_of(machine_days: pl.LazyFrame, defender_charges_daily: pl.LazyFrame) -> pl.LazyFrame:
    return pl.concat(
        [
            machine_days.select(_month("usage_date")),
            defender_charges_daily.select(_month("usage_date")),
        ]
    ).unique()


def seat_prices_monthly(
    price_book: pl.LazyFrame, months: pl.LazyFrame, *, seat_option: str, currency: str
) -> pl.LazyFrame:
    """Per month of `months` (column `month`, first days): `seat_price` of one `seat_option`
    seat in `currency` (null where the book has none) and `days_in_month`."""
    months = months.select("month").unique()
    calendar = price_calendar(price_book, months, currency.upper())
    return _seat_prices(calendar, months, seat_option)


@dataclass(frozen=True)
class PricedUsage:
    """What both comparison views price from; the build computes it once and shares it.

    `days`: machine days with that day's plan, `trial`, its rates (`options.plan_rates`),
    `hourly_cost`, `mde_component_cost` and `p1_cost`;
    `plans`: each machine's plans per month (`machine_plans_monthly`); `seat_prices` per month;
    `full_month_component`: per plan and month, the MDE component of a whole month billable.
    """

    days: pl.LazyFrame
    plans: pl.LazyFrame
    seat_prices: pl.LazyFrame
    full_month_component: pl.LazyFrame


def priced_usage(
    machines: pl.LazyFrame,
    machine_days: pl.LazyFrame,
    defender_charges_daily: pl.LazyFrame,
    price_book: pl.LazyFrame,
    *,
    seat_option: str,
    currency: str,
    terms: LicensingTerms | None = None,
) -> PricedUsage:
    """Price the machine days (`plans.machine_days`, made for the same `currency`). Raises
    MissingPriceError when the book has no price for `seat_option` or no hourly rate in
    `currency`."""
    currency = currency.upper()
    _require_prices(price_book, seat_option, currency)
    months = _months_of(machine_days, defender_charges_daily)
    calendar = price_calendar(price_book, months, currency)
    seat_prices = _seat_prices(calendar, months, seat_option)
    rates = plan_rates(calendar, terms or LicensingTerms())
    full_month_component = (
        rates.with_columns(_month("usage_date"))
        .group_by("plan", "month")
        .agg(
            full_month_component=(pl.col("component_rate") * _HOURS_PER_DAY).sum(),
            days_priced=pl.col("component_rate").count(),
        )
        .join(months.select("month").unique(), on="month")
        .select(
            "plan",
            "month",
            full_month_component=pl.when(
                pl.col("days_priced") == pl.col("month").dt.month_end().dt.day().cast(pl.UInt32)
            ).then("full_month_component"),
        )
    )
    days = _machine_days(machines, machine_days)
    return PricedUsage(
        _priced_days(days, rates),
        machine_plans_monthly(days),
        seat_prices,
        full_month_component,
    )


def licensing_comparison_monthly(
    machines: pl.LazyFrame,
    machine_days: pl.LazyFrame,
    defender_charges_daily: pl.LazyFrame,
    price_book: pl.LazyFrame,
    *,
    seat_option: str,
    currency: str,
) -> pl.LazyFrame:
    """The `licensing_comparison_monthly` view: per machine and month, per hour versus per seat.

    Inputs are the `machines` view, the machine days (`plans.machine_days`, made for
    `currency`), the `defender_charges_daily` view and the price book (schemas.PRICE_BOOK). Raises
    MissingPriceError when the book has no price for `seat_option` or no hourly rate in
    `currency`.
    """
    usage = priced_usage(
        machines,
        machine_days,
        defender_charges_daily,
        price_book,
        seat_option=seat_option,
        currency=currency,
    )
    return licensing_comparison_from(machines, usage, seat_option=seat_option, currency=currency)


def licensing_comparison_from(
    machines: pl.LazyFrame, usage: PricedUsage, *, seat_option: str, currency: str
) -> pl.LazyFrame:
    """`licensing_comparison_monthly` from the `machines` view and its `priced_usage`."""
    currency = currency.upper()
    names = machines.select("resource_id", "subscription_id", "machine_name", "machine_kind")
    last_day = pl.col("usage_date") == pl.col("usage_date").max()
    per_machine = (
        usage.days.group_by("machine_key", "month")
        .agg(
            order_free_sum("billable_hours"),
            order_free_sum("billed_hours"),
            order_free_sum("billed_cost"),
            order_free_sum_or_null("hourly_cost").alias("hourly_cost"),
            order_free_sum_or_null("mde_component_cost").alias("mde_component_cost"),
            resource_id=pl.col("resource_id").filter(last_day).max(),
            fallback_subscription_id=pl.col("subscription_id").filter(last_day).max(),
        )
        .join(names, on="resource_id", how="left")
        .join(usage.plans, on=["machine_key", "month"], how="left")
        .join(usage.seat_prices, on="month", how="left")
        .join(usage.full_month_component, on=["plan", "month"], how="left")
    )
    hours_in_month = pl.col("days_in_month") * _HOURS_PER_DAY
    covered = pl.col("plan").is_not_null()
    view = per_machine.select(
        "month",
        subscription_id=pl.coalesce("subscription_id", "fallback_subscription_id"),
        resource_id="resource_id",
        machine_key="machine_key",
        machine_name=pl.coalesce("machine_name", machine_name_of(pl.col("resource_id"))),
        machine_kind=pl.coalesce("machine_kind", machine_kind_of(pl.col("resource_id"))),
        plan="plan",
        plan_days_p1="plan_days_p1",
        plan_days_p2="plan_days_p2",
        trial_days="trial_days",
        billable_hours="billable_hours",
        hours_in_month=hours_in_month,
        utilization=pl.col("billable_hours") / hours_in_month,
        billed_hours="billed_hours",
        billed_cost="billed_cost",
        hourly_cost=pl.when(covered).then("hourly_cost"),
        mde_component_cost=pl.when(covered).then("mde_component_cost"),
        seat_option=pl.lit(seat_option),
        seat_cost="seat_price",
        per_hour_savings=pl.when(covered).then(pl.col("seat_price") - pl.col("mde_component_cost")),
        break_even_utilization=pl.when(covered).then(
            pl.col("seat_price") / pl.col("full_month_component")
        ),
        cheaper=pl.when(
            covered
            & pl.col("mde_component_cost").is_not_null()
            & pl.col("seat_price").is_not_null()
        ).then(
            pl.when(pl.col("mde_component_cost") <= pl.col("seat_price"))
            .then(pl.lit("per_hour"))
            .otherwise(pl.lit("per_seat"))
        ),
        currency=pl.lit(currency),
    ).sort("month", "subscription_id", "resource_id")
    return conform_view(view, "licensing_comparison_monthly")


def _covered_runs(days: pl.LazyFrame) -> pl.LazyFrame:
    """Each machine's runs of consecutive covered days as [start_at, end_at) instants: few per
    machine (one for a machine covered all along), so spans meet them cheaply."""
    day_start = pl.col("usage_date").cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    new_run = (pl.col("usage_date") - pl.col("usage_date").shift(1)).dt.total_days() != 1
    return (
        days.filter(pl.col("plan").is_not_null())
        .select("machine_key", "usage_date")
        .unique()
        .sort("machine_key", "usage_date")
        .with_columns(key_run=run_index("machine_key"))
        .with_columns(run=new_run.fill_null(True).cast(pl.Int64).cum_sum().over("key_run"))
        .group_by("machine_key", "run")
        .agg(run_start=day_start.min(), run_end=day_start.max() + timedelta(days=1))
        .drop("run")
    )


def _within(spans: pl.LazyFrame, runs: pl.LazyFrame) -> pl.LazyFrame:
    """The parts of [start_at, end_at) spans inside their machine's covered runs (both keyed by
    `machine_code`)."""
    return (
        spans.join(runs, on="machine_code", how="inner")
        .with_columns(
            start_at=pl.max_horizontal("start_at", "run_start"),
            end_at=pl.min_horizontal("end_at", "run_end"),
        )
        .filter(pl.col("start_at") < pl.col("end_at"))
        .drop("run_start", "run_end")
    )


def split_by_month(spans: pl.LazyFrame) -> pl.LazyFrame:
    """Split [start_at, end_at) spans at UTC month starts: adds `month`, clips the bounds."""
    month_start = pl.col("month").cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    next_month_start = (
        (pl.col("month").dt.month_end() + timedelta(days=1))
        .cast(pl.Datetime("us"))
        .dt.replace_time_zone("UTC")
    )
    return (
        spans.with_columns(
            month=pl.date_ranges(
                pl.col("start_at").dt.date().dt.month_start(),
                (pl.col("end_at") - pl.duration(microseconds=1)).dt.date().dt.month_start(),
                interval="1mo",
            )
        )
        .explode("month")
        .with_columns(
            start_at=pl.max_horizontal("start_at", month_start),
            end_at=pl.min_horizontal("end_at", next_month_start),
        )
    )


def _concurrency_deltas(spans: pl.LazyFrame, scope: tuple[str, ...]) -> pl.LazyFrame:
    """+1 at each span's start, -1 at its end, netted per scope, month and instant."""
    keys = (*scope, "month")
    return (
        pl.concat(
            [
                spans.select(*keys, at="start_at", delta=pl.lit(1, dtype=pl.Int64)),
                spans.select(*keys, at="end_at", delta=pl.lit(-1, dtype=pl.Int64)),
            ]
        )
        .group_by(*keys, "at")
        .agg(pl.col("delta").sum())
    )


def _peaks(deltas: pl.LazyFrame, scope: tuple[str, ...]) -> pl.LazyFrame:
    """Most spans open at once per scope and month: the running sum of the deltas in time order
    (an end and a start at the same instant net out first, as `_concurrency_deltas` nets them)."""
    keys = (*scope, "month")
    return (
        deltas.group_by(*keys, "at")
        .agg(pl.col("delta").sum())
        .sort(*keys, "at")
        .with_columns(key_run=run_index(*keys))
        .with_columns(level=pl.col("delta").cum_sum().over("key_run"))
        .group_by(keys)
        .agg(peak_concurrent_machines=pl.col("level").max())
    )


@dataclass(frozen=True)
class FleetPart:
    """The fleet comparison of a set of whole subscriptions, before it meets the others.

    `rows`: per subscription and month the finished figures without seat costs, plus the
    part's share of the estate (subscription_id null: machines, hours and costs, which add up
    across parts; its peak is not). `estate_deltas`: the +1/-1 concurrency deltas of the part's
    covered machines per month and instant, which add up across parts into the estate's peak.
    """

    rows: pl.LazyFrame
    estate_deltas: pl.LazyFrame


def concurrency_deltas(
    machines: pl.LazyFrame, power_intervals: pl.LazyFrame, usage: PricedUsage
) -> pl.LazyFrame:
    """The +1 / -1 deltas of the covered machines' clock-hour spans per scope (a subscription,
    null for the estate), month and instant: `fleet_part` reads its peaks from them, and the
    estate's part of them adds up across parts. The build materialises them once for both.

    Spans are merged and sorted by dictionary codes of the machine key and the scope (integers:
    any order of the machines serves, as long as each machine's spans are in time order), and
    the scope's id is joined back per delta at the end.
    """
    code = pl.col("machine_key").cast(pl.Categorical).to_physical()
    # Codes are taken once per machine (its subscription's code standing for the subscription,
    # as `in_scopes` reads it), and carried to its spans by the join.
    keyed = machines.select(
        "resource_id",
        machine_code=code,
        subscription_id=pl.col("subscription_id").cast(pl.Categorical).to_physical(),
    )
    scopes = machines.select(
        scope_code=pl.col("subscription_id").cast(pl.Categorical).to_physical(),
        scope="subscription_id",
    ).unique()
    # Clock-hour spans per machine and scope: the estate merges a moved machine's two ids.
    spans = (
        power_intervals.filter(pl.col("billable"))
        .join(keyed, on="resource_id")
        .with_columns(scope_code=in_scopes(pl.UInt32))
        .explode("scope_code")
    )
    # A machine covered every day of a month it was seen keeps its spans whole; only the few
    # months covered on some days are clipped to the covered runs of those days.
    monthly_spans = split_by_month(clock_hour_spans(spans, ("scope_code", "machine_code")))
    covered_months = usage.plans.filter(pl.col("covered_days") > 0).with_columns(machine_code=code)
    whole = covered_months.filter(pl.col("covered_days") == pl.col("days"))
    partly = covered_months.filter(pl.col("covered_days") < pl.col("days"))
    partly_days = usage.days.join(partly, on=["machine_key", "month"], how="semi")
    covered_spans = pl.concat(
        [
            monthly_spans.join(whole, on=["machine_code", "month"], how="semi"),
            _within(
                monthly_spans.join(partly, on=["machine_code", "month"], how="semi"),
                _covered_runs(partly_days).with_columns(machine_code=code).drop("machine_key"),
            ),
        ]
    )
    return (
        _concurrency_deltas(covered_spans, ("scope_code",))
        .join(scopes, on="scope_code", how="left", nulls_equal=True)
        .select("scope", "month", "at", "delta")
    )


def fleet_part(
    machines: pl.LazyFrame,
    deltas: pl.LazyFrame,
    defender_charges_daily: pl.LazyFrame,
    usage: PricedUsage,
    *,
    currency: str,
) -> FleetPart:
    """The `FleetPart` of the machines and charges given (all of the estate, or whole
    subscriptions of it, with every id of a moved machine); `deltas`: their
    `concurrency_deltas`."""
    currency = currency.upper()
    keys = ("scope", "month")
    # Per machine and month first, as exact decimal sums, then per scope: the scope explosion
    # doubles a row per machine-month, not every machine-day, and the figures are the same to
    # the bit as one sum over the days.
    usage_rows = (
        usage.days.filter(pl.col("plan").is_not_null())
        .group_by("machine_key", "subscription_id", "month")
        .agg(
            billable=(pl.col("billable_hours") > 0).any(),
            billable_hours=exact_sum(pl.col("billable_hours")),
            hourly_cost=exact_sum_or_null("hourly_cost"),
        )
        .with_columns(scope=in_scopes())
        .explode("scope")
        .group_by(keys)
        .agg(
            machines_distinct=pl.col("machine_key")
            .filter(pl.col("billable"))
            .n_unique()
            .cast(pl.Int64),
            billable_hours=pl.col("billable_hours").sum().cast(pl.Float64),
            hourly_cost=order_free_sum_or_null("hourly_cost"),
        )
    )
    unattributed = pl.col("attribution") == "unattributed"
    billed = (
        defender_charges_daily.filter(pl.col("currency") == currency)
        .group_by("subscription_id", _month("usage_date"))
        .agg(
            billed_cost=exact_sum(pl.col("billed_cost")),
            unattributed_cost=exact_sum(pl.col("billed_cost").filter(unattributed)),
        )
        .with_columns(scope=in_scopes())
        .explode("scope")
        .group_by(keys)
        .agg(
            pl.col("billed_cost").sum().cast(pl.Float64),
            pl.col("unattributed_cost").sum().cast(pl.Float64),
        )
    )
    keyed = machines.select("resource_id", "machine_key")
    with_benefit = (
        defender_charges_daily.filter(
            pl.col("resource_id").is_not_null() & (pl.col("benefit") == billing.MDE_BENEFIT)
        )
        .join(keyed, on="resource_id", how="left")
        .with_columns(
            _month("usage_date"),
            pl.coalesce("machine_key", "resource_id").alias("machine_key"),
            scope=in_scopes(),
        )
        .explode("scope")
        .group_by(keys)
        .agg(machines_with_mde_benefit=pl.col("machine_key").n_unique().cast(pl.Int64))
    )
    rows = (
        usage_rows.join(billed, on=keys, how="full", coalesce=True, nulls_equal=True)
        .join(with_benefit, on=keys, how="left", nulls_equal=True)
        .join(_peaks(deltas, ("scope",)), on=keys, how="left", nulls_equal=True)
        .select(
            "month",
            subscription_id="scope",
            machines_distinct=pl.col("machines_distinct").fill_null(0),
            peak_concurrent_machines=pl.col("peak_concurrent_machines").fill_null(0),
            billable_hours=pl.col("billable_hours").fill_null(0.0),
            hourly_cost=pl.when(pl.col("billable_hours").is_null())
            .then(0.0)
            .otherwise("hourly_cost"),
            billed_cost=pl.col("billed_cost").fill_null(0.0),
            unattributed_cost=pl.col("unattributed_cost").fill_null(0.0),
            machines_with_mde_benefit=pl.col("machines_with_mde_benefit").fill_null(0),
        )
    )
    estate_deltas = deltas.filter(pl.col("scope").is_null()).drop("scope")
    return FleetPart(rows, estate_deltas)


def finish_fleet(
    parts: pl.LazyFrame,
    estate_deltas: pl.LazyFrame,
    seat_prices: pl.LazyFrame,
    *,
    seat_option: str,
    currency: str,
) -> pl.LazyFrame:
    """The `fleet_comparison_monthly` view from the rows and estate deltas of every `FleetPart`
    (concatenated in a fixed order) and the seat prices per month.

    Subscription rows are final in their part. The estate adds the parts' shares, and its peak
    is the running sum of every part's deltas, so machines billable in the same hour in two
    parts count twice, as they do in one.
    """
    estate = (
        parts.filter(pl.col("subscription_id").is_null())
        .group_by("month")
        .agg(
            pl.col("machines_distinct").sum(),
            order_free_sum("billable_hours"),
            order_free_sum_or_null("hourly_cost").alias("hourly_cost"),
            order_free_sum("billed_cost"),
            order_free_sum("unattributed_cost"),
            pl.col("machines_with_mde_benefit").sum(),
        )
        .join(_peaks(estate_deltas, ()), on="month", how="left")
        .select(
            "month",
            subscription_id=pl.lit(None, dtype=pl.String),
            machines_distinct="machines_distinct",
            peak_concurrent_machines=pl.col("peak_concurrent_machines").fill_null(0),
            billable_hours="billable_hours",
            hourly_cost="hourly_cost",
            billed_cost="billed_cost",
            unattributed_cost="unattributed_cost",
            machines_with_mde_benefit="machines_with_mde_benefit",
        )
    )
    view = (
        pl.concat([parts.filter(pl.col("subscription_id").is_not_null()), estate])
        .join(seat_prices, on="month", how="left")
        .select(
            "month",
            "subscription_id",
            "machines_distinct",
            "peak_concurrent_machines",
            "billable_hours",
            "hourly_cost",
            "billed_cost",
            "unattributed_cost",
            "machines_with_mde_benefit",
            seat_option=pl.lit(seat_option),
            seat_cost_distinct=pl.col("machines_distinct") * pl.col("seat_price"),
            seat_cost_peak=pl.col("peak_concurrent_machines") * pl.col("seat_price"),
            currency=pl.lit(currency.upper()),
        )
        .sort("month", "subscription_id", nulls_last=True)
    )
    return conform_view(view, "fleet_comparison_monthly")


def fleet_comparison_monthly(
    machines: pl.LazyFrame,
    machine_days: pl.LazyFrame,
    power_intervals: pl.LazyFrame,
    defender_charges_daily: pl.LazyFrame,
    price_book: pl.LazyFrame,
    *,
    seat_option: str,
    currency: str,
) -> pl.LazyFrame:
    """The `fleet_comparison_monthly` view: per subscription and month, plus the estate.

    Only covered machine-days (a plan that day) count in machines, hours and costs; billed_cost
    is every Defender charge in scope and `currency`, unattributed included. A machine moved
    between subscriptions in a month counts in both subscriptions and once in the estate.
    """
    usage = priced_usage(
        machines,
        machine_days,
        defender_charges_daily,
        price_book,
        seat_option=seat_option,
        currency=currency,
    )
    deltas = concurrency_deltas(machines, power_intervals, usage)
    part = fleet_part(machines, deltas, defender_charges_daily, usage, currency=currency)
    return finish_fleet(
        part.rows,
        part.estate_deltas,
        usage.seat_prices,
        seat_option=seat_option,
        currency=currency,
    )
