"""The month's answer as (measure, value) lines: the demo's terminal table and the scheduled
run's Prefect artifact say the same thing the report's headline says, in the same words."""

from __future__ import annotations

from flows.report.data import ReportData
from flows.report.html import PLAN_NAMES, SEAT_NAMES, block_name


def _money(value: float, currency: str) -> str:
    return f"{value:,.2f} {currency}"


def summary_lines(data: ReportData) -> list[tuple[str, str]]:
    """Per plan, what was billed against keeping the plan with MDE seats (seats fixed per
    reassignment block), the P2 -> P1 what-if, the lower-bound peak and the findings."""
    headline = data.headline
    currency = headline.currency
    block = block_name(data.assumptions.seat_reassignment_days)
    seat = SEAT_NAMES.get(data.assumptions.seat_option, data.assumptions.seat_option)
    status = "complete" if data.month_complete else "month to date: not a result"
    lines = [
        ("month", f"{data.month:%B %Y} ({status})"),
        (
            "machines / billable hours",
            f"{headline.machines_distinct} / {headline.billable_hours:,.1f}",
        ),
        ("billed by Cost Management", _money(headline.billed_cost, currency)),
    ]
    for answer in data.plan_answers:
        plan = PLAN_NAMES[answer.plan]
        verdict = "less" if answer.difference < 0 else "more"
        lines += [
            (f"{plan}: billed ({answer.machines} machines)", _money(answer.billed, currency)),
            (
                f"{plan} kept, MDE part by {answer.seats} {seat} seats per {block}",
                f"{_money(answer.like_for_like, currency)} "
                f"({_money(abs(answer.difference), currency)} {verdict})",
            ),
        ]
        if answer.p1_instead is not None:
            lines.append(
                (
                    "Plan 2 -> Plan 1, same hours (loses Plan 2's features)",
                    _money(answer.p1_instead, currency),
                )
            )
    lines.append(
        ("peak machines at once (lower bound, not a licence count)",
         str(headline.peak_concurrent_machines))
    )  # fmt: skip
    lines += [
        (f"finding: {kind.finding}", f"{kind.count} ({_money(kind.amount, currency)})")
        for kind in data.finding_kinds
    ]
    return lines
