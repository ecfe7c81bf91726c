"""What the finance report says, read from the warehouse and shaped for rendering.

Every number in the report comes from one query here, so the HTML, the CSV and the workbook
cannot disagree. Totals are summed by DuckDB (exact on the warehouse's own types) and only then
converted to float for display. The connection is the caller's and is only read; values reach
SQL only as bound parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date

import duckdb
import pyarrow as pa

from transforms.contract import VIEWS

# The machine x month columns of `licensing_comparison_monthly`, in the warehouse contract's
# order: the CSV and the workbook's `machines` sheet carry exactly these.
MACHINE_COLUMNS: tuple[str, ...] = tuple(VIEWS["licensing_comparison_monthly"]["columns"])
# The `licensing_options_monthly` columns: the CSV beside the report and a workbook sheet.
OPTION_COLUMNS: tuple[str, ...] = tuple(VIEWS["licensing_options_monthly"]["columns"])
# The `findings` columns less `month` (one month per report), plus the machine's name.
FINDING_COLUMNS: tuple[str, ...] = (
    "resource_id",
    "subscription_id",
    "machine_name",
    "finding",
    "detail",
    "amount",
    "currency",
)
# Utilization histogram: ten buckets of ten percentage points, the last one closed (100% is in
# 90-100%). The epsilon keeps a ratio like 511/730, stored as 0.6999999..., in the 70% bucket
# it equals rather than the one below.
UTILIZATION_BUCKETS = 10
_BUCKET_EPSILON = 1e-9
TOP_MACHINES = 10


class ReportDataError(LookupError):
    """The warehouse cannot produce the report for the month asked; the message says why."""


@dataclass(frozen=True)
class Headline:
    """The figures a finance reader looks at first, for the whole estate and one month."""

    currency: str
    billed_cost: float  # every Defender for Servers charge of the month, from Cost Management
    allocated_cost: float  # of which shares of subscription-level charges (by billable hours)
    unattributed_cost: float  # of which charges no machine could carry
    hourly_cost: float  # observed billable hours x the plan's hourly rate in force
    seat_cost_distinct: float  # one seat per distinct machine
    seat_cost_peak: float  # seats = peak concurrent billable machines
    machines_distinct: int
    peak_concurrent_machines: int
    billable_hours: float
    billed_hours: float
    findings_count: int

    @property
    def difference_distinct(self) -> float:
        """Per-seat (one per machine) minus what was billed: positive, per-hour saved money."""
        return self.seat_cost_distinct - self.billed_cost

    @property
    def difference_peak(self) -> float:
        """Per-seat (peak concurrent) minus what was billed: positive, per-hour saved money."""
        return self.seat_cost_peak - self.billed_cost


@dataclass(frozen=True)
class SubscriptionCosts:
    """One subscription's row of `fleet_comparison_monthly`."""

    subscription_id: str | None  # None for the whole estate
    machines_distinct: int
    peak_concurrent_machines: int
    billable_hours: float
    billed_cost: float
    hourly_cost: float
    seat_cost_distinct: float
    seat_cost_peak: float


@dataclass(frozen=True)
class ProviderCosts:
    """The month's machines that run in one place (`machines.provider`: azure, on_premises, aws,
    gcp): Azure VMs and scale-set instances, and Arc machines outside Azure."""

    provider: str
    machines: int
    arc_machines: int
    billable_hours: float
    billed_cost: float
    hourly_cost: float


@dataclass(frozen=True)
class MachineTotals:
    """Column totals of the month's machine rows, as the warehouse sums them."""

    machines: int
    billable_hours: float
    billed_hours: float
    billed_cost: float
    hourly_cost: float
    seat_cost: float
    per_hour_savings: float


@dataclass(frozen=True)
class UtilizationBucket:
    lower_percent: int
    upper_percent: int
    machines: int

    @property
    def label(self) -> str:
        return f"{self.lower_percent}\N{EN DASH}{self.upper_percent}%"


@dataclass(frozen=True)
class MachineSaving:
    """A machine's per-hour saving versus one seat (negative: per-seat would have been cheaper)."""

    resource_id: str
    machine_name: str
    subscription_id: str
    plan: str
    utilization: float
    per_hour_savings: float


@dataclass(frozen=True)
class FindingKind:
    finding: str
    count: int
    amount: float  # findings without an amount count as zero here


@dataclass(frozen=True)
class BreakEven:
    """The utilization above which one seat is cheaper than paying by the hour, for a plan."""

    plan: str
    utilization: float


@dataclass(frozen=True)
class PlanAnswer:
    """The licensing answer for one plan and one scope (the estate, or a subscription), from
    `licensing_options_monthly`: what was billed against the options a customer can buy."""

    subscription_id: str | None
    plan: str
    machines: int
    billed: float
    hourly_list: float
    seats: int  # seats fixed per reassignment block (the licensable count)
    seats_per_machine: int
    like_for_like: float  # keep Defender for Servers, bring MDE seats (reassignment rule)
    like_for_like_per_machine: float
    seats_only: float  # Defender for Servers off, seats alone
    p1_instead: float | None  # P2 only: the same hours at the P1 rate
    eligible: bool
    eligibility_note: str
    seats_only_note: str
    p1_note: str | None
    month_complete: bool

    @property
    def difference(self) -> float:
        """like_for_like - billed: negative, seats would have cost less than the bill."""
        return self.like_for_like - self.billed


@dataclass(frozen=True)
class Assumptions:
    """The settings the licensing answer rests on, as `build_info` recorded them."""

    seat_option: str
    seat_rule: str
    seat_term: str
    monthly_term_uplift_percent: float
    seat_reassignment_days: int
    mde_component: str  # JSON as recorded: per-plan rates, or {} for the P1 rate
    seat_eligibility: str  # JSON as recorded


@dataclass(frozen=True)
class ReportData:
    month: date
    headline: Headline
    subscriptions: list[SubscriptionCosts]  # largest billed first
    estate: SubscriptionCosts  # the estate row of fleet_comparison_monthly (subscription_id NULL)
    machines: pa.Table  # MACHINE_COLUMNS, one row per machine
    machine_totals: MachineTotals
    utilization: list[UtilizationBucket]
    top_savings: list[MachineSaving]
    top_overpayments: list[MachineSaving]
    break_even: list[BreakEven]
    findings: pa.Table  # FINDING_COLUMNS, largest amounts first
    findings_total: float
    finding_kinds: list[FindingKind]
    prices: pa.Table  # the warehouse `prices` rows in force during the month
    seat_options: list[str]
    machines_cheaper: dict[str, int]  # `cheaper` value -> machines, e.g. {"per_hour": 40}
    plan_answers: list[PlanAnswer]  # the estate's, P1 then P2
    subscription_answers: list[PlanAnswer]  # per subscription and plan, largest billed first
    options: pa.Table  # the month's rows of licensing_options_monthly, every scope
    assumptions: Assumptions
    providers: list[ProviderCosts] = field(default_factory=list)  # largest billed first
    # Charges on no machine by reason (`attribution_detail`: connector, direct_onboarding, ...).
    unattributed_by_reason: dict[str, float] = field(default_factory=dict)
    # Subscription GUID -> display name (the warehouse's `subscriptions`), shown beside GUIDs.
    subscription_names: dict[str, str] = field(default_factory=dict)

    @property
    def month_complete(self) -> bool:
        """Whether the month's cost data is complete: headlines are for complete months only."""
        return all(answer.month_complete for answer in self.plan_answers)


def month_bounds(month: date) -> tuple[date, date]:
    """[first day of `month`, first day of the next month)."""
    start = month.replace(day=1)
    end = date(start.year + start.month // 12, start.month % 12 + 1, 1)
    return start, end


def load_report_data(con: duckdb.DuckDBPyConnection, month: date, warehouse: str) -> ReportData:
    """Read everything the report shows for `month`; `warehouse` names the file in errors.

    Raises ReportDataError when the month has no machine rows (naming the months that do),
    when the estate row is missing, or when the month mixes currencies.
    """
    start, end = month_bounds(month)
    try:
        return _load(con, start, end, warehouse)
    except (duckdb.CatalogException, duckdb.BinderException) as error:
        raise ReportDataError(
            f"warehouse {warehouse} lacks a view or column the report reads "
            f"({str(error).splitlines()[0]}); "
            "rebuild it with `mdecost build`"
        ) from None


def _load(con: duckdb.DuckDBPyConnection, start: date, end: date, warehouse: str) -> ReportData:
    machines = _machines(con, start)
    if machines.num_rows == 0:
        raise ReportDataError(_no_data_message(con, start, warehouse))
    currency = _single_currency(con, start, end, warehouse)
    subscriptions, estate = _fleet(con, start, warehouse)
    charges = _charges(con, start, end)
    findings = _findings(con, start)
    assumptions = _assumptions(con)
    answers = _plan_answers(con, start, assumptions)
    return ReportData(
        month=start,
        headline=Headline(
            currency=currency,
            billed_cost=estate.billed_cost,
            allocated_cost=charges["allocated_cost"],
            unattributed_cost=charges["unattributed_cost"],
            hourly_cost=estate.hourly_cost,
            seat_cost_distinct=estate.seat_cost_distinct,
            seat_cost_peak=estate.seat_cost_peak,
            machines_distinct=estate.machines_distinct,
            peak_concurrent_machines=estate.peak_concurrent_machines,
            billable_hours=estate.billable_hours,
            billed_hours=charges["billed_hours"],
            findings_count=findings.num_rows,
        ),
        subscriptions=subscriptions,
        estate=estate,
        machines=machines,
        machine_totals=_machine_totals(con, start),
        utilization=_utilization(con, start),
        top_savings=_extreme_savings(con, start, largest_savings=True),
        top_overpayments=_extreme_savings(con, start, largest_savings=False),
        break_even=_break_even(con, start),
        findings=findings,
        findings_total=_findings_total(con, start),
        finding_kinds=_finding_kinds(con, start),
        prices=_prices(con, start, end, currency),
        seat_options=[
            row[0]
            for row in con.execute(
                "SELECT DISTINCT seat_option FROM licensing_comparison_monthly "
                "WHERE month = ? AND seat_option IS NOT NULL ORDER BY 1",
                [start],
            ).fetchall()
        ],
        machines_cheaper=dict(
            con.execute(
                "SELECT cheaper, count(*) FROM licensing_comparison_monthly "
                "WHERE month = ? AND cheaper IS NOT NULL GROUP BY cheaper ORDER BY cheaper",
                [start],
            ).fetchall()
        ),
        plan_answers=[answer for answer in answers if answer.subscription_id is None],
        subscription_answers=sorted(
            (answer for answer in answers if answer.subscription_id is not None),
            key=lambda answer: (-answer.billed, answer.subscription_id or "", answer.plan),
        ),
        options=con.sql(
            f"SELECT {', '.join(OPTION_COLUMNS)} FROM licensing_options_monthly WHERE month = ? "
            "ORDER BY subscription_id NULLS FIRST, plan, option, seat_option, seat_rule",
            params=[start],
        ).to_arrow_table(),
        assumptions=assumptions,
        providers=_providers(con, start),
        unattributed_by_reason=_unattributed_by_reason(con, start, end),
        subscription_names=_subscription_names(con),
    )


def _providers(con: duckdb.DuckDBPyConnection, start: date) -> list[ProviderCosts]:
    rows = con.execute(
        """
        SELECT coalesce(m.provider, 'unknown'), count(*),
               count(*) FILTER (WHERE l.machine_kind = 'arc'),
               CAST(coalesce(sum(l.billable_hours), 0) AS DOUBLE),
               CAST(coalesce(sum(l.billed_cost), 0) AS DOUBLE),
               CAST(coalesce(sum(l.hourly_cost), 0) AS DOUBLE)
        FROM licensing_comparison_monthly l LEFT JOIN machines m USING (resource_id)
        WHERE l.month = ?
        GROUP BY 1 ORDER BY 5 DESC, 1
        """,
        [start],
    ).fetchall()
    return [ProviderCosts(row[0], int(row[1]), int(row[2]), *row[3:]) for row in rows]


def _unattributed_by_reason(
    con: duckdb.DuckDBPyConnection, start: date, end: date
) -> dict[str, float]:
    return dict(
        con.execute(
            """
            SELECT coalesce(attribution_detail, 'unattributed'), CAST(sum(billed_cost) AS DOUBLE)
            FROM defender_charges_daily
            WHERE attribution = 'unattributed' AND usage_date >= ? AND usage_date < ?
            GROUP BY 1 ORDER BY 2 DESC, 1
            """,
            [start, end],
        ).fetchall()
    )


def _subscription_names(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Display names by subscription GUID; none from a warehouse built before names were kept."""
    tables = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'subscriptions'"
    ).fetchone()
    if not tables or not tables[0]:
        return {}
    rows = con.execute(
        "SELECT subscription_id, display_name FROM subscriptions WHERE display_name IS NOT NULL"
    ).fetchall()
    return {subscription: name for subscription, name in rows}


def _machines(con: duckdb.DuckDBPyConnection, start: date) -> pa.Table:
    columns = ", ".join(MACHINE_COLUMNS)
    return con.sql(
        f"SELECT {columns} FROM licensing_comparison_monthly WHERE month = ? "
        "ORDER BY subscription_id, machine_name, resource_id",
        params=[start],
    ).to_arrow_table()


def _no_data_message(con: duckdb.DuckDBPyConnection, start: date, warehouse: str) -> str:
    present = [
        row[0].strftime("%Y-%m")
        for row in con.execute(
            "SELECT DISTINCT month FROM licensing_comparison_monthly ORDER BY month"
        ).fetchall()
    ]
    months = ", ".join(present) if present else "none"
    _, end = month_bounds(start)
    return (
        f"no data for {start:%Y-%m} in warehouse {warehouse}: licensing_comparison_monthly has "
        f"no machine rows for that month (months present: {months}); collect and build it "
        f"first, e.g. `mdecost run --start {start.isoformat()} --end {end.isoformat()}`"
    )


def _single_currency(con: duckdb.DuckDBPyConnection, start: date, end: date, warehouse: str) -> str:
    """The one currency of the month's money; a report that adds two currencies would lie."""
    currencies = [
        row[0]
        for row in con.execute(
            """
            SELECT currency FROM licensing_comparison_monthly WHERE month = ?
            UNION SELECT currency FROM fleet_comparison_monthly WHERE month = ?
            UNION SELECT currency FROM findings WHERE month = ? AND amount IS NOT NULL
            UNION SELECT currency FROM defender_charges_daily
                  WHERE usage_date >= ? AND usage_date < ?
            ORDER BY 1
            """,
            [start, start, start, start, end],
        ).fetchall()
    ]
    if len(currencies) != 1 or currencies[0] is None:
        raise ReportDataError(
            f"the {start:%Y-%m} rows of warehouse {warehouse} carry currencies "
            f"{', '.join(str(c) for c in currencies)}; the report compares in one currency: "
            "set [pricing] currency to the billing currency and rebuild"
        )
    return str(currencies[0])


def _fleet(
    con: duckdb.DuckDBPyConnection, start: date, warehouse: str
) -> tuple[list[SubscriptionCosts], SubscriptionCosts]:
    rows = con.execute(
        """
        SELECT subscription_id, machines_distinct, peak_concurrent_machines,
               CAST(billable_hours AS DOUBLE), CAST(billed_cost AS DOUBLE),
               CAST(hourly_cost AS DOUBLE), CAST(seat_cost_distinct AS DOUBLE),
               CAST(seat_cost_peak AS DOUBLE)
        FROM fleet_comparison_monthly WHERE month = ?
        ORDER BY subscription_id IS NOT NULL, billed_cost DESC, subscription_id
        """,
        [start],
    ).fetchall()
    fleet = [
        SubscriptionCosts(
            subscription_id=row[0],
            machines_distinct=int(row[1]),
            peak_concurrent_machines=int(row[2]),
            billable_hours=_number(row[3]),
            billed_cost=_number(row[4]),
            hourly_cost=_number(row[5]),
            seat_cost_distinct=_number(row[6]),
            seat_cost_peak=_number(row[7]),
        )
        for row in rows
    ]
    estates = [row for row in fleet if row.subscription_id is None]
    if len(estates) != 1:
        raise ReportDataError(
            f"fleet_comparison_monthly in warehouse {warehouse} has {len(estates)} estate rows "
            f"(subscription_id NULL) for {start:%Y-%m}, expected one; rebuild the warehouse"
        )
    return [row for row in fleet if row.subscription_id is not None], estates[0]


def _charges(con: duckdb.DuckDBPyConnection, start: date, end: date) -> dict[str, float]:
    """How the month's charges were attributed, and the hours Microsoft billed."""
    row = _aggregate(
        con,
        """
        SELECT CAST(coalesce(sum(billed_cost) FILTER (attribution = 'allocated'), 0) AS DOUBLE),
               CAST(coalesce(sum(billed_cost) FILTER (attribution = 'unattributed'), 0)
                    AS DOUBLE),
               CAST(coalesce(sum(billed_hours), 0) AS DOUBLE)
        FROM defender_charges_daily WHERE usage_date >= ? AND usage_date < ?
        """,
        [start, end],
    )
    return {"allocated_cost": row[0], "unattributed_cost": row[1], "billed_hours": row[2]}


def _machine_totals(con: duckdb.DuckDBPyConnection, start: date) -> MachineTotals:
    row = _aggregate(
        con,
        """
        SELECT count(*),
               CAST(coalesce(sum(billable_hours), 0) AS DOUBLE),
               CAST(coalesce(sum(billed_hours), 0) AS DOUBLE),
               CAST(coalesce(sum(billed_cost), 0) AS DOUBLE),
               CAST(coalesce(sum(hourly_cost), 0) AS DOUBLE),
               CAST(coalesce(sum(seat_cost), 0) AS DOUBLE),
               CAST(coalesce(sum(per_hour_savings), 0) AS DOUBLE)
        FROM licensing_comparison_monthly WHERE month = ?
        """,
        [start],
    )
    return MachineTotals(int(row[0]), *row[1:])


def _utilization(con: duckdb.DuckDBPyConnection, start: date) -> list[UtilizationBucket]:
    counts = dict(
        con.execute(
            """
            SELECT least(greatest(CAST(floor(utilization * ? + ?) AS INTEGER), 0), ? - 1),
                   count(*)
            FROM licensing_comparison_monthly
            WHERE month = ? AND utilization IS NOT NULL
            GROUP BY 1
            """,
            [UTILIZATION_BUCKETS, _BUCKET_EPSILON, UTILIZATION_BUCKETS, start],
        ).fetchall()
    )
    width = 100 // UTILIZATION_BUCKETS
    return [
        UtilizationBucket(bucket * width, (bucket + 1) * width, int(counts.get(bucket, 0)))
        for bucket in range(UTILIZATION_BUCKETS)
    ]


def _extreme_savings(
    con: duckdb.DuckDBPyConnection, start: date, largest_savings: bool
) -> list[MachineSaving]:
    """The TOP_MACHINES largest savings (positive) or overpayments (negative), largest first."""
    sign, order = (">", "DESC") if largest_savings else ("<", "ASC")
    return [
        MachineSaving(
            resource_id=row[0],
            machine_name=row[1] or row[0],
            subscription_id=row[2],
            plan=row[3],
            utilization=_number(row[4]),
            per_hour_savings=row[5],
        )
        for row in con.execute(
            f"""
            SELECT resource_id, machine_name, subscription_id, plan,
                   CAST(utilization AS DOUBLE), CAST(per_hour_savings AS DOUBLE)
            FROM licensing_comparison_monthly
            WHERE month = ? AND per_hour_savings {sign} 0
            ORDER BY per_hour_savings {order}, machine_name, resource_id
            LIMIT ?
            """,
            [start, TOP_MACHINES],
        ).fetchall()
    ]


def _break_even(con: duckdb.DuckDBPyConnection, start: date) -> list[BreakEven]:
    return [
        BreakEven(plan=row[0], utilization=row[1])
        for row in con.execute(
            """
            SELECT plan, CAST(min(break_even_utilization) AS DOUBLE)
            FROM licensing_comparison_monthly
            WHERE month = ? AND plan IS NOT NULL AND break_even_utilization IS NOT NULL
            GROUP BY plan ORDER BY plan
            """,
            [start],
        ).fetchall()
    ]


def _findings(con: duckdb.DuckDBPyConnection, start: date) -> pa.Table:
    return con.sql(
        """
        WITH names AS (
            SELECT resource_id, any_value(machine_name) AS machine_name
            FROM machines GROUP BY resource_id
        )
        SELECT f.resource_id, f.subscription_id, names.machine_name, f.finding, f.detail,
               CAST(f.amount AS DOUBLE) AS amount, f.currency
        FROM findings AS f LEFT JOIN names USING (resource_id)
        WHERE f.month = ?
        ORDER BY f.amount DESC NULLS LAST, f.finding, f.resource_id
        """,
        params=[start],
    ).to_arrow_table()


def _findings_total(con: duckdb.DuckDBPyConnection, start: date) -> float:
    row = _aggregate(
        con,
        "SELECT CAST(coalesce(sum(amount), 0) AS DOUBLE) FROM findings WHERE month = ?",
        [start],
    )
    return float(row[0])


def _finding_kinds(con: duckdb.DuckDBPyConnection, start: date) -> list[FindingKind]:
    return [
        FindingKind(finding=row[0], count=int(row[1]), amount=row[2])
        for row in con.execute(
            """
            SELECT finding, count(*), CAST(coalesce(sum(amount), 0) AS DOUBLE) AS amount
            FROM findings WHERE month = ?
            GROUP BY finding ORDER BY amount DESC, finding
            """,
            [start],
        ).fetchall()
    ]


def _prices(con: duckdb.DuckDBPyConnection, start: date, end: date, currency: str) -> pa.Table:
    """Price rows in the report's currency in force at any time during [start, end)
    (effective_to is exclusive); the book may also hold other currencies' list prices."""
    return con.sql(
        """
        SELECT option, kind, unit, CAST(rate AS DOUBLE) AS rate, currency,
               effective_from, effective_to, source
        FROM prices
        WHERE effective_from < ? AND (effective_to IS NULL OR effective_to > ?) AND currency = ?
        ORDER BY kind, option, effective_from
        """,
        params=[end, start, currency],
    ).to_arrow_table()


def _assumptions(con: duckdb.DuckDBPyConnection) -> Assumptions:
    row = _aggregate(
        con,
        "SELECT seat_option, seat_term, monthly_term_uplift_percent, seat_reassignment_days, "
        "mde_component, seat_eligibility FROM build_info",
        [],
    )
    return Assumptions(
        seat_option=row[0],
        seat_rule=f"reassign_{int(row[3])}d",
        seat_term=row[1],
        monthly_term_uplift_percent=float(row[2]),
        seat_reassignment_days=int(row[3]),
        mde_component=row[4],
        seat_eligibility=row[5],
    )


def _plan_answers(
    con: duckdb.DuckDBPyConnection, start: date, assumptions: Assumptions
) -> list[PlanAnswer]:
    """Every scope's and plan's answer, read from `licensing_options_monthly` (the configured
    seat option; the licensable seat rule first, one seat per machine beside it)."""
    rows = con.execute(
        """
        SELECT subscription_id, plan,
               any_value(machines),
               CAST(any_value(billed) AS DOUBLE),
               CAST(any_value(cost) FILTER (option = 'hourly_list') AS DOUBLE),
               any_value(seats) FILTER (option = 'seats_only' AND seat_rule = $rule),
               any_value(seats) FILTER (option = 'seats_only' AND seat_rule = 'per_machine'),
               CAST(any_value(cost) FILTER (option = 'seats_plus_hourly_remainder'
                                            AND seat_rule = $rule) AS DOUBLE),
               CAST(any_value(cost) FILTER (option = 'seats_plus_hourly_remainder'
                                            AND seat_rule = 'per_machine') AS DOUBLE),
               CAST(any_value(cost) FILTER (option = 'seats_only' AND seat_rule = $rule)
                    AS DOUBLE),
               CAST(any_value(cost) FILTER (option = 'p1_instead_of_p2') AS DOUBLE),
               bool_and(eligible) FILTER (option = 'seats_plus_hourly_remainder'
                                          AND seat_rule = $rule),
               any_value(eligibility_note) FILTER (option = 'seats_plus_hourly_remainder'
                                                   AND seat_rule = $rule),
               any_value(eligibility_note) FILTER (option = 'seats_only' AND seat_rule = $rule),
               any_value(eligibility_note) FILTER (option = 'p1_instead_of_p2'),
               bool_and(month_complete)
        FROM licensing_options_monthly
        WHERE month = $month AND (seat_option IS NULL OR seat_option = $seat_option)
        GROUP BY subscription_id, plan
        ORDER BY subscription_id NULLS FIRST, plan
        """,
        {"month": start, "rule": assumptions.seat_rule, "seat_option": assumptions.seat_option},
    ).fetchall()
    return [
        PlanAnswer(
            subscription_id=row[0],
            plan=row[1],
            machines=int(row[2] or 0),
            billed=_number(row[3]),
            hourly_list=_number(row[4]),
            seats=int(row[5] or 0),
            seats_per_machine=int(row[6] or 0),
            like_for_like=_number(row[7]),
            like_for_like_per_machine=_number(row[8]),
            seats_only=_number(row[9]),
            p1_instead=None if row[10] is None else float(row[10]),
            eligible=bool(row[11]),
            eligibility_note=row[12] or "",
            seats_only_note=row[13] or "",
            p1_note=row[14],
            month_complete=bool(row[15]),
        )
        for row in rows
    ]


def _aggregate(con: duckdb.DuckDBPyConnection, sql: str, params: list[object]) -> tuple:
    """The single row of an aggregate without GROUP BY, fetched to the end: DuckDB refuses
    further work on a connection whose last result was not read to completion."""
    (row,) = con.execute(sql, params).fetchall()
    return row


def _number(value: float | None) -> float:
    """A SQL NULL sum or measure shows as zero; NaN never reaches the report."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 0.0
    return float(value)
