"""A tiny warehouse built by hand, whose October 2026 figures are worked out below, and one
render of its report shared by every report test.

October 2026 has 31 days = 744 hours. Rates: P2 0.02 and P1 0.00672 per server-hour; one
MDE for Servers seat 5.00 per month; USD.

machine        sub kind          plan billable h  billed h  billed   hourly    seat  saving
vm-app-01      A   vm            P2   744         744       14.88    14.88     5.00  -9.88
vm-batch-02    A   vm            P2   100         100        2.00     2.00     5.00   3.00
vm-old-03      A   vm            P2     3           5        0.10     0.06     5.00   4.94
vm-nodefender  A   vm            -    744           0        0.00     null     null   null
scale-1_0      B   vmss_instance P2   250.5       250        5.00     5.01     5.00  -0.01
arc-onprem-01  B   arc           P1   372         372        2.49984  2.49984  5.00   2.50016
total                                 2213.5     1471       24.47984 24.44984 25.00   0.55016

hourly = billable h x rate (744 x 0.02 = 14.88; 372 x 0.00672 = 2.49984); saving = seat -
hourly. scale-1_0's 5.00 is its allocated share of a subscription-level charge; a further
1.50 (75 h) charged to subscription B could not be attributed. Billed in October, all
charges: 24.47984 + 1.50 = 25.97984 over 1471 + 75 = 1546 hours (subscription A
16.98, B 8.99984).

Findings in October: 0.04 + 0.01 + 2.49984 + 5.00 (+ defender_off without amount) = 7.54984.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pytest

from flows.report import ReportPaths, render_report
from transforms.contract import empty_view
from transforms.schemas import PRICE_BOOK

OCTOBER = date(2026, 10, 1)
SEPTEMBER = date(2026, 9, 1)
SUB_A = "aaaaaaaa-0000-4000-8000-000000000001"
SUB_B = "bbbbbbbb-0000-4000-8000-000000000002"
GENERATED_AT = datetime(2026, 11, 5, 6, 0, tzinfo=UTC)
# A detail that would throw in the browser if the report let text through unescaped.
HOSTILE_DETAIL = "0.50 h not billed <script>throw new Error('unescaped text')</script> & more"


def machine_id(subscription: str, name: str, kind: str = "vm") -> str:
    provider = {
        "vm": "microsoft.compute/virtualmachines/",
        "vmss_instance": "microsoft.compute/virtualmachinescalesets/scale-1/virtualmachines/",
        "arc": "microsoft.hybridcompute/machines/",
    }[kind]
    return f"/subscriptions/{subscription}/resourcegroups/rg-prod/providers/{provider}{name}"


APP = machine_id(SUB_A, "vm-app-01")
BATCH = machine_id(SUB_A, "vm-batch-02")
OLD = machine_id(SUB_A, "vm-old-03")
NODEFENDER = machine_id(SUB_A, "vm-nodefender")
SCALE = machine_id(SUB_B, "0", "vmss_instance")
ARC = machine_id(SUB_B, "arc-onprem-01", "arc")

# Expected October figures (see the module docstring).
BILLED_ALL_CHARGES = 25.97984
MACHINE_TOTALS = {
    "billable_hours": 2213.5,
    "billed_hours": 1471.0,
    "billed_cost": 24.47984,
    "hourly_cost": 24.44984,
    "seat_cost": 25.00,
    "per_hour_savings": 0.55016,
}
FINDINGS_TOTAL = 7.54984

REPORTED_VIEWS = (
    "machines",
    "licensing_comparison_monthly",
    "fleet_comparison_monthly",
    "defender_charges_daily",
    "licensing_options_monthly",
    "findings",
    "showback_monthly",
    "power_intervals",
    "machine_hours_daily",
    "machine_plans_daily",
)


def create_contract_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Empty tables with exactly the warehouse contract's columns and types (and the price
    book's for `prices`), so the report is tested against the names analysts rely on."""
    tables = {view: empty_view(view).collect().to_arrow() for view in REPORTED_VIEWS}
    tables["prices"] = PRICE_BOOK.empty_table()
    for name, empty in tables.items():
        con.register("empty_table", empty)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM empty_table")
        con.unregister("empty_table")


P2_BREAK_EVEN = 5.00 / (0.02 * 744)
P1_BREAK_EVEN = 5.00 / (0.00672 * 744)


def _licensing_rows() -> list[tuple]:
    seat = "mde_for_servers"

    def row(month, sub, rid, name, kind, plan, hours, in_month, billed_h, billed, hourly):
        covered = plan is not None
        saving = round(5.00 - hourly, 5) if covered else None
        rate = {"P1": 0.00672, "P2": 0.02}.get(plan or "")
        return (
            month, sub, rid, rid, name, kind, plan, hours, in_month, hours / in_month,
            billed_h, billed, hourly, seat, 5.00 if covered else None, saving,
            5.00 / (rate * in_month) if rate else None,
            None if not covered else ("per_hour" if saving >= 0 else "per_seat"), "USD",
        )  # fmt: skip

    return [
        row(OCTOBER, SUB_A, APP, "vm-app-01", "vm", "P2", 744.0, 744, 744.0, 14.88, 14.88),
        row(OCTOBER, SUB_A, BATCH, "vm-batch-02", "vm", "P2", 100.0, 744, 100.0, 2.00, 2.00),
        row(OCTOBER, SUB_A, OLD, "vm-old-03", "vm", "P2", 3.0, 744, 5.0, 0.10, 0.06),
        row(OCTOBER, SUB_A, NODEFENDER, "vm-nodefender", "vm", None, 744.0, 744, 0.0, 0.0, None),
        row(OCTOBER, SUB_B, SCALE, "scale-1_0", "vmss_instance", "P2", 250.5, 744, 250.0, 5.00,
            5.01),
        row(OCTOBER, SUB_B, ARC, "arc-onprem-01", "arc", "P1", 372.0, 744, 372.0, 2.49984,
            2.49984),
        row(SEPTEMBER, SUB_A, APP, "vm-app-01", "vm", "P2", 720.0, 720, 720.0, 14.40, 14.40),
    ]  # fmt: skip


def _fleet_rows() -> list[tuple]:
    seat = "mde_for_servers"
    return [
        (OCTOBER, SUB_A, 3, 3, 847.0, 16.94, 16.98, seat, 15.00, 15.00, "USD"),
        (OCTOBER, SUB_B, 2, 2, 622.5, 7.50984, 8.99984, seat, 10.00, 10.00, "USD"),
        (OCTOBER, None, 5, 4, 1469.5, 24.44984, BILLED_ALL_CHARGES, seat, 25.00, 20.00, "USD"),
        (SEPTEMBER, SUB_A, 1, 1, 720.0, 14.40, 14.40, seat, 5.00, 5.00, "USD"),
        (SEPTEMBER, None, 1, 1, 720.0, 14.40, 14.40, seat, 5.00, 5.00, "USD"),
    ]


# The October licensing answer per scope and plan (the MDE component is the P1 rate 0.00672):
# (scope, plan, machines, billable h, billed, hourly at list). Seats are one per machine, the
# same per quarter (no machine left or arrived earlier in Q4).
#   estate P2: app, batch, old, scale: 4 machines, 744 + 100 + 3 + 250.5 = 1097.5 h, billed
#     14.88 + 2.00 + 0.10 + 5.00 = 21.98, hourly 14.88 + 2.00 + 0.06 + 5.01 = 21.95, MDE part
#     1097.5 x 0.00672 = 7.3752; keep P2 with 4 seats: 4 x 5 + 21.95 - 7.3752 = 34.5748
#     (12.5948 more than billed); seats alone 20.00; on P1: 7.3752.
#   estate P1: arc: 372 h, billed = hourly = MDE part = 2.49984; keep P1 with 1 seat: 5.00.
#   SUB_A P2: app, batch, old: 847 h, billed 16.98, hourly 16.94, MDE part 5.69184; keep P2 with
#     3 seats: 15 + 16.94 - 5.69184 = 26.24816.
#   SUB_B P2: scale: 250.5 h, billed 5.00, hourly 5.01, MDE part 1.68336: 5 + 3.32664 = 8.32664.
#   SUB_B P1: arc: as the estate's P1.
PLAN_SCOPES = (
    (None, "P2", 4, 1097.5, 21.98, 21.95),
    (None, "P1", 1, 372.0, 2.49984, 2.49984),
    (SUB_A, "P2", 3, 847.0, 16.98, 16.94),
    (SUB_B, "P2", 1, 250.5, 5.00, 5.01),
    (SUB_B, "P1", 1, 372.0, 2.49984, 2.49984),
)
LIKE_FOR_LIKE = {(None, "P2"): 34.5748, (None, "P1"): 5.00, (SUB_A, "P2"): 26.24816}
OPTION_COLUMNS = (
    "month", "subscription_id", "plan", "option", "seat_option", "seat_rule", "machines",
    "seats", "billable_hours", "cost", "billed", "cost_vs_billed", "month_complete",
    "eligible", "eligibility_note", "currency",
)  # fmt: skip


def _option_row(scope, plan, machines, hours, billed, option, cost, seat=(None, None, None)):
    seat_option, rule, seats = seat
    return (
        OCTOBER, scope, plan, option, seat_option, rule, machines, seats, hours, cost, billed,
        cost - billed, True, True, f"note on {option}", "USD",
    )  # fmt: skip


def _option_rows() -> list[tuple]:
    rows = []
    for scope, plan, machines, hours, billed, hourly in PLAN_SCOPES:
        component = hours * 0.00672
        key = (scope, plan, machines, hours, billed)
        rows += [_option_row(*key, "billed", billed), _option_row(*key, "hourly_list", hourly)]
        if plan == "P2":
            rows.append(_option_row(*key, "p1_instead_of_p2", component))
        for rule in ("per_machine", "reassign_90d"):
            seat = ("mde_for_servers", rule, machines)
            remainder = machines * 5 + hourly - component
            rows.append(_option_row(*key, "seats_plus_hourly_remainder", remainder, seat))
            rows.append(_option_row(*key, "seats_only", machines * 5.0, seat))
    return rows


def _charge_rows() -> list[tuple]:
    day = date(2026, 10, 20)
    return [
        (day, SUB_A, APP, "P2", 744.0, 14.88, "USD", "resource"),
        (day, SUB_A, BATCH, "P2", 100.0, 2.00, "USD", "resource"),
        (day, SUB_A, OLD, "P2", 5.0, 0.10, "USD", "resource"),
        (day, SUB_B, SCALE, "P2", 250.0, 5.00, "USD", "allocated"),
        (day, SUB_B, ARC, "P1", 372.0, 2.49984, "USD", "resource"),
        (day, SUB_B, None, "P2", 75.0, 1.50, "USD", "unattributed"),
        # Either side of October: must not count.
        (date(2026, 9, 30), SUB_A, APP, "P2", 24.0, 0.48, "USD", "resource"),
        (date(2026, 11, 1), SUB_A, APP, "P2", 24.0, 0.48, "USD", "resource"),
    ]


def _finding_rows() -> list[tuple]:
    return [
        (OLD, SUB_A, OCTOBER, "billed_while_not_billable", "2.00 h billed while deallocated",
         0.04, "USD"),
        (SCALE, SUB_B, OCTOBER, "billable_not_billed", HOSTILE_DETAIL, 0.01, "USD"),
        (ARC, SUB_B, OCTOBER, "no_mde_sensor", "no MDE.Windows or MDE.Linux extension",
         2.49984, "USD"),
        (None, None, OCTOBER, "mde_benefit_unclaimed", "1 MDE for Servers seat owned", 5.00,
         "USD"),
        (NODEFENDER, SUB_A, OCTOBER, "defender_off", "Defender for Servers is off", None, None),
        (APP, SUB_A, SEPTEMBER, "no_mde_sensor", "no extension", 0.48, "USD"),
    ]  # fmt: skip


def _price_rows() -> list[tuple]:
    list_price = "list price: Azure Retail Prices API"
    return [
        ("defender_servers_p1", "hourly", "1/Hour", 0.0065, "USD", date(2024, 1, 1),
         OCTOBER, list_price),  # ended the day October began: not in force
        ("defender_servers_p1", "hourly", "1/Hour", 0.00672, "USD", OCTOBER, None, list_price),
        ("defender_servers_p2", "hourly", "1/Hour", 0.02, "USD", date(2024, 1, 1), None,
         list_price),
        ("mde_for_servers", "seat", "1/Month", 5.00, "USD", date(2024, 1, 1), None,
         "override: [pricing.seat_prices]"),
        ("defender_business_servers", "seat", "1/Month", 3.00, "USD", date(2026, 11, 1),
         None, list_price),  # starts after October
        ("defender_servers_p2", "hourly", "1/Hour", 0.019, "EUR", date(2024, 1, 1), None,
         list_price),  # another currency than the report's
    ]  # fmt: skip


# The columns the rows above give, in their order (the others are left null or default).
LICENSING_COLUMNS = (
    "month", "subscription_id", "resource_id", "machine_key", "machine_name", "machine_kind",
    "plan", "billable_hours", "hours_in_month", "utilization", "billed_hours", "billed_cost",
    "hourly_cost", "seat_option", "seat_cost", "per_hour_savings", "break_even_utilization",
    "cheaper", "currency",
)  # fmt: skip
FLEET_COLUMNS = (
    "month", "subscription_id", "machines_distinct", "peak_concurrent_machines",
    "billable_hours", "hourly_cost", "billed_cost", "seat_option", "seat_cost_distinct",
    "seat_cost_peak", "currency",
)  # fmt: skip
CHARGE_COLUMNS = (
    "usage_date", "subscription_id", "resource_id", "plan", "billed_hours", "billed_cost",
    "currency", "attribution",
)  # fmt: skip


def build_warehouse(path: Path) -> Path:
    """Write the hand-made warehouse above to `path`."""
    with duckdb.connect(str(path)) as con:
        create_contract_tables(con)
        con.executemany(
            "INSERT INTO machines (resource_id, subscription_id, machine_name, machine_kind, "
            "mde_sensor, defender_plan) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (APP, SUB_A, "vm-app-01", "vm", True, "P2"),
                (BATCH, SUB_A, "vm-batch-02", "vm", True, "P2"),
                (OLD, SUB_A, "vm-old-03", "vm", True, "P2"),
                (NODEFENDER, SUB_A, "vm-nodefender", "vm", False, None),
                (SCALE, SUB_B, "scale-1_0", "vmss_instance", True, "P2"),
                (ARC, SUB_B, "arc-onprem-01", "arc", False, "P1"),
            ],
        )
        for table, columns, rows in (
            ("licensing_comparison_monthly", LICENSING_COLUMNS, _licensing_rows()),
            ("fleet_comparison_monthly", FLEET_COLUMNS, _fleet_rows()),
            ("defender_charges_daily", CHARGE_COLUMNS, _charge_rows()),
        ):
            con.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) "
                f"VALUES ({', '.join(['?'] * len(columns))})",
                rows,
            )
        con.executemany("INSERT INTO findings VALUES (?, ?, ?, ?, ?, ?, ?)", _finding_rows())
        con.executemany(
            f"INSERT INTO licensing_options_monthly ({', '.join(OPTION_COLUMNS)}) "
            f"VALUES ({', '.join(['?'] * len(OPTION_COLUMNS))})",
            _option_rows(),
        )
        con.execute(
            "CREATE TABLE build_info AS SELECT 'mde_for_servers' AS seat_option, "
            "'annual' AS seat_term, 20.0 AS monthly_term_uplift_percent, "
            "90 AS seat_reassignment_days, '{}' AS mde_component, '{}' AS seat_eligibility, "
            # The history ends as November starts: no month in progress.
            "TIMESTAMPTZ '2026-11-01 00:00:00+00' AS history_end"
        )
        con.executemany("INSERT INTO prices VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _price_rows())
    return path


@dataclass(frozen=True)
class Expected:
    """The hand-worked figures above, for tests (conftest is not importable as a module)."""

    month: date = OCTOBER
    other_month: date = SEPTEMBER
    billed_all_charges: float = BILLED_ALL_CHARGES
    machine_totals: dict[str, float] = field(default_factory=lambda: dict(MACHINE_TOTALS))
    findings_total: float = FINDINGS_TOTAL
    p1_break_even: float = P1_BREAK_EVEN
    p2_break_even: float = P2_BREAK_EVEN
    hostile_detail: str = HOSTILE_DETAIL
    generated_at: datetime = GENERATED_AT


@pytest.fixture(scope="session")
def expected() -> Expected:
    return Expected()


@pytest.fixture(scope="session")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_warehouse(tmp_path_factory.mktemp("warehouse") / "warehouse.duckdb")


@pytest.fixture(scope="session")
def rendered(warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> ReportPaths:
    """The October report in every format, rendered once for all the tests that read it."""
    return render_report(
        warehouse,
        OCTOBER,
        tmp_path_factory.mktemp("reports"),
        generated_at=GENERATED_AT,
    )
