"""cost_anomaly and plan_changed, by hand."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from transforms.anomalies import AnomalyRule, cost_anomalies, plan_changes

MONTHS = [date(2026, 7, 1), date(2026, 8, 1), date(2026, 9, 1), date(2026, 10, 1)]


def series(rows: dict[str, list[tuple[float, float]]], complete: bool = True) -> pl.LazyFrame:
    """subscription -> (billed, hours) for July..October 2026."""
    frames = [
        {
            "subscription_id": subscription,
            "month": month,
            "billed_cost": billed,
            "billable_hours": hours,
            "complete": complete,
        }
        for subscription, values in rows.items()
        for month, (billed, hours) in zip(MONTHS, values, strict=False)
    ]
    return pl.LazyFrame(frames)


def anomalies(frame: pl.LazyFrame, rule: AnomalyRule | None = None) -> pl.DataFrame:
    return cost_anomalies(
        frame,
        scope=pl.format("subscription {}", "subscription_id"),
        keys=["subscription_id"],
        rule=rule or AnomalyRule(),
        currency="USD",
    ).collect()


def test_a_jump_without_hours_is_an_anomaly_and_growth_in_machines_is_not():
    found = anomalies(
        series(
            {
                # the jump: median of 100, 110, 90 = 100 billed, of 5000 h = 5000 h; October
                # bills 200 on 5000 h: +100% cost, +0% hours; unexplained 200 - 100 x 1 = 100
                "jump": [(100, 5000), (110, 5000), (90, 5000), (200, 5000)],
                # growth: half as many machines again: median 100 billed on 5000 h (of 5000,
                # 5500, 4500); October 150 on 7500 h: +50% and +50%, explained by the hours
                "growth": [(100, 5000), (110, 5500), (90, 4500), (150, 7500)],
                # a drop within the threshold: 80 on 5000 h is -20%, not beyond 25%
                "steady": [(100, 5000), (100, 5000), (100, 5000), (80, 5000)],
            }
        )
    )
    assert found.select("subscription_id", "month", "finding", "amount").rows() == [
        ("jump", date(2026, 10, 1), "cost_anomaly", 100.0)
    ]
    assert found["detail"].item() == (
        "subscription jump: billed 200.0 USD against a trailing 3-month median of 100.0 USD "
        "(100.0%) while billable hours moved 0.0% (5000.0 h against a median of 5000.0 h)"
    )
    assert found["resource_id"].item() is None


def test_charges_without_uptime_are_an_anomaly():
    # median 40 billed on 0 h (a workspace's charges); October 100 on 0 h: +150%, hours 0%:
    # unexplained 100 - 40 = 60
    found = anomalies(series({"workspace": [(40, 0), (30, 0), (50, 0), (100, 0)]}))
    assert found.select("subscription_id", "amount").rows() == [("workspace", 60.0)]


def test_incomplete_months_short_histories_and_small_amounts_are_not_judged():
    jump = {"jump": [(100, 5000), (110, 5000), (90, 5000), (200, 5000)]}
    assert anomalies(series(jump, complete=False)).height == 0
    # three months: October has only two before it... here the last has two, so none judged
    assert anomalies(series({"short": [(100, 5000), (100, 5000), (300, 5000)]})).height == 0
    # a higher bar: +100% against a 150% threshold is no anomaly
    assert anomalies(series(jump), AnomalyRule(threshold_percent=150)).height == 0
    # the unexplained 100 below a 150 minimum amount is no anomaly either
    assert anomalies(series(jump), AnomalyRule(min_amount=150)).height == 0


def plans(rows: list[tuple[str, str, date, str | None]]) -> pl.LazyFrame:
    return pl.LazyFrame(
        rows,
        schema={
            "subscription_id": pl.String,
            "resource_id": pl.String,
            "usage_date": pl.Date,
            "plan": pl.String,
        },
        orient="row",
    ).with_columns(plan_source=pl.lit("billed"), trial=pl.lit(False))


def days(first: date, count: int) -> list[date]:
    return [first + timedelta(days=k) for k in range(count)]


def test_a_subscription_wide_change_is_one_finding_and_a_machine_change_its_own():
    enabled = date(2026, 10, 20)
    rows = []
    # sandbox: both machines off until the 20th, Plan 1 from it: the subscription changed
    for machine in ("sandbox-1", "sandbox-2"):
        for day in days(date(2026, 10, 18), 4):
            rows.append(("sandbox", machine, day, "P1" if day >= enabled else None))
    # shared: one of three machines P1 -> P2 on the 16th (its resource-level P1 removed)
    for day in days(date(2026, 10, 15), 3):
        rows.append(("shared", "shared-1", day, "P2" if day >= date(2026, 10, 16) else "P1"))
        rows.append(("shared", "shared-2", day, "P2"))
        rows.append(("shared", "shared-3", day, "P2"))
    # a machine first seen on the 17th has no day before: no change
    rows.append(("shared", "shared-new", date(2026, 10, 17), "P1"))
    found = plan_changes(plans(rows)).collect().sort("subscription_id")
    assert found.select("subscription_id", "resource_id", "month", "finding", "detail").rows() == [
        (
            "sandbox",
            None,
            date(2026, 10, 1),
            "plan_changed",
            "subscription's Defender for Servers plan none -> P1 on 2026-10-20 (2 of 2 machines)",
        ),
        (
            "shared",
            "shared-1",
            date(2026, 10, 1),
            "plan_changed",
            "Defender for Servers plan P1 -> P2 on 2026-10-16",
        ),
    ]
    assert found["amount"].to_list() == [None, None]
