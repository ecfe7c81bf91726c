"""Findings: where the estate pays for nothing, pays twice, or is not protected.

One row per machine id and month per kind (per month for the estate-wide
`mde_benefit_unclaimed`):

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
- `mde_benefit_unclaimed`: MDE seats owned (`seats_owned`, per seat option) while machines pay
  Defender for Servers at the full rate (no MDATP benefit meter): Microsoft discounts the MDE
  part for licence holders who ask (support ticket), from approval on. amount = the MDE component
  cost of the machines with the most of it, as many as seats owned.
- `mde_benefit_not_applied`: a benefit approval day is configured (`mde_benefit_from`) but
  full-rate meters continue after it. amount = those billed hours x the day's MDE component rate.
- `stopped_allocated`: billable hours in the `stopped` state (shut down from the guest OS or
  powered off, still allocated) on covered, non-trial days. amount = those hours at the day's
  plan rate: deallocating instead would not have been billed.
- `defender_off`: a machine with billable time and no plan that month. amount null.
- `duplicate_onboarding`: an Arc machine charged on its own id on days a server of the same
  name (first DNS label, without case: `billing.device_name_expr`) was also charged as
  onboarded directly through Defender for Endpoint (`attribution_detail` `direct_onboarding`):
  the same server billed twice, which Microsoft says old Defender for Endpoint agents can cause.
  amount = the directly onboarded charges of those days. The designated subscription is built
  with the subscriptions of its Arc namesakes (`marts.linked_subscriptions`).

Differences below `tolerance_hours` a day are rounding, not findings
(`billing.FINDINGS_TOLERANCE_HOURS`: 0.01 h for fractional hours, a whole hour when hours are
rounded up to clock hours).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Final

import polars as pl

from transforms.billing import (
    DIRECT_ONBOARDING_MIN_AGENT_VERSIONS,
    FINDINGS_TOLERANCE_HOURS,
    HOURLY_OPTIONS,
    MDE_BENEFIT,
    PARTIAL_HOURS_DEFAULT,
    device_name_expr,
)
from transforms.comparison import price_calendar
from transforms.contract import conform_view, empty_view, order_free_sum
from transforms.options import LicensingTerms, cut_offs, plan_rates
from transforms.power import split_by_day

DEFAULT_TOLERANCE_HOURS: Final = FINDINGS_TOLERANCE_HOURS[PARTIAL_HOURS_DEFAULT]


def _month(date_column: str) -> pl.Expr:
    return pl.col(date_column).dt.month_start().alias("month")


def _hours(column: str) -> pl.Expr:
    return pl.col(column).round(2).cast(pl.String)


def _at_plan_rates(days: pl.LazyFrame, calendar: pl.LazyFrame) -> pl.LazyFrame:
    """Machine days (usage_date, plan) with their `month` and the day's hourly `rate` of their
    plan (null where the price book has none)."""
    rates = calendar.filter(pl.col("kind") == "hourly").select("option", "usage_date", "rate")
    return days.with_columns(
        _month("usage_date"),
        option=pl.col("plan").replace_strict(HOURLY_OPTIONS, default=None, return_dtype=pl.String),
    ).join(rates, on=["option", "usage_date"], how="left")


def _priced(hours: str) -> pl.Expr:
    """`hours` at each day's rate, summed; null if a day has no rate (never silently low)."""
    return (
        pl.when(pl.col("rate").is_null().any())
        .then(None)
        .otherwise((pl.col(hours) * pl.col("rate")).sum())
    )


def _billed_while_not_billable(
    machines: pl.LazyFrame,
    machine_hours_daily: pl.LazyFrame,
    defender_charges_daily: pl.LazyFrame,
    tolerance: float,
) -> pl.LazyFrame:
    # Only machines with a power timeline can be judged: an Arc machine charged before its
    # inventory exists has no known hours, not zero hours. A day is judged per machine, all its
    # ids together: a move between two snapshots is known only to the day of the snapshot, so
    # the charges may still name the old id on days mdecost counts on the new one.
    # Sums first; only the few days over the tolerance look up the id that carried most hours.
    # Machines are grouped by their key's dictionary code (an integer, not a 36- to
    # 130-character key).
    keys = machines.select(
        "resource_id", machine_key=pl.col("machine_key").cast(pl.Categorical).to_physical()
    )
    day_keys = ["usage_date", "machine_key", "currency"]
    charged = defender_charges_daily.filter(pl.col("resource_id").is_not_null()).join(
        keys, on="resource_id", how="inner"
    )
    billed = charged.group_by(day_keys).agg(
        pl.col("billed_hours").sum(), pl.col("billed_cost").sum()
    )
    hours = (
        machine_hours_daily.join(keys, on="resource_id", how="inner")
        .group_by("usage_date", "machine_key")
        .agg(pl.col("billable_hours").sum())
    )
    over = (
        billed.join(hours, on=["usage_date", "machine_key"], how="left")
        .with_columns(
            billable_hours=pl.col("billable_hours").fill_null(0.0),
            excess_hours=pl.col("billed_hours") - pl.col("billable_hours").fill_null(0.0),
        )
        .filter((pl.col("billed_hours") > 0) & (pl.col("excess_hours") > tolerance))
    )
    named = (
        charged.join(over.select(day_keys), on=day_keys, how="semi")
        .group_by(day_keys)
        .agg(
            pl.col("resource_id").sort_by("billed_hours").last(),
            pl.col("subscription_id").sort_by("billed_hours").last(),
        )
    )
    days = over.join(named, on=day_keys, how="left").with_columns(
        excess_cost=pl.col("billed_cost")
        * (pl.col("excess_hours") / pl.col("billed_hours")).clip(upper_bound=1.0)
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
    machines: pl.LazyFrame,
    machine_hours_daily: pl.LazyFrame,
    defender_charges_daily: pl.LazyFrame,
    machine_plans_daily: pl.LazyFrame,
    calendar: pl.LazyFrame,
    tolerance: float,
    currency: str,
    billed_through: date | None,
    scope_cut_offs: pl.LazyFrame | None,
) -> pl.LazyFrame:
    # A machine is billed that day if any of its ids is (see `_billed_while_not_billable`). The
    # days billed on the machine's own id leave first (below); what is left can be billed on
    # another id of the machine only if it has one (a moved machine): only those ids' charges
    # are looked at.
    keys = machines.select("resource_id", "machine_key")
    moved = keys.filter(pl.len().over("machine_key") > 1)
    charged_days = (
        defender_charges_daily.join(moved, on="resource_id", how="inner")
        .select("usage_date", "machine_key")
        .unique()
    )
    covered = machine_plans_daily.filter(pl.col("plan").is_not_null() & ~pl.col("trial")).select(
        "usage_date", "resource_id", "plan"
    )
    estate_cut_off = (
        defender_charges_daily.select(estate_billed_through=pl.col("usage_date").max())
        if billed_through is None
        else pl.LazyFrame(
            {"estate_billed_through": [billed_through]}, schema={"estate_billed_through": pl.Date}
        )
    )
    own_cut_off = (
        cut_offs(defender_charges_daily) if scope_cut_offs is None else scope_cut_offs
    ).select(subscription_id="scope", own_billed_through="billed_through")
    # Most billable days are billed on the machine's own id: those leave first, in one anti
    # join on the id, before the joins that judge the few left.
    charged_ids = defender_charges_daily.select("usage_date", "resource_id")
    days = (
        machine_hours_daily.filter(pl.col("billable_hours") > tolerance)
        .join(charged_ids, on=["usage_date", "resource_id"], how="anti")
        .join(covered, on=["usage_date", "resource_id"], how="inner")
        .join(own_cut_off, on="subscription_id", how="left")
        .join(estate_cut_off, how="cross")
        .with_columns(billed_through=pl.coalesce("own_billed_through", "estate_billed_through"))
        .filter(pl.col("usage_date") <= pl.col("billed_through"))
        .join(keys, on="resource_id", how="left")
        .with_columns(machine_key=pl.coalesce("machine_key", "resource_id"))
        .join(charged_days, on=["usage_date", "machine_key"], how="anti")
    )
    days = _at_plan_rates(days, calendar)
    return (
        days.group_by("resource_id", "month")
        .agg(
            pl.col("subscription_id").first(),
            plans=pl.col("plan").unique().sort().str.join("/"),
            days=pl.len(),
            hours=pl.col("billable_hours").sum(),
            # The cut-off as far as it concerns this month: a later one (the next night's) does
            # not change how a past month was judged, nor its finding.
            billed_through=pl.min_horizontal(
                pl.col("billed_through").max(), pl.col("month").first().dt.month_end()
            ),
            amount=_priced("billable_hours"),
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


def mde_component_leaders(
    licensing: pl.LazyFrame, defender_charges_daily: pl.LazyFrame, most: int
) -> pl.LazyFrame:
    """Per month, the `most` full-rate machines with the largest MDE component cost (machines
    with no MDATP benefit charge that month): month, machine_key, mde_component_cost.

    Each chunk keeps its own leaders; the estate's are the leaders of theirs.
    """
    with_benefit = (
        defender_charges_daily.filter(
            pl.col("resource_id").is_not_null() & (pl.col("benefit") == MDE_BENEFIT)
        )
        .select(_month("usage_date"), "resource_id")
        .unique()
    )
    return (
        licensing.filter(pl.col("mde_component_cost") > 0)
        .join(with_benefit, on=["month", "resource_id"], how="anti")
        .select("month", "machine_key", "mde_component_cost")
        .sort("mde_component_cost", "machine_key", descending=[True, False])
        .group_by("month", maintain_order=True)
        .head(most)
    )


def _benefit_unclaimed(
    leaders: pl.LazyFrame, seats_owned: Mapping[str, int], currency: str
) -> pl.LazyFrame:
    frames = []
    ranked = leaders.sort(
        "mde_component_cost", "machine_key", descending=[True, False]
    ).with_columns(rank=pl.int_range(1, pl.len() + 1).over("month"))
    for option, seats in sorted(seats_owned.items()):
        if seats <= 0:
            continue
        frames.append(
            ranked.filter(pl.col("rank") <= seats)
            .group_by("month")
            .agg(machines=pl.len(), amount=order_free_sum("mde_component_cost"))
            .select(
                resource_id=pl.lit(None, dtype=pl.String),
                subscription_id=pl.lit(None, dtype=pl.String),
                month="month",
                finding=pl.lit("mde_benefit_unclaimed"),
                detail=pl.format(
                    "{} {} seat(s) owned while machines pay Defender for Servers at the full "
                    "rate: ask Microsoft (support ticket) to discount the MDE part for up to {} "
                    "of them, from approval on",
                    pl.lit(seats),
                    pl.lit(option),
                    "machines",
                ),
                amount="amount",
                currency=pl.lit(currency),
            )
        )
    return pl.concat(frames) if frames else empty_view("findings")


def _benefit_not_applied(
    defender_charges_daily: pl.LazyFrame,
    components: pl.LazyFrame,
    mde_benefit_from: date | None,
    currency: str,
) -> pl.LazyFrame:
    if mde_benefit_from is None:
        return empty_view("findings")
    full_rate = (
        defender_charges_daily.filter(
            pl.col("resource_id").is_not_null()
            & pl.col("benefit").is_null()
            & (pl.col("usage_date") >= mde_benefit_from)
        )
        .join(
            components.select("usage_date", "plan", "component_rate"),
            on=["usage_date", "plan"],
            how="left",
        )
        .with_columns(_month("usage_date"))
    )
    return (
        full_rate.group_by("resource_id", "month")
        .agg(
            pl.col("subscription_id").first(),
            days=pl.col("usage_date").n_unique(),
            hours=pl.col("billed_hours").sum(),
            amount=(pl.col("billed_hours") * pl.col("component_rate")).sum(),
        )
        .select(
            "resource_id",
            "subscription_id",
            "month",
            finding=pl.lit("mde_benefit_not_applied"),
            detail=pl.format(
                "{} h on {} day(s) billed at the full rate after the MDE benefit was approved ({})",
                _hours("hours"),
                "days",
                pl.lit(mde_benefit_from.isoformat()),
            ),
            amount="amount",
            currency=pl.lit(currency),
        )
    )


def _stopped_allocated(
    power_intervals: pl.LazyFrame,
    machine_plans_daily: pl.LazyFrame,
    calendar: pl.LazyFrame,
    currency: str,
) -> pl.LazyFrame:
    stopped = (
        split_by_day(
            power_intervals.filter(pl.col("state") == "stopped").select(
                "resource_id", "start_at", "end_at"
            )
        )
        .group_by("resource_id", "usage_date")
        .agg(hours=pl.col("microseconds").sum() / 3_600_000_000)
    )
    days = _at_plan_rates(
        stopped.join(
            machine_plans_daily.filter(pl.col("plan").is_not_null() & ~pl.col("trial")),
            on=["usage_date", "resource_id"],
            how="inner",
        ),
        calendar,
    )
    return (
        days.group_by("resource_id", "month")
        .agg(
            pl.col("subscription_id").first(),
            days=pl.len(),
            hours=pl.col("hours").sum(),
            amount=_priced("hours"),
        )
        .select(
            "resource_id",
            "subscription_id",
            "month",
            finding=pl.lit("stopped_allocated"),
            detail=pl.format(
                "{} h billable while stopped but still allocated on {} day(s): deallocate "
                "instead of stopping to stop the Defender for Servers meter",
                _hours("hours"),
                "days",
            ),
            amount="amount",
            currency=pl.lit(currency),
        )
    )


_AGENT_ADVICE: Final = "; ".join(
    f"{system} >= {version}" for system, version in DIRECT_ONBOARDING_MIN_AGENT_VERSIONS.items()
)


def _duplicate_onboarding(
    machines: pl.LazyFrame, defender_charges_daily: pl.LazyFrame
) -> pl.LazyFrame:
    """Arc machines also billed, the same days, as a directly onboarded server of their name."""
    direct = defender_charges_daily.filter(
        pl.col("attribution_detail") == "direct_onboarding"
    ).select(
        "usage_date",
        "billed_cost",
        "currency",
        device=device_name_expr(pl.col("charged_resource_id")),
        charged_as="charged_resource_id",
    )
    arc_billed = (
        defender_charges_daily.filter(
            (pl.col("attribution") == "resource") & pl.col("resource_id").is_not_null()
        )
        .select("usage_date", "resource_id")
        .unique()
        .join(
            machines.filter(pl.col("machine_kind") == "arc").select(
                "resource_id", "subscription_id", device=device_name_expr(pl.col("machine_name"))
            ),
            on="resource_id",
            how="inner",
        )
    )
    return (
        arc_billed.join(direct, on=["usage_date", "device"], how="inner")
        .with_columns(_month("usage_date"))
        .group_by("resource_id", "month", "currency")
        .agg(
            pl.col("subscription_id").first(),
            pl.col("charged_as").min(),
            days=pl.col("usage_date").n_unique(),
            amount=order_free_sum("billed_cost"),
        )
        .select(
            "resource_id",
            "subscription_id",
            "month",
            finding=pl.lit("duplicate_onboarding"),
            detail=pl.format(
                "billed as an Arc machine and as '{}' onboarded directly through Defender for "
                "Endpoint on {} day(s): the same server billed twice (older agents cause it; "
                "minimum versions: {})",
                "charged_as",
                "days",
                pl.lit(_AGENT_ADVICE),
            ),
            amount="amount",
            currency="currency",
        )
    )


def machine_findings(
    machines: pl.LazyFrame,
    machine_hours_daily: pl.LazyFrame,
    defender_charges_daily: pl.LazyFrame,
    machine_plans_daily: pl.LazyFrame,
    power_intervals: pl.LazyFrame,
    licensing_comparison_monthly: pl.LazyFrame,
    price_book: pl.LazyFrame,
    *,
    currency: str,
    terms: LicensingTerms | None = None,
    billed_through: date | None = None,
    scope_cut_offs: pl.LazyFrame | None = None,
    tolerance_hours: float = DEFAULT_TOLERANCE_HOURS,
) -> pl.LazyFrame:
    """Every finding about a machine (all kinds but the estate-wide `mde_benefit_unclaimed`).

    `billed_through` is the estate's last day with any Defender charge in the cost data
    (default: the last in `defender_charges_daily`), the cut-off of subscriptions without a
    charge of their own; the build computes it over the whole lake, since it works on chunks of
    subscriptions. Every other subscription is judged through its own last billed day:
    `scope_cut_offs` (`options.cut_offs`, default: of `defender_charges_daily`), which an
    incremental build passes because its charges start at the month it recomputes.
    """
    currency = currency.upper()
    terms = terms or LicensingTerms()
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
            machines,
            machine_hours_daily,
            defender_charges_daily,
            machine_plans_daily,
            calendar,
            tolerance_hours,
            currency,
            billed_through,
            scope_cut_offs,
        ),
        _licensing_findings(machines, licensing_comparison_monthly),
        _benefit_not_applied(
            defender_charges_daily,
            plan_rates(calendar, terms),
            terms.mde_benefit_from,
            currency,
        ),
        _stopped_allocated(power_intervals, machine_plans_daily, calendar, currency),
        _duplicate_onboarding(machines, defender_charges_daily),
    ]
    return combine_findings(parts)


def benefit_unclaimed_findings(
    leaders: pl.LazyFrame, *, currency: str, seats_owned: Mapping[str, int] | None = None
) -> pl.LazyFrame:
    """The `mde_benefit_unclaimed` findings, from every part's `mde_component_leaders`."""
    return combine_findings(
        [_benefit_unclaimed(leaders, dict(seats_owned or {}), currency.upper())]
    )


def most_seats_owned(seats_owned: Mapping[str, int] | None) -> int:
    """How many leaders a part keeps: the largest number of seats owned of any option."""
    return max([0, *(seats_owned or {}).values()])


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
    power_intervals: pl.LazyFrame,
    licensing_comparison_monthly: pl.LazyFrame,
    price_book: pl.LazyFrame,
    *,
    currency: str,
    seats_owned: Mapping[str, int] | None = None,
    terms: LicensingTerms | None = None,
    tolerance_hours: float = DEFAULT_TOLERANCE_HOURS,
) -> pl.LazyFrame:
    """The `findings` view, from the other views and the price book (see the module docstring).

    `seats_owned` maps a seat option to the number of seats the customer already owns
    ([pricing.seats_owned]).
    """
    leaders = mde_component_leaders(
        licensing_comparison_monthly, defender_charges_daily, most_seats_owned(seats_owned)
    )
    unclaimed = benefit_unclaimed_findings(leaders, currency=currency, seats_owned=seats_owned)
    machine = machine_findings(
        machines,
        machine_hours_daily,
        defender_charges_daily,
        machine_plans_daily,
        power_intervals,
        licensing_comparison_monthly,
        price_book,
        currency=currency,
        terms=terms,
        tolerance_hours=tolerance_hours,
    )
    return combine_findings([machine, unclaimed])
