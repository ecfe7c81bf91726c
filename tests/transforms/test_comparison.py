"""Per-hour versus per-seat, per machine and per fleet, on a January estate worked out by hand.

The estate (January 2026: 31 days, 744 hours; snapshot at Feb 1 00:00):

- SUB_A has Defender for Servers P2 at subscription level, SUB_B has P1; b2 (SUB_B) has a
  resource-level Free override (Defender off).
- a1 (SUB_A) runs all month. a2 (SUB_A) is started Jan 20 00:00-00:05 and runs on. a3 (SUB_A)
  is deallocated Jan 3 00:00-00:06 and has no MDE extension. b1 and b2 (SUB_B) run all month.
- "mover" (vmId mover-vm) runs all month; it was last listed in SUB_A on the Jan 11 snapshot and
  is in SUB_B now: 240 h on the old id, 504 h on the new one.
- Charges: a1 on its own id Jan 5 (P2, 24 h, 0.48) and Jan 31 (P2, 24 h, 0.72); SUB_A's
  pricings id Jan 25 (P2, 48 h, 1.44), split over a1 and a2 (24 billable h each) = 24 h / 0.72
  each; a3 Jan 10 (P2, 5 h, 0.10) while it was deallocated.
- Price book: P2 0.02 per hour until Jan 15 and 0.03 from Jan 16 (a price change inside the
  month); P1 0.01; MDE for Servers seat 3.00 per month; Defender for Business servers seat 2.00.

So a full month of P2 costs 15 x 24 x 0.02 + 16 x 24 x 0.03 = 7.20 + 11.52 = 18.72, of P1
744 x 0.01 = 7.44.
"""

from datetime import date

import polars as pl
import pytest

from tests.transforms.conftest import (
    SUB_A,
    SUB_B,
    RawLake,
    at,
    build_views,
    pricing_id,
    vm_id,
)
from transforms.comparison import MissingPriceError

JANUARY = date(2026, 1, 1)
A1 = vm_id(SUB_A, "rg-a", "a1")
A2 = vm_id(SUB_A, "rg-a", "a2")
A3 = vm_id(SUB_A, "rg-a", "a3")
B1 = vm_id(SUB_B, "rg-b", "b1")
B2 = vm_id(SUB_B, "rg-b", "b2")
MOVER_OLD = vm_id(SUB_A, "rg-old", "mover")
MOVER_NEW = vm_id(SUB_B, "rg-new", "mover")
A2_HOURS = 23 + 55 / 60 + 11 * 24  # Jan 20 from 00:05, then Jan 21-31


def price_book(lake: RawLake) -> None:
    lake.price("defender_servers_p2", 0.02, date(2025, 1, 1), date(2026, 1, 16))
    lake.price("defender_servers_p2", 0.03, date(2026, 1, 16))
    lake.price("defender_servers_p1", 0.01, date(2025, 1, 1))
    lake.price("mde_for_servers", 3.0, date(2025, 1, 1))
    lake.price("defender_business_servers", 2.0, date(2025, 1, 1))


def january_estate() -> RawLake:
    lake = RawLake()
    lake.pricing(SUB_A, "Standard", "P2")
    lake.pricing(SUB_B, "Standard", "P1")
    lake.pricing(SUB_B, "Free", resource_id=B2.lower())
    lake.machine(A1, vm_id="a1")
    lake.machine(A2, vm_id="a2")
    lake.operation(A2, "start", at(20), at(20, 0, 5))
    lake.machine(A3, vm_id="a3", power_state="deallocated", mde_sensor=False)
    lake.operation(A3, "deallocate", at(3), at(3, 0, 6))
    lake.machine(B1, vm_id="b1")
    lake.machine(B2, vm_id="b2")
    lake.machine(MOVER_OLD, vm_id="mover-vm", snapshot_at=at(11))
    lake.machine(MOVER_NEW, vm_id="mover-vm")
    lake.cost(date(2026, 1, 5), A1, hours=24, amount=0.48)
    lake.cost(date(2026, 1, 25), pricing_id(SUB_A), hours=48, amount=1.44)
    lake.cost(date(2026, 1, 10), A3, hours=5, amount=0.10)
    lake.cost(date(2026, 1, 31), A1, hours=24, amount=0.72)
    price_book(lake)
    return lake


@pytest.fixture(scope="module")
def views():
    return build_views(january_estate(), seats_owned={"mde_for_servers": 3})


def test_licensing_comparison_per_machine(views):
    rows = {
        r["machine_key"]: r for r in views["licensing_comparison_monthly"].iter_rows(named=True)
    }
    # The MDE component is the P1 rate (0.01 per hour) for both plans by default; the seat
    # (3.00) competes with it, not with a P2 machine's whole hourly cost: a full month of it
    # costs 744 x 0.01 = 7.44, so the break-even utilization is 3 / 7.44 for either plan.
    expected = {
        # id: (plan, billable h, billed h, billed cost, hourly cost, MDE component, cheaper)
        A1: ("P2", 744.0, 72.0, 1.92, 18.72, 7.44, "per_seat"),
        A2: ("P2", A2_HOURS, 24.0, 0.72, A2_HOURS * 0.03, A2_HOURS * 0.01, "per_hour"),
        A3: ("P2", 48.0, 5.0, 0.10, 0.96, 0.48, "per_hour"),
        B1: ("P1", 744.0, 0.0, 0.0, 7.44, 7.44, "per_seat"),
        B2: (None, 744.0, 0.0, 0.0, None, None, None),
    }
    assert len(rows) == 6
    for resource_id, (
        plan,
        hours,
        billed_h,
        billed,
        hourly,
        component,
        cheaper,
    ) in expected.items():
        row = rows[resource_id.rsplit("/", 1)[1]]
        assert row["resource_id"] == resource_id.lower()
        assert row["month"] == JANUARY
        assert row["plan"] == plan
        assert row["billable_hours"] == pytest.approx(hours)
        assert row["hours_in_month"] == 744
        assert row["utilization"] == pytest.approx(hours / 744)
        assert row["billed_hours"] == pytest.approx(billed_h)
        assert row["billed_cost"] == pytest.approx(billed)
        assert row["hourly_cost"] == (None if hourly is None else pytest.approx(hourly))
        assert row["mde_component_cost"] == (
            None if component is None else pytest.approx(component)
        )
        assert row["seat_option"] == "mde_for_servers"
        assert row["seat_cost"] == 3.0
        savings = None if component is None else pytest.approx(3.0 - component)
        assert row["per_hour_savings"] == savings
        assert row["break_even_utilization"] == (None if plan is None else pytest.approx(3 / 7.44))
        assert row["cheaper"] == cheaper
        assert row["currency"] == "USD"


def test_moved_vm_is_one_machine_for_the_month(views):
    # One row for vmId mover-vm: the id it had last (SUB_B), 240 + 504 = 744 h. Each day is
    # priced at the plan covering the id it had that day: Jan 1-10 in SUB_A (P2 at 0.02) and
    # Jan 11-31 in SUB_B (P1 at 0.01): 240 x 0.02 + 504 x 0.01 = 4.80 + 5.04 = 9.84. Shown plan:
    # P1, on 21 of its 31 billable days.
    row = views["licensing_comparison_monthly"].filter(machine_key="mover-vm").row(0, named=True)
    assert row["resource_id"] == MOVER_NEW.lower()
    assert row["subscription_id"] == SUB_B
    assert row["machine_name"] == "mover"
    assert row["plan"] == "P1"
    assert (row["plan_days_p1"], row["plan_days_p2"], row["trial_days"]) == (21, 10, 0)
    assert row["billable_hours"] == 744.0
    assert row["hourly_cost"] == pytest.approx(9.84)


def test_fleet_comparison_per_subscription_and_estate(views):
    # SUB_A: a1, a2, a3 and the mover's old id are covered and billable: 4 distinct; most at
    # once Jan 1-2 (a1, a3, mover) = 3. Hours 744 + a2 + 48 + 240; cost 18.72 + a2 x 0.03 +
    # 0.96 + 240 x 0.02 (the mover's SUB_A days are P2 days). Billed 0.48 + 1.44 + 0.10 + 0.72
    # = 2.74.
    # SUB_B: b1 and the mover's new id (b2 is off): 2 distinct, 2 at once, 744 + 504 h,
    # 7.44 + 5.04. Estate: 5 machines (the mover once), 4 at once Jan 1-2 (a1, a3, mover, b1).
    a2_cost = A2_HOURS * 0.03
    expected = {
        SUB_A: (4, 3, 744 + A2_HOURS + 48 + 240, 18.72 + a2_cost + 0.96 + 4.80, 2.74),
        SUB_B: (2, 2, 744 + 504.0, 12.48, 0.0),
        None: (5, 4, 744 + A2_HOURS + 48 + 240 + 1248, 18.72 + a2_cost + 0.96 + 4.80 + 12.48, 2.74),
    }
    fleet = views["fleet_comparison_monthly"]
    assert fleet["subscription_id"].to_list() == [SUB_A, SUB_B, None]
    for row in fleet.iter_rows(named=True):
        distinct, peak, hours, hourly, billed = expected[row["subscription_id"]]
        assert row["month"] == JANUARY
        assert row["machines_distinct"] == distinct
        assert row["peak_concurrent_machines"] == peak
        assert row["billable_hours"] == pytest.approx(hours)
        assert row["hourly_cost"] == pytest.approx(hourly)
        assert row["billed_cost"] == pytest.approx(billed)
        assert row["seat_option"] == "mde_for_servers"
        assert row["seat_cost_distinct"] == distinct * 3.0
        assert row["seat_cost_peak"] == peak * 3.0
        assert row["currency"] == "USD"


def test_findings_of_the_january_estate(views):
    found = {
        (r["finding"], r["resource_id"]): (r["amount"], r["month"], r["currency"])
        for r in views["findings"].iter_rows(named=True)
    }
    a2_unbilled = (A2_HOURS - 24) * 0.03  # every billable day but Jan 25
    expected = {
        # a3 was billed 5 h (0.10) on Jan 10 while deallocated: all of it is excess.
        ("billed_while_not_billable", A3.lower()): 0.10,
        # Billable days without any charge, at the rate of each day: a1 all but Jan 5, 25 and
        # 31: 14 x 24 x 0.02 + 14 x 24 x 0.03; a3 Jan 1-2 (48 x 0.02); b1 at P1; the mover's
        # SUB_A days (Jan 1-10) at P2, 240 x 0.02, and its SUB_B days at P1, 504 x 0.01.
        ("billable_not_billed", A1.lower()): 14 * 24 * 0.02 + 14 * 24 * 0.03,
        ("billable_not_billed", A2.lower()): a2_unbilled,
        ("billable_not_billed", A3.lower()): 0.96,
        ("billable_not_billed", B1.lower()): 7.44,
        ("billable_not_billed", MOVER_OLD.lower()): 4.80,
        ("billable_not_billed", MOVER_NEW.lower()): 5.04,
        # a3 is covered (P2) and billable 48 h without the sensor: its hourly cost.
        ("no_mde_sensor", A3.lower()): 0.96,
        # b2 is billable and off.
        ("defender_off", B2.lower()): None,
        # 3 MDE seats owned, no machine on the MDATP benefit meter: the benefit would discount
        # the MDE component (P1 rate, 0.01) of the 3 machines with the most of it: a1, b1 and
        # the mover, 744 h each: 3 x 7.44 = 22.32.
        ("mde_benefit_unclaimed", None): 22.32,
    }
    assert set(found) == set(expected)
    for key, amount in expected.items():
        assert found[key][0] == (None if amount is None else pytest.approx(amount)), key
        assert found[key][1:] == (JANUARY, "USD")


def test_seat_option_changes_the_seat_price():
    # Defender for Business servers at 2.00 a seat: 5 distinct machines, 4 at once.
    views = build_views(january_estate(), seat_option="defender_business_servers")
    estate = views["fleet_comparison_monthly"].filter(pl.col("subscription_id").is_null())
    fleet = estate.row(0, named=True)
    assert fleet["seat_cost_distinct"] == 5 * 2.0
    assert fleet["seat_cost_peak"] == 4 * 2.0


def test_seat_price_change_mid_month_applies_from_the_next_month(lake):
    # A seat is bought for a whole month: the rate in force on the 1st prices the month, so a
    # change on Jan 16 (3.00 -> 4.00) prices February, not January.
    lake.machine(A1)
    lake.price("defender_servers_p2", 0.02, date(2025, 1, 1))
    lake.price("mde_for_servers", 3.0, date(2025, 1, 1), date(2026, 1, 16))
    lake.price("mde_for_servers", 4.0, date(2026, 1, 16))
    lake.pricing(SUB_A, "Standard", "P2")
    lake.snapshot_at = at(2, month=3)
    lake.machine(A1)
    views = build_views(lake, window_end=at(1, month=3))
    seat_costs = views["licensing_comparison_monthly"].select("month", "seat_cost").rows()
    assert seat_costs == [(JANUARY, 3.0), (date(2026, 2, 1), 4.0)]


def test_the_billed_meter_beats_the_pricings_snapshot_day_by_day(lake):
    # b1's subscription is on P1 but the machine was billed P2 on Jan 4 and 5 (and P1 on Jan
    # 3): those two days are P2 days at 0.02, the other 29 P1 days at 0.01:
    # 2 x 24 x 0.02 + 29 x 24 x 0.01 = 0.96 + 6.96 = 7.92. Shown plan: P1 (29 billable days).
    lake.pricing(SUB_B, "Standard", "P1")
    lake.machine(B1)
    price_book(lake)
    lake.cost(
        date(2026, 1, 3), B1, hours=10, amount=0.1, meter="Standard P1 Node", subscription=SUB_B
    )
    lake.cost(date(2026, 1, 4), B1, hours=24, amount=0.48, subscription=SUB_B)
    lake.cost(date(2026, 1, 5), B1, hours=6, amount=0.12, subscription=SUB_B)
    views = build_views(lake)
    row = views["licensing_comparison_monthly"].row(0, named=True)
    assert (row["plan"], row["plan_days_p1"], row["plan_days_p2"]) == ("P1", 29, 2)
    assert row["hourly_cost"] == pytest.approx(7.92)
    plans = views["machine_plans_daily"].filter(pl.col("usage_date").dt.day().is_in([3, 4, 6]))
    assert plans.select("plan", "plan_source").rows() == [
        ("P1", "billed"),
        ("P2", "billed"),
        ("P1", "earliest_snapshot"),  # the only snapshot is of Feb 1, after the day
    ]


def test_charge_of_an_unknown_subscription_counts_in_the_estate_only(lake):
    # A Defender row with neither resource id nor subscription: unattributed, and only the
    # estate row can hold it (0.50); SUB_A's row shows its own charges (none).
    lake.pricing(SUB_A, "Standard", "P2")
    lake.machine(A1)
    price_book(lake)
    lake.cost(date(2026, 1, 7), None, hours=1, amount=0.5, subscription=None)
    fleet = build_views(lake)["fleet_comparison_monthly"]
    assert fleet.select("subscription_id", "billed_cost").rows() == [(SUB_A, 0.0), (None, 0.5)]


def test_unknown_seat_option_is_refused_with_the_options_the_book_has():
    with pytest.raises(
        MissingPriceError, match=r"'per_user' is not in the price book.*mde_for_servers"
    ):
        build_views(january_estate(), seat_option="per_user")


def test_currency_without_prices_is_refused():
    with pytest.raises(MissingPriceError, match="no EUR price for mde_for_servers"):
        build_views(january_estate(), currency="EUR")
