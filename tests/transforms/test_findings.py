"""Findings on tiny estates whose amounts are worked out by hand.

Prices: P2 0.02 per hour, MDE for Servers seat 3.00, Defender for Business servers seat 2.00.
"""

from datetime import date

import pytest

from tests.transforms.conftest import SUB_A, RawLake, at, build_views, vm_id
from transforms.comparison import MissingPriceError

JANUARY = date(2026, 1, 1)
WEB = vm_id(SUB_A, "rg", "web")
BATCH = vm_id(SUB_A, "rg", "batch")


def priced(lake: RawLake) -> RawLake:
    lake.pricing(SUB_A, "Standard", "P2")
    lake.price("defender_servers_p2", 0.02, date(2025, 1, 1))
    lake.price("mde_for_servers", 3.0, date(2025, 1, 1))
    lake.price("defender_business_servers", 2.0, date(2025, 1, 1))
    return lake


def findings_of(lake: RawLake, **options) -> dict:
    views = build_views(lake, **options)
    return {(r["finding"], r["resource_id"]): r for r in views["findings"].iter_rows(named=True)}


def fully_billed(lake: RawLake, resource_id: str, days: range, hours: float = 24.0) -> None:
    for day in days:
        lake.cost(date(2026, 1, day), resource_id, hours=hours, amount=hours * 0.02)


def test_partial_excess_is_charged_pro_rata(lake):
    # batch is deallocated Jan 9 18:00-18:10 and started Jan 10 12:00-12:05: billable 18 h on
    # Jan 9 and 11 h 55 min on Jan 10, 24 h every other day. Billed 24 h (0.48) on both days:
    # excess 6 h on Jan 9 (6/24 x 0.48 = 0.12) and 12 h 5 min on Jan 10 (12.0833/24 x 0.48 =
    # 0.241667). Every other day is billed exactly.
    priced(lake).machine(BATCH)
    lake.operation(BATCH, "deallocate", at(9, 18), at(9, 18, 10))
    lake.operation(BATCH, "start", at(10, 12), at(10, 12, 5))
    fully_billed(lake, BATCH, range(1, 32))
    found = findings_of(lake)
    excess = found[("billed_while_not_billable", BATCH.lower())]
    assert excess["amount"] == pytest.approx(0.12 + (12 + 5 / 60) / 24 * 0.48)
    assert excess["month"] == JANUARY
    assert excess["detail"] == "billed 48.0 h on 2 day(s) when 29.92 h were billable"
    assert set(found) == {("billed_while_not_billable", BATCH.lower())}


def test_days_after_the_last_billed_day_are_not_judged_yet(lake):
    # Cost data reaches Jan 29 only: Jan 30 and 31 (billable, no charge yet) are not findings.
    priced(lake).machine(WEB)
    fully_billed(lake, WEB, range(1, 30))
    assert findings_of(lake) == {}


def test_rounding_noise_below_the_tolerance_is_not_a_finding(lake):
    # Billed 24.005 h on days of 24 billable hours (0.005 h = 18 s, under 0.01 h), and one day
    # billed 23.995 h: neither direction is a finding.
    priced(lake).machine(WEB)
    fully_billed(lake, WEB, range(1, 31), hours=24.005)
    fully_billed(lake, WEB, range(31, 32), hours=23.995)
    assert findings_of(lake) == {}


def test_billable_day_without_a_charge_is_priced_at_the_plan_rate(lake):
    # Billed every day but Jan 15: 24 h x 0.02 = 0.48 not billed.
    priced(lake).machine(WEB)
    fully_billed(lake, WEB, range(1, 15))
    fully_billed(lake, WEB, range(16, 32))
    found = findings_of(lake)
    missing = found[("billable_not_billed", WEB.lower())]
    assert missing["amount"] == pytest.approx(0.48)
    assert missing["detail"] == (
        "24.0 h billable on 1 day(s) with no Defender for Servers P2 charge "
        "(cost data judged through 2026-01-31)"
    )
    assert set(found) == {("billable_not_billed", WEB.lower())}


@pytest.mark.parametrize(
    ("seats_owned", "expected"),
    [
        # 1 MDE seat, 2 covered machines: 1 seat paid twice, 3.00.
        ({"mde_for_servers": 1}, {"mde_for_servers": 3.0}),
        # 5 seats, only 2 covered: 2 overlap; plus 1 Business seat at 2.00.
        (
            {"mde_for_servers": 5, "defender_business_servers": 1},
            {"mde_for_servers": 6.0, "defender_business_servers": 2.0},
        ),
        # No seats owned: no finding.
        ({"mde_for_servers": 0}, {}),
    ],
)
def test_double_licensed_counts_the_overlapping_seats(lake, seats_owned, expected):
    priced(lake).machine(WEB)
    lake.machine(BATCH)
    fully_billed(lake, WEB, range(1, 32))
    fully_billed(lake, BATCH, range(1, 32))
    views = build_views(lake, seats_owned=seats_owned)
    rows = views["findings"].filter(finding="double_licensed")
    amounts = {
        next(option for option in seats_owned if option in row["detail"]): row["amount"]
        for row in rows.iter_rows(named=True)
    }
    assert amounts == expected
    assert rows["resource_id"].null_count() == rows.height


def test_seats_owned_for_an_option_without_a_price_are_refused(lake):
    priced(lake).machine(WEB)
    with pytest.raises(MissingPriceError, match="seats are owned for per_user_e5"):
        build_views(lake, seats_owned={"per_user_e5": 10})
