"""Findings: where the estate pays for nothing, pays twice, or is not protected.

One row per machine id and month per kind (per month for the estate-wide `double_licensed`):

- `billed_while_not_billable`: Defender hours attributed to a machine mdecost has a power
  timeline for, on days it was billable for fewer hours (or none). amount = the excess's share
  of that day's billed cost. Charges on no machine (`unattributed`) are never judged here.
- `billable_not_billed`: a machine billable on a day its plan covered it (outside the free
  trial) with no Defender charge at all. amount = those hours at that day's plan and rate (what
  the bill would have said; money that may still be invoiced, or coverage that is not really
  on). Days after the subscription's own last billed day are not judged: Cost Management
  reports a day only after it is over, later for pay-as-you-go (up to 72 h) than for EA / MCA
  (8-24 h); a subscription with no charge in the window is judged up to the estate's last
  billed day. The cut-off is in the finding's detail.
- `no_mde_sensor`: a covered machine with billable time but no MDE.Windows / MDE.Linux
  extension: the MDE licence included in Defender for Servers is paid and not used.
  amount = the machine's hourly_cost that month.
- `double_licensed`: MDE seats owned (`seats_owned`, per seat option) while Defender for Servers,
  which includes the MDE for Servers licence, covers machines billed at the full rate (machines
  on the MDATP benefit meter already have the MDE part discounted). amount = min(seats owned,
  covered machines without the benefit) x that option's seat price for the month.
- `defender_off`: a machine with billable time and no plan that month. amount null.

Differences below `tolerance_hours` a day are rounding, not findings
(`billing.FINDINGS_TOLERANCE_HOURS`: 0.01 h for fractional hours, a whole hour when hours are
rounded up to clock hours).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Final

import polars as pl

from transforms.billing import FINDINGS_TOLERANCE_HOURS, HOURLY_OPTIONS, PARTIAL_HOURS_DEFAULT
from transforms.comparison import MissingPriceError, price_calendar
from transforms.contract import conform_view, empty_view

DEFAULT_TOLERANCE_HOURS: Final = FINDINGS_TOLERANCE_HOURS[PARTIAL_HOURS_DEFAULT]


def _month(date_column: str) -> pl.Expr:
    return pl.col(date_column).dt.month_start().alias("month")


def _hours(column: str) -> pl.Expr:
    return pl.col(column).round(2).cast(pl.String)


def _billed_while_not_billable(
    machines: pl.LazyFrame,
    machine_hours_daily: pl.LazyFrame,
    defender_charges_daily: pl.LazyFrame,
    tolerance: float,
) -> pl.LazyFrame:
    # Only machines with a power timeline can be judged: an Arc machine charged before its
    # inventory exists has no known hours, not zero hours.
    billed = (
        defender_charges_daily.filter(pl.col("resource_id").is_not_null())
        .join(machines.select("resource_id"), on="resource_id", how="semi")
        .group_by("usage_date", "resource_id", "currency")
        .agg(
            pl.col("subscription_id").first(),
            pl.col("billed_hours").sum(),
            pl.col("billed_cost").sum(),
        )
    )
    days = (
        billed.join(
            machine_hours_daily.select("usage_date", "resource_id", "billable_hours"),
            on=["usage_date", "resource_id"],
            how="left",
        )
        .with_columns(
            billable_hours=pl.col("billable_hours").fill_null(0.0),
            excess_hours=pl.col("billed_hours") - pl.col("billable_hours").fill_null(0.0),
        )
        .filter((pl.col("billed_hours") > 0) & (pl.col("excess_hours") > tolerance))
        .with_columns(
            excess_cost=pl.col("billed_cost")
            * (pl.col("excess_hours") / pl.col("billed_hours")).clip(upper_bound=1.0)
        )
    )
    return (
        days.group_by("resource_id", _month("usage_date"), "currency")
        .agg(
            pl.col("subscription_id").first(),
            days=pl.len(),
            billed_hours=pl.col("billed_hours").sum(),
            billable_hours=pl.col("billable_hours").sum(),
            amount=pl.col("excess_cost").sum(),
        )
        .select(
            "resource_id",
            "subscription_id",
            "month",
            finding=pl.lit("billed_while_not_billable"),
            detail=pl.format(
                "billed {} h on {} day(s) when {} h were billable",
                _hours("billed_hours"),
                "days",
                _hours("billable_hours"),
            ),
            amount="amount",
            currency="currency",
        )
    )


def _billable_not_billed(
    machine_hours_daily: pl.LazyFrame,
    defender_charges_daily: pl.LazyFrame,
    machine_plans_daily: pl.LazyFrame,
    calendar: pl.LazyFrame,
    tolerance: float,
    currency: str,
    billed_through: date | None,
) -> pl.LazyFrame:
    charged_days = (
        defender_charges_daily.filter(pl.col("resource_id").is_not_null())
        .select("usage_date", "resource_id")
        .unique()
    )
    covered = machine_plans_daily.filter(pl.col("plan").is_not_null() & ~pl.col("trial")).select(
        "usage_date", "resource_id", "plan"
    )
    rates = calendar.filter(pl.col("kind") == "hourly").select("option", "usage_date", "rate")
    estate_cut_off = (
        defender_charges_daily.select(estate_billed_through=pl.col("usage_date").max())
        if billed_through is None
        else pl.LazyFrame(
            {"estate_billed_through": [billed_through]}, schema={"estate_billed_through": pl.Date}
        )
    )
    own_cut_off = defender_charges_daily.group_by("subscription_id").agg(
        own_billed_through=pl.col("usage_date").max()
    )
    days = (
        machine_hours_daily.filter(pl.col("billable_hours") > tolerance)
        .join(covered, on=["usage_date", "resource_id"], how="inner")
        .join(own_cut_off, on="subscription_id", how="left")
        .join(estate_cut_off, how="cross")
        .with_columns(billed_through=pl.coalesce("own_billed_through", "estate_billed_through"))
        .filter(pl.col("usage_date") <= pl.col("billed_through"))
        .join(charged_days, on=["usage_date", "resource_id"], how="anti")
        .with_columns(
            _month("usage_date"),
            option=pl.col("plan").replace_strict(
                HOURLY_OPTIONS, default=None, return_dtype=pl.String
            ),
        )
        .join(rates, on=["option", "usage_date"], how="left")
    )
    return (
        days.group_by("resource_id", "month")
        .agg(
            pl.col("subscription_id").first(),
            plans=pl.col("plan").unique().sort().str.join("/"),
            days=pl.len(),
            hours=pl.col("billable_hours").sum(),
            billed_through=pl.col("billed_through").max(),
            amount=pl.when(pl.col("rate").is_null().any())
            .then(None)
            .otherwise((pl.col("billable_hours") * pl.col("rate")).sum()),
        )
        .select(
            "resource_id",
            "subscription_id",
            "month",
            finding=pl.lit("billable_not_billed"),
            detail=pl.format(
                "{} h billable on {} day(s) with no Defender for Servers {} charge "
                "(cost data judged through {})",
                _hours("hours"),
                "days",
                "plans",
                pl.col("billed_through").cast(pl.String),
            ),
            amount="amount",
            currency=pl.lit(currency),
        )
    )


def _licensing_findings(machines: pl.LazyFrame, licensing: pl.LazyFrame) -> pl.LazyFrame:
    """no_mde_sensor and defender_off, from the per-machine monthly comparison."""
    billable = licensing.filter(pl.col("billable_hours") > 0).join(
        machines.select("resource_id", "mde_sensor"), on="resource_id", how="left"
    )
    no_sensor = billable.filter(pl.col("plan").is_not_null() & ~pl.col("mde_sensor")).select(
        "resource_id",
        "subscription_id",
        "month",
        finding=pl.lit("no_mde_sensor"),
        detail=pl.format(
            "Defender for Servers {} billable {} h without the MDE.Windows / MDE.Linux extension",
            "plan",
            _hours("billable_hours"),
        ),
        amount="hourly_cost",
        currency="currency",
    )
    off = billable.filter(pl.col("plan").is_null()).select(
        "resource_id",
        "subscription_id",
        "month",
        finding=pl.lit("defender_off"),
        detail=pl.format(
            "billable {} h with Defender for Servers off (no plan, or pricing tier Free)",
            _hours("billable_hours"),
        ),
        amount=pl.lit(None, dtype=pl.Float64),
        currency="currency",
    )
    return pl.concat([no_sensor, off])


def _double_licensed(
    fleet: pl.LazyFrame,
    calendar: pl.LazyFrame,
    seats_owned: Mapping[str, int],
    currency: str,
) -> pl.LazyFrame:
    covered = (
        fleet.filter(pl.col("subscription_id").is_null())
        .select(
            "month",
            "machines_distinct",
            full_rate_machines=pl.max_horizontal(
                pl.col("machines_distinct") - pl.col("machines_with_mde_benefit"), pl.lit(0)
            ),
        )
        .filter(pl.col("full_rate_machines") > 0)
    )
    frames = []
    for option, seats in sorted(seats_owned.items()):
        if seats <= 0:
            continue
        seat_prices = calendar.filter(
            (pl.col("option") == option)
            & (pl.col("kind") == "seat")
            & (pl.col("usage_date") == pl.col("month"))
        ).select("month", seat_price="rate")
        overlap = pl.min_horizontal(pl.lit(seats, dtype=pl.Int64), "full_rate_machines")
        frames.append(
            covered.join(seat_prices, on="month", how="left").select(
                resource_id=pl.lit(None, dtype=pl.String),
                subscription_id=pl.lit(None, dtype=pl.String),
                month="month",
                finding=pl.lit("double_licensed"),
                detail=pl.format(
                    "{} {} seat(s) owned while {} machine(s) have Defender for Servers at the "
                    "full rate, which includes the MDE licence: {} seat(s) paid twice",
                    pl.lit(seats),
                    pl.lit(option),
                    "full_rate_machines",
                    overlap,
                ),
                amount=overlap * pl.col("seat_price"),
                currency=pl.lit(currency),
            )
        )
    return pl.concat(frames) if frames else empty_view("findings")


def _require_seat_options(
    price_book: pl.LazyFrame, seats_owned: Mapping[str, int], currency: str
) -> None:
    owned = sorted(option for option, seats in seats_owned.items() if seats > 0)
    if not owned:
        return
    held = (
        price_book.filter((pl.col("kind") == "seat") & (pl.col("currency") == currency))
        .select("option")
        .unique()
        .collect()["option"]
        .to_list()
    )
    if missing := [option for option in owned if option not in held]:
        raise MissingPriceError(
            f"seats are owned for {', '.join(missing)} but the price book has no {currency} "
            f"seat price for it: set [pricing.seat_prices] in {currency}"
        )


def machine_findings(
    machines: pl.LazyFrame,
    machine_hours_daily: pl.LazyFrame,
    defender_charges_daily: pl.LazyFrame,
    machine_plans_daily: pl.LazyFrame,
    licensing_comparison_monthly: pl.LazyFrame,
    price_book: pl.LazyFrame,
    *,
    currency: str,
    billed_through: date | None = None,
    tolerance_hours: float = DEFAULT_TOLERANCE_HOURS,
) -> pl.LazyFrame:
    """Every finding about a machine (all kinds but the estate-wide `double_licensed`).

    `billed_through` is the estate's last day with any Defender charge in the cost data
    (default: the last in `defender_charges_daily`), the cut-off of subscriptions without a
    charge of their own; the build computes it over the whole lake, since it works on chunks of
    subscriptions. Every other subscription is judged through its own last billed day.
    """
    currency = currency.upper()
    months = pl.concat(
        [
            machine_hours_daily.select(_month("usage_date")),
            licensing_comparison_monthly.select("month"),
        ]
    )
    calendar = price_calendar(price_book, months, currency)
    parts = [
        _billed_while_not_billable(
            machines, machine_hours_daily, defender_charges_daily, tolerance_hours
        ),
        _billable_not_billed(
            machine_hours_daily,
            defender_charges_daily,
            machine_plans_daily,
            calendar,
            tolerance_hours,
            currency,
            billed_through,
        ),
        _licensing_findings(machines, licensing_comparison_monthly),
    ]
    return combine_findings(parts)


def double_licensed_findings(
    fleet_comparison_monthly: pl.LazyFrame,
    price_book: pl.LazyFrame,
    *,
    currency: str,
    seats_owned: Mapping[str, int] | None = None,
) -> pl.LazyFrame:
    """The `double_licensed` findings, from the estate rows of `fleet_comparison_monthly`.

    Raises MissingPriceError when a seat option with seats owned has no price in `currency`.
    """
    currency = currency.upper()
    seats_owned = dict(seats_owned or {})
    _require_seat_options(price_book, seats_owned, currency)
    calendar = price_calendar(price_book, fleet_comparison_monthly.select("month"), currency)
    return combine_findings(
        [_double_licensed(fleet_comparison_monthly, calendar, seats_owned, currency)]
    )


def combine_findings(parts: list[pl.LazyFrame]) -> pl.LazyFrame:
    """Findings of several parts as one view, in the view's order."""
    view = pl.concat(parts, how="vertical_relaxed").sort(
        "month", "finding", "subscription_id", "resource_id", nulls_last=True
    )
    return conform_view(view, "findings")


def findings(
    machines: pl.LazyFrame,
    machine_hours_daily: pl.LazyFrame,
    defender_charges_daily: pl.LazyFrame,
    machine_plans_daily: pl.LazyFrame,
    licensing_comparison_monthly: pl.LazyFrame,
    fleet_comparison_monthly: pl.LazyFrame,
    price_book: pl.LazyFrame,
    *,
    currency: str,
    seats_owned: Mapping[str, int] | None = None,
    tolerance_hours: float = DEFAULT_TOLERANCE_HOURS,
) -> pl.LazyFrame:
    """The `findings` view, from the other views and the price book (see the module docstring).

    `seats_owned` maps a seat option to the number of seats the customer already owns
    ([pricing.seats_owned]). Raises MissingPriceError when a seat option with seats owned has no
    price in `currency`.
    """
    double = double_licensed_findings(
        fleet_comparison_monthly, price_book, currency=currency, seats_owned=seats_owned
    )
    machine = machine_findings(
        machines,
        machine_hours_daily,
        defender_charges_daily,
        machine_plans_daily,
        licensing_comparison_monthly,
        price_book,
        currency=currency,
        tolerance_hours=tolerance_hours,
    )
    return combine_findings([machine, double])
