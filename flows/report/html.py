"""`report.html`: one self-contained page (inline CSS, inline SVG, one inline script for the
machines table, no fetch: it reads offline and, scripts off, still reads as a document).

Built from `ReportData` by a Jinja2 template with autoescaping, so any text from the estate
(machine names, finding details, price sources) is shown, never interpreted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from flows.report import charts, formatting
from flows.report.data import MachineSaving, ReportData
from flows.report.periods import Periods
from flows.report.sections import (
    MACHINE_PAGE_ROWS,
    build_period_charts,
    machine_table,
    machines_json,
)
from transforms.billing import (
    ARC_BILLABLE_STATES,
    ARC_STATES,
    LOST_WITHOUT_DEFENDER_FOR_SERVERS,
    PARTIAL_HOURS_MODES,
    SEAT_REQUIREMENTS,
    VM_BILLABLE_STATES,
    VM_POWER_STATES,
)

# What each finding means to a finance reader; kinds not listed are shown by their code.
FINDING_MEANINGS: Mapping[str, str] = {
    "billed_while_not_billable": "Billed for hours when the machine was not in a billable state",
    "billable_not_billed": "Billable hours observed that Microsoft did not bill (yet)",
    "no_mde_sensor": "Paying for Defender for Servers on a machine without the MDE sensor",
    "mde_benefit_unclaimed": "MDE seats owned while Defender for Servers bills the MDE part in "
    "full: a support ticket can discount it, from approval, not backdated",
    "mde_benefit_not_applied": "Full-rate meters after the MDE benefit was approved",
    "stopped_allocated": "Billable while stopped but still allocated: deallocate instead",
    "defender_off": "Machine not covered by Defender for Servers (no amount: nothing billed)",
    "cost_anomaly": "A month's billed cost moved against the 3 months before it without a "
    "matching change in billable hours (amount: what the hours do not explain)",
    "plan_changed": "A subscription or machine changed Defender for Servers plan",
    "duplicate_onboarding": "Arc server also billed as onboarded directly through Defender for "
    "Endpoint: the same server paid twice (update its agent)",
}
# Where a server runs (`machines.provider`), as a finance reader says it.
PROVIDER_NAMES: Mapping[str, str] = {
    "azure": "Azure",
    "on_premises": "On premises (Azure Arc)",
    "aws": "AWS (Azure Arc, connector)",
    "gcp": "GCP (Azure Arc, connector)",
    "unknown": "Unknown (Arc machines removed before an inventory listed them)",
}
# Why a charge is on no machine (`defender_charges_daily.attribution_detail`), in words.
UNATTRIBUTED_REASONS: Mapping[str, str] = {
    "connector": "on multicloud connectors",
    "direct_onboarding": "on servers onboarded directly through Defender for Endpoint",
    "unknown_machine": "on machine ids never collected",
    "non_machine_resource": "on other resources (e.g. Log Analytics workspaces)",
    "no_covered_machine": "subscription-level, with no covered billable machine that day",
    "no_resource_id": "naming no resource",
}
# The page lists this many findings, largest first, and charts this many subscriptions,
# largest billed first; the tables and the workbook have every one.
FINDINGS_SHOWN = 100
SUBSCRIPTIONS_CHARTED = 15
PARTIAL_HOURS_MEANINGS: Mapping[str, str] = {
    "fractional": "a partial hour counts as the fraction of the hour the machine was billable",
    "round_up_clock_hour": "every clock hour in which the machine was billable at all counts "
    "as a whole hour",
}


@dataclass(frozen=True)
class ChartSet:
    cost_by_subscription: Markup
    utilization: Markup
    machine_savings: Markup
    findings_by_kind: Markup


def build_charts(data: ReportData) -> ChartSet:
    """The report's four charts as inline SVG, from the report data alone."""
    currency = data.headline.currency

    def money(value: float) -> str:
        return formatting.money(value, currency)

    def axis(value: float) -> str:
        return formatting.money_compact(value, currency)

    block = block_name(data.assumptions.seat_reassignment_days)
    series = [
        ("Billed (Cost Management)", charts.BLUE),
        ("Hourly at list rates", charts.SKY),
        (f"Keep the plan, MDE seats per {block}", charts.ORANGE),
        ("Keep the plan, an MDE seat per machine", charts.VERMILLION),
    ]
    subscription_groups = [
        charts.BarGroup(
            # The subscription's first 8 characters: the table below has the whole id.
            label=f"{str(row.subscription_id)[:8]}… · {row.plan}",
            sublabel=f"{row.machines} machines, {row.seats} seats per {block}",
            bars=[
                charts.Bar(
                    value, name, f"{row.subscription_id} {row.plan} · {name}: {money(value)}"
                )
                for (name, _), value in zip(
                    series,
                    (row.billed, row.hourly_list, row.like_for_like, row.like_for_like_per_machine),
                    strict=True,
                )
            ],
        )
        for row in data.subscription_answers[:SUBSCRIPTIONS_CHARTED]
    ]
    cost_by_subscription = charts.horizontal_bar_chart(
        "cost-by-subscription",
        "Billed versus keeping the plan with MDE seats, by subscription and plan",
        subscription_groups,
        series,
        money,
        axis,
    )

    utilization = charts.histogram(
        "utilization-histogram",
        "Machines by share of the month they were billable",
        [(bucket.label, bucket.machines) for bucket in data.utilization],
        [
            charts.Marker(
                point.utilization,
                f"{point.plan} break-even {formatting.percent(point.utilization)}",
            )
            for point in data.break_even
        ],
        "share of the month billable (utilization)",
    )

    def saving_bar(machine: MachineSaving) -> charts.BarGroup:
        verdict = (
            "MDE part cheaper by the hour" if machine.per_hour_savings > 0 else "a seat cheaper"
        )
        return charts.BarGroup(
            label=machine.machine_name,
            sublabel=f"{machine.plan} · {formatting.percent(machine.utilization)} billable",
            bars=[
                charts.Bar(
                    machine.per_hour_savings,
                    "saving" if machine.per_hour_savings > 0 else "overpayment",
                    f"{machine.resource_id}: {verdict} by {money(abs(machine.per_hour_savings))}",
                )
            ],
        )

    machine_savings = charts.horizontal_bar_chart(
        "machine-savings",
        "Machines where the MDE part costs least by the hour, and where a seat would cost less",
        [saving_bar(machine) for machine in (*data.top_savings, *data.top_overpayments)],
        [("saving", charts.GREEN), ("overpayment", charts.VERMILLION)],
        money,
        axis,
    )

    findings_by_kind = charts.horizontal_bar_chart(
        "findings-by-kind",
        "Amounts at stake by finding",
        [
            charts.BarGroup(
                label=kind.finding,
                sublabel=f"{kind.count} finding{'s' if kind.count != 1 else ''}",
                bars=[charts.Bar(kind.amount, "amount", f"{kind.finding}: {money(kind.amount)}")],
            )
            for kind in data.finding_kinds
        ],
        [("amount", charts.PURPLE)],
        money,
        axis,
    )
    return ChartSet(
        cost_by_subscription=Markup(cost_by_subscription),
        utilization=Markup(utilization),
        machine_savings=Markup(machine_savings),
        findings_by_kind=Markup(findings_by_kind),
    )


PLAN_NAMES: Mapping[str, str] = {"P1": "Plan 1", "P2": "Plan 2"}
SEAT_NAMES: Mapping[str, str] = {
    "mde_for_servers": "MDE for Servers",
    "defender_business_servers": "Defender for Business servers",
}


def block_name(reassignment_days: int) -> str:
    """What a block of seats is called: a quarter for 90 days, else its days."""
    return "quarter" if reassignment_days == 90 else f"{reassignment_days}-day period"


def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("flows.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["money"] = formatting.money
    environment.filters["hours"] = formatting.hours
    environment.filters["percent"] = formatting.percent
    return environment


def render_html(
    data: ReportData,
    *,
    warehouse_name: str,
    generated_at: datetime,
    partial_hours: str,
    overrides: Mapping[str, str],
    periods: Periods | None = None,
    trend_range: bool = False,
) -> str:
    """The whole page as a string; `overrides` lists configured price changes (option: what);
    `periods` the trend, showback and month in progress (none: those sections are left out);
    `trend_range` says the trend's months were asked for (`--months`)."""
    if partial_hours not in PARTIAL_HOURS_MODES:
        raise ValueError(
            f"partial_hours {partial_hours!r} is not one of {', '.join(PARTIAL_HOURS_MODES)}"
        )
    periods = periods or Periods(trends=[], showback=[], month_to_date=None)
    block = block_name(data.assumptions.seat_reassignment_days)
    machines = machine_table(data)
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            data=data,
            headline=data.headline,
            currency=data.headline.currency,
            charts=build_charts(data),
            warehouse_name=warehouse_name,
            generated_at=generated_at,
            findings=data.findings.to_pylist(),
            findings_shown=FINDINGS_SHOWN,
            subscriptions_charted=SUBSCRIPTIONS_CHARTED,
            prices=data.prices.to_pylist(),
            finding_meanings=FINDING_MEANINGS,
            vm_billable=[s for s in VM_POWER_STATES if s in VM_BILLABLE_STATES],
            vm_not_billable=[s for s in VM_POWER_STATES if s not in VM_BILLABLE_STATES],
            arc_billable=[s for s in ARC_STATES if s in ARC_BILLABLE_STATES],
            arc_not_billable=[s for s in ARC_STATES if s not in ARC_BILLABLE_STATES],
            partial_hours=partial_hours,
            partial_hours_meaning=PARTIAL_HOURS_MEANINGS[partial_hours],
            other_partial_hours=[m for m in PARTIAL_HOURS_MODES if m != partial_hours],
            overrides=overrides,
            plan_names=PLAN_NAMES,
            seat_name=SEAT_NAMES.get(data.assumptions.seat_option, data.assumptions.seat_option),
            seat_requirement=SEAT_REQUIREMENTS.get(data.assumptions.seat_option),
            block_name=block,
            p2_lost=LOST_WITHOUT_DEFENDER_FOR_SERVERS["P2"],
            provider_names=PROVIDER_NAMES,
            unattributed_reasons=UNATTRIBUTED_REASONS,
            periods=periods,
            period_charts=build_period_charts(data, periods, block),
            trend_range=trend_range,
            machine_rows=machines.head(MACHINE_PAGE_ROWS).rows(),
            machine_count=machines.height,
            machine_page_rows=MACHINE_PAGE_ROWS,
            machines_json=machines_json(machines),
        )
    )
