"""The report's sections beyond its month: trend and showback charts, and the machines table's
data for the page's own script (sort, filter, search, pages; no network).

The machines table is written twice: its first page as plain HTML, which reads with scripts off
(and in print), and every machine as JSON in a `<script type="application/json">` block, which
the inline script pages through. Only names and figures go in the JSON; it is escaped so no text
from the estate can close the block.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
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
            showback.key: Markup(_showback_chart(showback, money, axis, block))
            for showback in periods.showback
        },
    )


def _showback_chart(showback: Showback, money, axis, block: str) -> str:  # type: ignore[no-untyped-def]
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


def _rounded(value: object, places: int) -> float | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return round(float(value), places)  # type: ignore[arg-type]


def machine_rows(data: ReportData) -> list[list[object]]:
    """Every machine of the month as a list of MACHINE_FIELDS values, largest billed first."""
    kinds: dict[str, list[str]] = {}
    for resource, finding in zip(
        data.findings.column("resource_id").to_pylist(),
        data.findings.column("finding").to_pylist(),
        strict=True,
    ):
        if resource is not None and finding not in kinds.setdefault(resource, []):
            kinds[resource].append(finding)
    table: pa.Table = data.machines
    columns = {
        name: table.column(name).to_pylist()
        for name in (
            "resource_id",
            "machine_name",
            "subscription_id",
            "plan",
            "utilization",
            "billable_hours",
            "billed_cost",
            "hourly_cost",
            "mde_component_cost",
            "seat_cost",
            "per_hour_savings",
            "cheaper",
        )
    }
    rows = [
        [
            columns["machine_name"][index] or columns["resource_id"][index],
            columns["subscription_id"][index],
            columns["plan"][index],
            _rounded(columns["utilization"][index], 4),
            _rounded(columns["billable_hours"][index], 2),
            _rounded(columns["billed_cost"][index], 2),
            _rounded(columns["hourly_cost"][index], 2),
            _rounded(columns["mde_component_cost"][index], 2),
            _rounded(columns["seat_cost"][index], 2),
            _rounded(columns["per_hour_savings"][index], 2),
            columns["cheaper"][index],
            " ".join(sorted(kinds.get(columns["resource_id"][index], []))),
        ]
        for index in range(table.num_rows)
    ]
    rows.sort(key=lambda row: (-(row[5] or 0.0), str(row[0])))  # type: ignore[operator]
    return rows


def machines_json(rows: Sequence[Sequence[object]]) -> Markup:
    """The rows as JSON safe inside a `<script type="application/json">` element: `<`, `>` and
    `&` are written as \\u escapes, so no machine name can end the element."""
    text = json.dumps(
        {"fields": MACHINE_FIELDS, "rows": rows}, separators=(",", ":"), ensure_ascii=False
    )
    for character, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(character, escape)
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return Markup(text)
