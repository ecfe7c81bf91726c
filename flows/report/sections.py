"""The report's sections beyond its month: trend and showback charts, and the machines table's
data for the page's own script (sort, filter, search, pages; no network).

The machines table is written twice: its first page as plain HTML, which reads with scripts off
(and in print), and every machine as JSON in a `<script type="application/json">` block, which
the inline script pages through. Only names and figures go in the JSON; it is escaped so no text
from the estate can close the block.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl
from markupsafe import Markup

from flows.report import charts, formatting
from flows.report.data import ReportData
from flows.report.periods import Periods, Showback

# Rows of the machines table written as HTML (the first page, largest billed first); the
# script shows this many per page too.
MACHINE_PAGE_ROWS = 100
SHOWBACK_CHARTED = 15
# The machines table's columns in the JSON, in order.
MACHINE_FIELDS = (
    "name",
    "subscription",
    "plan",
    "utilization",
    "billable_hours",
    "billed",
    "hourly",
    "mde_part",
    "seat",
    "saving",
    "cheaper",
    "findings",
)


@dataclass(frozen=True)
class PeriodCharts:
    trend: Markup
    trend_machines: Markup
    showback: dict[str, Markup]  # group key -> chart


def build_period_charts(data: ReportData, periods: Periods, block: str) -> PeriodCharts:
    currency = data.headline.currency

    def money(value: float) -> str:
        return formatting.money(value, currency)

    def axis(value: float) -> str:
        return formatting.money_compact(value, currency)

    series = [
        ("Billed, Plan 1", charts.SKY),
        ("Billed, Plan 2", charts.BLUE),
        ("All charges billed", charts.GREY),
        (f"Keep the plans, MDE seats per {block}", charts.ORANGE),
    ]
    groups = [
        charts.BarGroup(
            label=f"{month.month:%b %Y}",
            sublabel="complete" if month.complete else "month to date",
            bars=[
                charts.Bar(value, name, f"{month.month:%B %Y} · {name}: {money(value)}")
                for (name, _), value in zip(
                    series,
                    (month.billed_p1, month.billed_p2, month.billed, month.like_for_like),
                    strict=True,
                )
            ],
        )
        for month in periods.trends
    ]
    trend = charts.horizontal_bar_chart(
        "trend", "Billed and like for like, month by month", groups, series, money, axis
    )
    machines = charts.horizontal_bar_chart(
        "trend-machines",
        "Covered machines with billable time, month by month",
        [
            charts.BarGroup(
                label=f"{month.month:%b %Y}",
                sublabel=f"{formatting.percent(month.utilization)} average utilization",
                bars=[
                    charts.Bar(
                        float(month.machines),
                        "machines",
                        f"{month.month:%B %Y}: {month.machines} machines",
                    )
                ],
            )
            for month in periods.trends
        ],
        [("machines", charts.GREEN)],
        lambda value: f"{value:,.0f}",
        lambda value: f"{value:,.0f}",
    )
    return PeriodCharts(
        trend=Markup(trend),
        trend_machines=Markup(machines),
        showback={
            showback.key: Markup(_showback_chart(showback, money, axis))
            for showback in periods.showback
        },
    )


def _showback_chart(
    showback: Showback, money: Callable[[float], str], axis: Callable[[float], str]
) -> str:
    series = [("Billed", charts.BLUE), ("Keep the plan, an MDE seat per machine", charts.ORANGE)]
    return charts.horizontal_bar_chart(
        f"showback-{showback.key}",
        f"Billed by {showback.key}",
        [
            charts.BarGroup(
                label=group.label,
                sublabel=f"{group.machines} machines",
                bars=[
                    charts.Bar(value, name, f"{group.label} · {name}: {money(value)}")
                    for (name, _), value in zip(
                        series, (group.billed, group.like_for_like), strict=True
                    )
                ],
            )
            for group in showback.groups[:SHOWBACK_CHARTED]
        ],
        series,
        money,
        axis,
    )


def machine_table(data: ReportData) -> pl.DataFrame:
    """Every machine of the month with MACHINE_FIELDS columns, largest billed first; money to
    the cent, the finding kinds of each machine space-separated."""
    findings = pl.DataFrame(data.findings.select(["resource_id", "finding"]))
    kinds = (
        findings.lazy()
        .filter(pl.col("resource_id").is_not_null())
        .group_by("resource_id")
        .agg(findings=pl.col("finding").unique().sort().str.join(" "))
    )
    money = ("billed_cost", "hourly_cost", "mde_component_cost", "seat_cost", "per_hour_savings")
    frame = pl.DataFrame(data.machines)
    return (
        frame.lazy()
        .join(kinds, on="resource_id", how="left")
        .select(
            name=pl.coalesce("machine_name", "resource_id"),
            subscription="subscription_id",
            plan="plan",
            utilization=pl.col("utilization").round(4),
            billable_hours=pl.col("billable_hours").round(2),
            **{
                field: pl.col(column).round(2)
                for field, column in zip(
                    ("billed", "hourly", "mde_part", "seat", "saving"), money, strict=True
                )
            },
            cheaper="cheaper",
            findings=pl.col("findings").fill_null(""),
        )
        .sort(["billed", "name"], descending=[True, False], nulls_last=True)
        .collect()
    )


def machines_json(table: pl.DataFrame) -> Markup:
    """The table as columnar JSON safe inside a `<script type="application/json">` element:
    `<`, `>` and `&` are written as \\u escapes, so no machine name can end the element."""
    text = json.dumps(
        {"fields": list(MACHINE_FIELDS), "columns": table.to_dict(as_series=False)},
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    for character, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(character, escape)
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return Markup(text)
