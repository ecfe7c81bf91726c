"""Findings on tiny estates whose amounts are worked out by hand.

Prices: P1 0.01 and P2 0.02 per hour (the MDE component is the P1 rate), MDE for Servers seat
3.00, Defender for Business servers seat 2.00.
"""

from datetime import date

import pytest

from tests.transforms.conftest import SUB_A, RawLake, at, build_views, vm_id
from transforms.options import LicensingTerms

JANUARY = date(2026, 1, 1)
WEB = vm_id(SUB_A, "rg", "web")
BATCH = vm_id(SUB_A, "rg", "batch")


def priced(lake: RawLake) -> RawLake:
    lake.pricing(SUB_A, "Standard", "P2")
    lake.price("defender_servers_p1", 0.01, date(2025, 1, 1))
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


def two_machines(lake: RawLake) -> None:
    """web runs and is billed all month (744 h); batch is deallocated Jan 21 00:00-00:06 and
    billed Jan 1-20 (480 h). MDE component at the P1 rate, 0.01: web 7.44, batch 4.80."""
    priced(lake).machine(WEB)
    lake.machine(BATCH, power_state="deallocated")
    lake.operation(BATCH, "deallocate", at(21), at(21, 0, 6))
    fully_billed(lake, WEB, range(1, 32))
    fully_billed(lake, BATCH, range(1, 21))


@pytest.mark.parametrize(
    ("seats_owned", "expected"),
    [
        # 1 MDE seat: claim the benefit for the machine with the most MDE component, web: 7.44.
        ({"mde_for_servers": 1}, {"mde_for_servers": 7.44}),
        # 5 MDE seats cover both machines: 7.44 + 4.80; 1 Business seat covers web alone.
        (
            {"mde_for_servers": 5, "defender_business_servers": 1},
            {"mde_for_servers": 12.24, "defender_business_servers": 7.44},
        ),
        # No seats owned: no finding.
        ({"mde_for_servers": 0}, {}),
    ],
)
def test_mde_benefit_unclaimed_counts_the_largest_mde_components(lake, seats_owned, expected):
    two_machines(lake)
    views = build_views(lake, seats_owned=seats_owned)
    rows = views["findings"].filter(finding="mde_benefit_unclaimed")
    amounts = {
        next(option for option in seats_owned if option in row["detail"]): row["amount"]
        for row in rows.iter_rows(named=True)
    }
    assert amounts == {option: pytest.approx(amount) for option, amount in expected.items()}
    assert rows["resource_id"].null_count() == rows.height


def test_a_machine_already_on_the_benefit_meter_is_not_unclaimed(lake):
    # web is billed on the MDATP benefit meter: only batch's 4.80 is left to claim.
    priced(lake).machine(WEB)
    lake.machine(BATCH, power_state="deallocated")
    lake.operation(BATCH, "deallocate", at(21), at(21, 0, 6))
    for day in range(1, 32):
        lake.cost(
            date(2026, 1, day),
            WEB,
            hours=24,
            amount=0.3187,
            meter="Standard P2 Node - MDATP Benefit",
        )
    fully_billed(lake, BATCH, range(1, 21))
    rows = build_views(lake, seats_owned={"mde_for_servers": 5})["findings"]
    unclaimed = rows.filter(finding="mde_benefit_unclaimed")
    assert unclaimed["amount"].to_list() == [pytest.approx(4.80)]


def test_full_rate_meters_after_the_benefit_approval_are_found(lake):
    # The benefit was approved on Jan 20, but both machines are billed at the full rate after
    # it: web Jan 20-31 (12 x 24 h), batch Jan 20 (24 h), at the MDE component 0.01 per hour:
    # 2.88 and 0.24.
    two_machines(lake)
    terms = LicensingTerms(mde_benefit_from=date(2026, 1, 20))
    found = findings_of(lake, terms=terms)
    assert found[("mde_benefit_not_applied", WEB.lower())]["amount"] == pytest.approx(2.88)
    assert found[("mde_benefit_not_applied", BATCH.lower())]["amount"] == pytest.approx(0.24)
    assert found[("mde_benefit_not_applied", WEB.lower())]["detail"] == (
        "288.0 h on 12 day(s) billed at the full rate after the MDE benefit was approved "
        "(2026-01-20)"
    )


def test_hours_stopped_but_allocated_are_found_at_the_plan_rate(lake):
    # web is powered off Jan 5 10:00-10:02 (stopped from the guest, still allocated) and
    # started Jan 7 10:00-10:03: stopped 10:02 Jan 5 to 10:00 Jan 7, 47 h 58 min, billable,
    # at P2 0.02: 47.9667 x 0.02 = 0.959333 that deallocating would have saved.
    priced(lake).machine(WEB)
    lake.operation(WEB, "power_off", at(5, 10), at(5, 10, 2))
    lake.operation(WEB, "start", at(7, 10), at(7, 10, 3))
    fully_billed(lake, WEB, range(1, 32))
    stopped = findings_of(lake)[("stopped_allocated", WEB.lower())]
    assert stopped["amount"] == pytest.approx((47 + 58 / 60) * 0.02)
    assert stopped["detail"].startswith("47.97 h billable while stopped but still allocated on 3")
