"""What the report says beyond its month: the trend over months, showback by group, and the
month in progress (month to date and a run-rate projection), read from the warehouse.

Like `flows.report.data`, every figure is one query, summed by DuckDB; values reach SQL only as
bound parameters. The month in progress is read apart from the complete months and shown apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import duckdb

from flows.report.data import Assumptions, _number
from transforms.billing import HOURLY_OPTIONS
from transforms.forecast import RUN_RATE_DAYS, Projection, project

TREND_MONTHS = 12


@dataclass(frozen=True)
class TrendMonth:
    """One month of the trend: the estate's figures, as the month's report states them."""

    month: date
    complete: bool
    billed: float  # every Defender for Servers charge (fleet_comparison_monthly, estate)
    billed_p1: float  # of which on Plan 1 machines (licensing_options_monthly, option billed)
    billed_p2: float
    like_for_like: float  # keep the plans, MDE seats fixed per block (the configured rule)
    machines: int
    utilization: float  # average utilization of the covered machines


@dataclass(frozen=True)
class ShowbackGroup:
    kind: str  # value, missing (untagged), unattributed
    value: str | None
    machines: int
    billable_hours: float
    billed: float
    allocated: float
    like_for_like: float

    @property
    def label(self) -> str:
        if self.kind == "missing":
            return "(no value: untagged)"
        if self.kind == "unattributed":
            return "(charges on no machine)"
        return self.value or ""


@dataclass(frozen=True)
class Showback:
    """One group key's split of the month's bill; `billed` adds up to the estate's."""

    key: str
    groups: list[ShowbackGroup]  # largest billed first, untagged and unattributed last

    @property
    def billed(self) -> float:
        return sum(group.billed for group in self.groups)


@dataclass(frozen=True)
class MonthToDate:
    """The month in progress: never a result, always month to date with a run rate."""

    month: date
    as_of: datetime  # the present as the last collection saw it
    machines_billable_now: int
    billed: Projection  # cost data, through its last billed day
    hourly_list: Projection  # billable hours at list rates, through the last whole day
    remainder: Projection  # the plans' hourly part beyond the MDE component
    seats: int  # machines with covered billable hours so far: one seat each
    seat_cost: float

    @property
    def like_for_like_to_date(self) -> float:
        return self.seat_cost + self.remainder.month_to_date

    @property
    def like_for_like_projected(self) -> float:
        return self.seat_cost + self.remainder.projected


@dataclass(frozen=True)
class Periods:
    trends: list[TrendMonth]  # oldest first
    showback: list[Showback]
    month_to_date: MonthToDate | None


def load_periods(
    con: duckdb.DuckDBPyConnection,
    month: date,
    assumptions: Assumptions,
    currency: str,
    trend_from: date | None = None,
) -> Periods:
    """Trends (the TREND_MONTHS complete months up to `month`, or every month from
    `trend_from` to `month`), the showback of `month`, and the month in progress."""
    return Periods(
        trends=_trends(con, month, assumptions, trend_from),
        showback=_showback(con, month),
        month_to_date=_month_to_date(con, currency),
    )


def _trends(
    con: duckdb.DuckDBPyConnection,
    month: date,
    assumptions: Assumptions,
    trend_from: date | None,
) -> list[TrendMonth]:
    rows = con.execute(
        """
        WITH options AS (
            SELECT month,
                   bool_and(month_complete) AS complete,
                   sum(billed) FILTER (option = 'billed' AND plan = 'P1') AS billed_p1,
                   sum(billed) FILTER (option = 'billed' AND plan = 'P2') AS billed_p2,
                   sum(cost) FILTER (option = 'seats_plus_hourly_remainder'
                                     AND seat_option = $seat_option AND seat_rule = $rule)
                       AS like_for_like
            FROM licensing_options_monthly WHERE subscription_id IS NULL GROUP BY month
        ), use AS (
            SELECT month, avg(utilization) AS utilization
            FROM licensing_comparison_monthly WHERE plan IS NOT NULL GROUP BY month
        )
        SELECT f.month, coalesce(o.complete, false), CAST(f.billed_cost AS DOUBLE),
               CAST(o.billed_p1 AS DOUBLE), CAST(o.billed_p2 AS DOUBLE),
               CAST(o.like_for_like AS DOUBLE), f.machines_distinct,
               CAST(u.utilization AS DOUBLE)
        FROM fleet_comparison_monthly AS f
        LEFT JOIN options AS o USING (month) LEFT JOIN use AS u USING (month)
        WHERE f.subscription_id IS NULL AND f.month <= $month
              AND ($first IS NULL OR f.month >= $first)
        ORDER BY f.month
        """,
        {
            "month": month,
            "first": trend_from,
            "seat_option": assumptions.seat_option,
            "rule": assumptions.seat_rule,
        },
    ).fetchall()
    trend = [
        TrendMonth(
            month=row[0],
            complete=bool(row[1]),
            billed=_number(row[2]),
            billed_p1=_number(row[3]),
            billed_p2=_number(row[4]),
            like_for_like=_number(row[5]),
            machines=int(row[6] or 0),
            utilization=_number(row[7]),
        )
        for row in rows
    ]
    if trend_from is None:
        # The report's own month stays (its headline says whether it is complete); the months
        # before it count only when complete.
        trend = [t for t in trend if t.complete or t.month == month][-TREND_MONTHS:]
    return trend


def _showback(con: duckdb.DuckDBPyConnection, month: date) -> list[Showback]:
    rows = con.execute(
        """
        SELECT group_key, group_kind, group_value, machines, CAST(billable_hours AS DOUBLE),
               CAST(billed_cost AS DOUBLE), CAST(allocated_cost AS DOUBLE),
               CAST(like_for_like_cost AS DOUBLE)
        FROM showback_monthly WHERE month = ?
        ORDER BY group_key, group_kind = 'value' DESC, group_kind, billed_cost DESC, group_value
        """,
        [month],
    ).fetchall()
    keys: dict[str, list[ShowbackGroup]] = {}
    for row in rows:
        keys.setdefault(row[0], []).append(
            ShowbackGroup(
                kind=row[1],
                value=row[2],
                machines=int(row[3]),
                billable_hours=_number(row[4]),
                billed=_number(row[5]),
                allocated=_number(row[6]),
                like_for_like=_number(row[7]),
            )
        )
    return [Showback(key, groups) for key, groups in keys.items()]


def _month_to_date(con: duckdb.DuckDBPyConnection, currency: str) -> MonthToDate | None:
    """The month of the warehouse's present (`build_info.history_end`), if it is in progress."""
    (history_end,) = con.execute("SELECT max(history_end) FROM build_info").fetchone() or (None,)
    if history_end is None:
        return None
    as_of = history_end.astimezone(UTC)
    month = as_of.date().replace(day=1)
    if as_of == datetime.combine(month, time(), tzinfo=UTC):
        return None  # the history ends exactly at a month's start: no month in progress
    since = month - timedelta(days=RUN_RATE_DAYS)
    billed = dict(
        con.execute(
            "SELECT usage_date, CAST(sum(billed_cost) AS DOUBLE) FROM defender_charges_daily "
            "WHERE usage_date >= ? GROUP BY usage_date",
            [since],
        ).fetchall()
    )
    (billed_through,) = con.execute(
        "SELECT max(usage_date) FROM defender_charges_daily WHERE usage_date <= ?",
        [as_of.date()],
    ).fetchone() or (None,)
    hourly = con.execute(
        """
        WITH rates AS (
            SELECT option, CAST(rate AS DOUBLE) AS rate, effective_from, effective_to
            FROM prices WHERE kind = 'hourly' AND currency = $currency
        ), days AS (
            SELECT h.usage_date, p.plan, p.trial, h.billable_hours,
                   (SELECT rate FROM rates WHERE option = (CASE p.plan WHEN 'P1' THEN $p1
                                                                   ELSE $p2 END)
                      AND effective_from <= h.usage_date
                      AND (effective_to IS NULL OR h.usage_date < effective_to)
                    ORDER BY effective_from DESC LIMIT 1) AS plan_rate,
                   (SELECT rate FROM rates WHERE option = $p1
                      AND effective_from <= h.usage_date
                      AND (effective_to IS NULL OR h.usage_date < effective_to)
                    ORDER BY effective_from DESC LIMIT 1) AS p1_rate
            FROM machine_hours_daily AS h
            JOIN machine_plans_daily AS p USING (usage_date, resource_id)
            WHERE p.plan IS NOT NULL AND h.usage_date >= $since AND NOT p.trial
        ), component AS (SELECT any_value(mde_component) AS rates FROM build_info)
        SELECT usage_date,
               sum(billable_hours * plan_rate),
               sum(billable_hours * (plan_rate - coalesce(
                   TRY_CAST(json_extract_string(component.rates, '$.' || plan) AS DOUBLE),
                   p1_rate)))
        FROM days, component GROUP BY usage_date
        """,
        {
            "currency": currency,
            "p1": HOURLY_OPTIONS["P1"],
            "p2": HOURLY_OPTIONS["P2"],
            "since": since,
        },
    ).fetchall()
    seats, seat_cost = con.execute(
        "SELECT count(*), CAST(coalesce(sum(seat_cost), 0) AS DOUBLE) "
        "FROM licensing_comparison_monthly WHERE month = ? AND mde_component_cost > 0",
        [month],
    ).fetchone() or (0, 0.0)
    (now_billable,) = con.execute(
        "SELECT count(DISTINCT resource_id) FROM power_intervals "
        "WHERE billable AND start_at < ? AND end_at >= ?",
        [as_of, as_of],
    ).fetchone() or (0,)
    last_whole_day = (datetime.combine(as_of.date(), time(), tzinfo=UTC) - timedelta(days=1)).date()
    hours_through = max(last_whole_day, month - timedelta(days=1))
    cost_through = billed_through or month - timedelta(days=1)
    return MonthToDate(
        month=month,
        as_of=as_of,
        machines_billable_now=int(now_billable),
        billed=project(billed, month, cost_through),
        hourly_list=project({row[0]: _number(row[1]) for row in hourly}, month, hours_through),
        remainder=project({row[0]: _number(row[2]) for row in hourly}, month, hours_through),
        seats=int(seats),
        seat_cost=_number(seat_cost),
    )
