"""Findings about change: `cost_anomaly` and `plan_changed`.

`cost_anomaly` (per subscription, and per showback group): a complete month whose billed
Defender for Servers cost moved more than `threshold_percent` against the median of the three
calendar months before it, without a matching change in billable hours (a new plan, a price
change, charges without uptime). A fleet that grows by half bills half as much again and is
not an anomaly: the cost's change is compared with the hours' change, and a finding needs both
the cost change and its difference from the hours' change to exceed the threshold. `amount` is
what the hours do not explain: billed - median billed x (hours / median hours), signed; for a
showback group it is null (the groups re-slice the subscriptions' money, which their findings
already count) and the figures are in the detail. Months
are judged only when complete (the scope's cost data reaches their last day) and when all three
months before them have rows; a scope whose median billed cost is 0 is not judged (a first
enablement is a `plan_changed`).

`plan_changed`: the plan covering a machine (`machine_plans_daily.plan`: P1, P2 or none) differs
from the day before. When the machines that changed on a day of a subscription share one change
(e.g. none -> P1) and are at least half of its machines seen both days, the subscription changed
plan: one finding for the subscription (resource_id null) says so; other changes are findings of
their machines, one per machine and month listing its changes. `amount` is null (a change costs
nothing by itself; its effect shows in the month's figures and any `cost_anomaly`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Final

import polars as pl

from transforms.contract import conform_view

TRAILING_MONTHS: Final = 3
_NO_PLAN: Final = "none"


@dataclass(frozen=True)
class AnomalyRule:
    """When a month's billed cost is an anomaly ([report] anomaly_threshold_percent,
    anomaly_min_amount)."""

    threshold_percent: float = 25.0
    min_amount: float = 1.0


def _trailing(series: pl.LazyFrame, keys: list[str]) -> pl.LazyFrame:
    """`series` (keys, month, billed_cost, billable_hours) with the median billed cost and
    hours of the TRAILING_MONTHS calendar months before each month (null when one is absent)."""
    frame = series
    for back in range(1, TRAILING_MONTHS + 1):
        earlier = series.select(
            *keys,
            month=pl.col("month").dt.offset_by(f"{back}mo"),
            **{f"billed_{back}": "billed_cost", f"hours_{back}": "billable_hours"},
        )
        frame = frame.join(earlier, on=[*keys, "month"], how="left", nulls_equal=True)
    months = range(1, TRAILING_MONTHS + 1)
    return frame.with_columns(
        median_billed=pl.concat_list([f"billed_{b}" for b in months]).list.median(),
        median_hours=pl.concat_list([f"hours_{b}" for b in months]).list.median(),
        judged=pl.all_horizontal(pl.col(f"billed_{b}").is_not_null() for b in months),
    )


def _percent(change: str) -> pl.Expr:
    return pl.format("{}%", (pl.col(change) * 100).round(1).cast(pl.String))


def cost_anomalies(
    series: pl.LazyFrame,
    *,
    scope: pl.Expr,
    keys: list[str],
    rule: AnomalyRule,
    currency: str,
    with_amount: bool = True,
) -> pl.LazyFrame:
    """`cost_anomaly` findings from a monthly series per scope.

    `series`: `keys`, subscription_id (null for a showback group), month, billed_cost,
    billable_hours, complete (the month's cost data is complete for the scope); `scope`: the
    scope's words in the detail (e.g. "subscription 1234..."); `with_amount` false leaves
    `amount` null (showback groups re-slice the subscriptions' money: counted once, there).
    See the module docstring.
    """
    threshold = rule.threshold_percent / 100
    hours_change = (
        pl.when(pl.col("median_hours") > 0)
        .then(pl.col("billable_hours") / pl.col("median_hours") - 1)
        .when(pl.col("billable_hours") > 0)
        .then(None)  # hours from none: any cost change is explained
        .otherwise(0.0)
    )
    series = series.with_columns(pl.col("billed_cost", "billable_hours").cast(pl.Float64))
    judged = (
        _trailing(series, keys)
        .filter(pl.col("judged") & pl.col("complete") & (pl.col("median_billed") > 0))
        .with_columns(
            cost_change=pl.col("billed_cost") / pl.col("median_billed") - 1,
            hours_change=hours_change,
        )
        .filter(pl.col("hours_change").is_not_null())
        .with_columns(
            unexplained=pl.col("billed_cost")
            - pl.col("median_billed") * (1 + pl.col("hours_change"))
        )
        .filter(
            (pl.col("cost_change").abs() > threshold)
            & ((pl.col("cost_change") - pl.col("hours_change")).abs() > threshold)
            & (pl.col("unexplained").abs() >= rule.min_amount)
        )
    )
    money = pl.lit(f" {currency.upper()}")
    return conform_view(
        judged.select(
            resource_id=pl.lit(None, dtype=pl.String),
            subscription_id="subscription_id",
            month="month",
            finding=pl.lit("cost_anomaly"),
            detail=pl.format(
                "{}: billed {}{} against a trailing {}-month median of {}{} ({}) while billable "
                "hours moved {} ({} h against a median of {} h)",
                scope,
                pl.col("billed_cost").round(2).cast(pl.String),
                money,
                pl.lit(TRAILING_MONTHS),
                pl.col("median_billed").round(2).cast(pl.String),
                money,
                _percent("cost_change"),
                _percent("hours_change"),
                pl.col("billable_hours").round(1).cast(pl.String),
                pl.col("median_hours").round(1).cast(pl.String),
            ),
            amount=pl.col("unexplained") if with_amount else pl.lit(None, dtype=pl.Float64),
            currency=pl.lit(currency.upper()),
        ),
        "findings",
    )


def plan_changes(machine_plans_daily: pl.LazyFrame) -> pl.LazyFrame:
    """`plan_changed` findings from the machines' daily plans (see the module docstring)."""
    plan = pl.col("plan").fill_null(_NO_PLAN)
    rows = machine_plans_daily.select("usage_date", "resource_id", "subscription_id", plan=plan)
    # Only a machine seen with two plans can have changed: its days alone are sorted and compared
    # with the day before (a row follows on when the id is the same and the date the next).
    varying = (
        rows.group_by("resource_id")
        .agg(plans=pl.col("plan").n_unique())
        .filter(pl.col("plans") > 1)
        .select("resource_id")
    )
    follows_on = (pl.col("resource_id") == pl.col("resource_id").shift(1)) & (
        pl.col("usage_date").shift(1) == pl.col("usage_date") - timedelta(days=1)
    )
    changed = (
        rows.join(varying, on="resource_id", how="semi")
        .sort("resource_id", "usage_date")
        .with_columns(before=pl.when(follows_on).then(pl.col("plan").shift(1)))
        .filter(pl.col("before").is_not_null() & (pl.col("plan") != pl.col("before")))
        # concat_str, not pl.format: polars 2.1's in-memory engine panics formatting these rows.
        .with_columns(change=pl.concat_str("before", pl.lit(" -> "), "plan"))
    )
    # On the days something changed: the subscription's machines seen that day and the day before.
    change_days = changed.select("subscription_id", "usage_date").unique()
    seen = (
        rows.join(change_days, on=["subscription_id", "usage_date"], how="semi")
        .join(
            rows.select("resource_id", usage_date=pl.col("usage_date") + timedelta(days=1)),
            on=["resource_id", "usage_date"],
            how="semi",
        )
        .group_by("subscription_id", "usage_date")
        .agg(seen=pl.len())
    )
    per_subscription = (
        seen.join(
            changed.group_by("subscription_id", "usage_date").agg(
                changed=pl.len(), changes=pl.col("change").unique()
            ),
            on=["subscription_id", "usage_date"],
            how="inner",
        )
        .filter((pl.col("changes").list.len() == 1) & (pl.col("changed") * 2 >= pl.col("seen")))
        .with_columns(change=pl.col("changes").list.first())
    )
    subscription_findings = per_subscription.select(
        resource_id=pl.lit(None, dtype=pl.String),
        subscription_id="subscription_id",
        month=pl.col("usage_date").dt.month_start(),
        finding=pl.lit("plan_changed"),
        detail=pl.format(
            "subscription's Defender for Servers plan {} on {} ({} of {} machines)",
            "change",
            pl.col("usage_date").cast(pl.String),
            "changed",
            "seen",
        ),
        amount=pl.lit(None, dtype=pl.Float64),
        currency=pl.lit(None, dtype=pl.String),
    )
    machine_findings = (
        changed.join(
            per_subscription.select("subscription_id", "usage_date"),
            on=["subscription_id", "usage_date"],
            how="anti",
        )
        .sort("resource_id", "usage_date")
        .group_by("resource_id", pl.col("usage_date").dt.month_start().alias("month"))
        .agg(
            pl.col("subscription_id").first(),
            changes=pl.format("{} on {}", "change", pl.col("usage_date").cast(pl.String)),
        )
        .select(
            "resource_id",
            "subscription_id",
            "month",
            finding=pl.lit("plan_changed"),
            detail=pl.format("Defender for Servers plan {}", pl.col("changes").list.join("; ")),
            amount=pl.lit(None, dtype=pl.Float64),
            currency=pl.lit(None, dtype=pl.String),
        )
    )
    return conform_view(
        pl.concat([subscription_findings, machine_findings], how="vertical_relaxed"), "findings"
    )
