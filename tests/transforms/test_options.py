"""`licensing_options_monthly`: the licensing answer like for like, worked out by hand.

Prices: P1 0.01 and P2 0.02 per server-hour (the MDE component is the P1 rate, 0.01), MDE for
Servers 3.00 and Defender for Business servers 2.00 per seat per month. Built as the warehouse
build builds (`transforms.marts.build_marts`), estate step included.
"""

from datetime import UTC, date, datetime

import polars as pl
import pytest

from tests.transforms.conftest import SUB_A, SUB_B, RawLake, at, vm_id
from transforms import marts
from transforms.billing import LICENSING_OPTIONS
from transforms.options import LicensingTerms, finish_options, plan_rates

JANUARY, FEBRUARY, MARCH = date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)
M1, M2, M3, M4 = (vm_id(SUB_A, "rg-a", name) for name in ("m1", "m2", "m3", "m4"))
BUSY = vm_id(SUB_A, "rg-a", "busy")
QUIET = vm_id(SUB_B, "rg-b", "quiet")


def priced(lake: RawLake) -> RawLake:
    lake.price("defender_servers_p1", 0.01, date(2025, 1, 1))
    lake.price("defender_servers_p2", 0.02, date(2025, 1, 1))
    lake.price("mde_for_servers", 3.0, date(2025, 1, 1))
    lake.price("defender_business_servers", 2.0, date(2025, 1, 1))
    return lake


def options_of(lake: RawLake, terms: LicensingTerms | None = None) -> pl.DataFrame:
    raw = marts.RawLake(lake.inventory, lake.pricings, lake.power_events, lake.costs)
    chosen = marts.MartOptions(
        seat_option="mde_for_servers",
        currency="USD",
        partial_hours="fractional",
        terms=terms or LicensingTerms(),
    )
    return marts.build_marts(raw, lake.price_book, chosen)["licensing_options_monthly"]


def pick(frame: pl.DataFrame, **keys) -> dict:
    chosen = frame
    for name, value in keys.items():
        chosen = chosen.filter(pl.col(name).is_null() if value is None else pl.col(name) == value)
    assert chosen.height == 1, keys
    return chosen.row(0, named=True)


def quarter_lake() -> RawLake:
    """Q1 2026 in SUB_A (P2), snapshot Apr 1: m1 runs all quarter; m2 runs until it is deleted
    Jan 16 00:00; m4 is created Jan 16 00:00-00:03 and deleted Mar 1 00:00-00:05; m3 is created
    Mar 1 00:00-00:03 and runs on. m1 is billed every day (24 h, 0.48), so the cost data
    reaches Mar 31."""
    lake = priced(RawLake(snapshot_at=datetime(2026, 4, 1, tzinfo=UTC)))
    lake.pricing(SUB_A, "Standard", "P2")
    lake.machine(M1)
    lake.operation(M2, "delete", at(16), at(16, 0, 5))
    lake.operation(M4, "write", at(16), at(16, 0, 3))
    lake.operation(M4, "delete", at(1, month=3), at(1, 0, 5, month=3))
    lake.operation(M3, "write", at(1, month=3), at(1, 0, 3, month=3))
    lake.machine(M3, created_at=at(1, month=3))
    for month, days in ((1, 31), (2, 28), (3, 31)):
        for day in range(1, days + 1):
            lake.cost(date(2026, month, day), M1, hours=24, amount=0.48)
    return lake


def test_seats_per_machine_per_quarter_and_the_peak_differ_and_why():
    # Billable machines by month: Jan m1, m2 (Jan 1-15), m4 (from Jan 16): 3 distinct, but
    # never more than 2 at once; Feb m1, m4: 2; Mar m1, m3: 2 (m4 is deleting from Mar 1
    # 00:00, not billable). Seats a licence allows: per machine 3 / 2 / 2; fixed for the
    # quarter (reassignable only every 90 days) every machine of the quarter, m1-m4: 4, 4, 4.
    # The hourly peak, 2 / 2 / 2, moves a seat from m2 to m4 on Jan 16: no licence allows it.
    lake = quarter_lake()
    options = options_of(lake)
    for month, per_machine, quarter in ((JANUARY, 3, 4), (FEBRUARY, 2, 4), (MARCH, 2, 4)):
        common = {"month": month, "subscription_id": None, "plan": "P2"}
        common |= {"option": "seats_only", "seat_option": "mde_for_servers"}
        assert pick(options, **common, seat_rule="per_machine")["seats"] == per_machine
        assert pick(options, **common, seat_rule="reassign_90d")["seats"] == quarter
    raw = marts.RawLake(lake.inventory, lake.pricings, lake.power_events, lake.costs)
    chosen = marts.MartOptions(
        seat_option="mde_for_servers", currency="USD", partial_hours="fractional"
    )
    fleet = marts.build_marts(raw, lake.price_book, chosen)["fleet_comparison_monthly"]
    peaks = fleet.filter(pl.col("subscription_id").is_null()).sort("month")
    assert peaks["peak_concurrent_machines"].to_list() == [2, 2, 2]


def test_january_priced_option_by_option():
    # January's P2 hours: m1 744 + m2 360 (Jan 1-15) + m4 383.95 (Jan 16 00:03 to Feb 1) =
    # 1487.95 h. hourly_list = 1487.95 x 0.02 = 29.759; its MDE part 1487.95 x 0.01 = 14.8795;
    # billed: m1's 31 x 0.48 = 14.88.
    # seats_plus_hourly_remainder = seats x 3.00 + (29.759 - 14.8795): per machine 9 + 14.8795
    # = 23.8795, per quarter 12 + 14.8795 = 26.8795. seats_only: 9.00 and 12.00.
    # p1_instead_of_p2 = 1487.95 x 0.01 = 14.8795.
    options = options_of(quarter_lake())
    assert set(options["option"]) == set(LICENSING_OPTIONS)  # accepted values, every one used
    january = {"month": JANUARY, "subscription_id": None, "plan": "P2"}
    hours = 744 + 360 + (16 * 24 - 3 / 60)
    expected = {
        ("billed", None, None): 14.88,
        ("hourly_list", None, None): hours * 0.02,
        ("p1_instead_of_p2", None, None): hours * 0.01,
        ("seats_plus_hourly_remainder", "mde_for_servers", "per_machine"): 9 + hours * 0.01,
        ("seats_plus_hourly_remainder", "mde_for_servers", "reassign_90d"): 12 + hours * 0.01,
        ("seats_only", "mde_for_servers", "per_machine"): 9.0,
        ("seats_only", "mde_for_servers", "reassign_90d"): 12.0,
        ("seats_only", "defender_business_servers", "per_machine"): 6.0,
    }
    for (option, seat_option, seat_rule), cost in expected.items():
        row = pick(options, **january, option=option, seat_option=seat_option, seat_rule=seat_rule)
        assert row["cost"] == pytest.approx(cost), option
        assert row["billed"] == pytest.approx(14.88)
        assert row["cost_vs_billed"] == pytest.approx(cost - 14.88)
        assert row["month_complete"] is True
        assert row["billable_hours"] == pytest.approx(hours)
    seats_only = pick(
        options,
        **january,
        option="seats_only",
        seat_option="mde_for_servers",
        seat_rule="per_machine",
    )
    assert seats_only["eligibility_note"].startswith(
        "switches Defender for Servers off: loses Plan 2's features beyond MDE"
    )
    p1 = pick(options, **january, option="p1_instead_of_p2", seat_option=None, seat_rule=None)
    assert "loses Plan 2's features beyond MDE" in p1["eligibility_note"]


def test_seats_beat_the_bill_for_a_busy_machine_and_not_for_a_quiet_one():
    # busy (SUB_A, P2) runs all January: billed 744 x 0.02 = 14.88; keeping Defender for
    # Servers with an MDE seat costs 3.00 + 744 x (0.02 - 0.01) = 10.44: 4.44 less.
    # quiet (SUB_B, P2) is billable 100 h (Jan 1 00:00 to Jan 5 04:00): billed 2.00; a seat
    # plus the remainder costs 3.00 + 100 x 0.01 = 4.00: 2.00 more.
    lake = priced(RawLake())
    lake.pricing(SUB_A, "Standard", "P2")
    lake.pricing(SUB_B, "Standard", "P2")
    lake.machine(BUSY)
    lake.machine(QUIET, power_state="deallocated")
    lake.operation(QUIET, "deallocate", at(5, 4), at(5, 4))
    for day in range(1, 32):
        lake.cost(date(2026, 1, day), BUSY, hours=24, amount=0.48)
    for day in range(1, 5):
        lake.cost(date(2026, 1, day), QUIET, hours=24, amount=0.48, subscription=SUB_B)
    lake.cost(date(2026, 1, 5), QUIET, hours=4, amount=0.08, subscription=SUB_B)
    lake.cost(date(2026, 1, 31), QUIET, hours=0, amount=0.0, subscription=SUB_B)
    options = options_of(lake)
    keys = {"month": JANUARY, "plan": "P2", "option": "seats_plus_hourly_remainder"}
    keys |= {"seat_option": "mde_for_servers", "seat_rule": "per_machine"}
    busy = pick(options, **keys, subscription_id=SUB_A)
    quiet = pick(options, **keys, subscription_id=SUB_B)
    assert (busy["cost"], busy["cost_vs_billed"]) == (pytest.approx(10.44), pytest.approx(-4.44))
    assert (quiet["cost"], quiet["cost_vs_billed"]) == (pytest.approx(4.0), pytest.approx(2.0))


def test_a_month_is_complete_only_when_its_cost_data_is():
    # SUB_A's costs reach Jan 31, SUB_B's only Jan 29 (its Jan 30-31 have not arrived): SUB_A's
    # January is complete, SUB_B's and so the estate's are not. February (the snapshot is of
    # Feb 10: the month in progress) is complete nowhere.
    lake = priced(RawLake(snapshot_at=datetime(2026, 2, 10, tzinfo=UTC)))
    lake.pricing(SUB_A, "Standard", "P2")
    lake.pricing(SUB_B, "Standard", "P2")
    for snapshot_at in (at(1), None):  # listed on Jan 1 too: the history starts in January
        lake.machine(BUSY, snapshot_at=snapshot_at)
        lake.machine(QUIET, snapshot_at=snapshot_at)
    for day in range(1, 32):
        lake.cost(date(2026, 1, day), BUSY, hours=24, amount=0.48)
    for day in range(1, 30):
        lake.cost(date(2026, 1, day), QUIET, hours=24, amount=0.48, subscription=SUB_B)
    for day in range(1, 10):
        lake.cost(date(2026, 2, day), BUSY, hours=24, amount=0.48)
    complete = (
        options_of(lake)
        .filter(pl.col("option") == "billed")
        .select("month", "subscription_id", "month_complete")
        .rows()
    )
    assert sorted(complete, key=lambda row: (row[0], row[1] or "~")) == [
        (JANUARY, SUB_A, True),
        (JANUARY, SUB_B, False),
        (JANUARY, None, False),
        (FEBRUARY, SUB_A, False),
        (FEBRUARY, SUB_B, False),
        (FEBRUARY, None, False),
    ]


def test_monthly_seats_cost_the_uplift_more():
    # One machine all January; monthly-term seats at +20%: 3.00 x 1.2 = 3.60 per MDE seat.
    lake = priced(RawLake())
    lake.pricing(SUB_A, "Standard", "P2")
    lake.machine(BUSY, snapshot_at=at(1))
    lake.machine(BUSY)
    terms = LicensingTerms(seat_term="monthly", monthly_term_uplift_percent=20)
    options = options_of(lake, terms)
    row = pick(
        options,
        month=JANUARY,
        subscription_id=None,
        plan="P2",
        option="seats_only",
        seat_option="mde_for_servers",
        seat_rule="per_machine",
    )
    assert row["cost"] == pytest.approx(3.60)


def test_defender_for_business_servers_stop_at_sixty_servers_and_eligibility_is_a_setting():
    # An estate of 61 P2 machines in one subscription: 61 Defender for Business seats exceed
    # the 60-server cap, so those rows are not eligible; MDE for Servers seats are, unless the
    # customer says they cannot buy them ([pricing.seat_eligibility]).
    parts = pl.LazyFrame(
        {
            "month": [JANUARY, JANUARY],
            "scope": [SUB_A, None],
            "plan": ["P2", "P2"],
            "machines": [61, 61],
            "block_machines": [61, 61],
            "billable_hours": [61 * 744.0] * 2,
            "hourly_list": [61 * 14.88] * 2,
            "mde_component_cost": [61 * 7.44] * 2,
            "p1_cost": [61 * 7.44] * 2,
            "billed": [61 * 14.88] * 2,
        }
    )
    seat_prices = pl.LazyFrame(
        {
            "month": [JANUARY, JANUARY],
            "seat_option": ["mde_for_servers", "defender_business_servers"],
            "seat_price": [3.0, 2.0],
        }
    )
    cut_offs = pl.LazyFrame(
        {"scope": [None], "billed_through": [date(2026, 1, 31)]},
        schema={"scope": pl.String, "billed_through": pl.Date},
    )
    terms = LicensingTerms(seat_eligibility={"mde_for_servers": False})
    view = finish_options(parts, seat_prices, cut_offs, terms, currency="usd").collect()
    seats = view.filter(pl.col("seat_option").is_not_null())
    business = seats.filter(pl.col("seat_option") == "defender_business_servers")
    assert business["eligible"].to_list() == [False] * business.height == [False] * 8
    assert all("61 servers exceed the cap of 60" in note for note in business["eligibility_note"])
    mde = seats.filter(pl.col("seat_option") == "mde_for_servers")
    assert mde["eligible"].to_list() == [False] * 8
    assert all("not eligible per [pricing.seat_eligibility]" in n for n in mde["eligibility_note"])
    # 61 Business seats at 2.00 = 122.00, whatever their eligibility: the figure stays visible.
    row = pick(
        view,
        subscription_id=None,
        option="seats_only",
        seat_option="defender_business_servers",
        seat_rule="per_machine",
    )
    assert row["cost"] == pytest.approx(122.0)
    assert view["currency"].unique().to_list() == ["USD"]


def test_the_mde_component_comes_from_the_benefit_meter_where_the_book_lists_it():
    # P2 0.02 with its MDATP benefit meter at 0.015: the MDE part is 0.02 - 0.015 = 0.005. P1
    # has no benefit meter: its MDE part is the P1 rate, 0.01. A configured rate wins.
    calendar = pl.LazyFrame(
        {
            "option": [
                "defender_servers_p1",
                "defender_servers_p2",
                "defender_servers_p2_mde_benefit",
            ],
            "kind": ["hourly"] * 3,
            "usage_date": [JANUARY] * 3,
            "month": [JANUARY] * 3,
            "rate": [0.01, 0.02, 0.015],
        }
    )
    rates = plan_rates(calendar, LicensingTerms()).collect().sort("plan")
    assert rates.select("plan", "component_rate").rows() == [
        ("P1", 0.01),
        ("P2", pytest.approx(0.005)),
    ]
    configured = plan_rates(calendar, LicensingTerms(mde_component={"P2": 0.008}))
    assert configured.collect().sort("plan")["component_rate"].to_list() == [0.01, 0.008]
