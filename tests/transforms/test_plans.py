"""Issue #11's billing rules, each on a small January 2026 lake worked out by hand.

January 2026: 31 days, 744 hours; the latest snapshot is Feb 1 00:00, so the history is
[Jan 1, Feb 1). Price book: P1 0.01 and P2 0.02 per server-hour, MDE for Servers 3.00 per seat
per month. A machine "runs all month" unless said otherwise (744 billable hours).
"""

from datetime import date, timedelta

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
    vmss_instance_id,
)
from transforms.billing import ATTRIBUTION_DETAILS

JANUARY = date(2026, 1, 1)
W = vm_id(SUB_A, "rg-a", "w")
X = vm_id(SUB_B, "rg-b", "x")
Z = vm_id(SUB_A, "rg-a", "z")
F = vm_id(SUB_B, "rg-b", "f")
G = vm_id(SUB_B, "rg-b", "g")
WORKSPACE = (
    f"/subscriptions/{SUB_A}/resourceGroups/rg-a/providers/"
    "Microsoft.OperationalInsights/workspaces/law-1"
)
NEVER_COLLECTED = vm_id(SUB_A, "rg-a", "ghost")
ARC = (
    f"/subscriptions/{SUB_A}/resourceGroups/rg-arc/providers/"
    "Microsoft.HybridCompute/machines/onprem-1"
)
ARC_SQL = (
    f"/subscriptions/{SUB_A}/resourceGroups/rg-arc/providers/"
    "Microsoft.HybridCompute/machines/SQL-01"
)
CONNECTOR = (
    f"/subscriptions/{SUB_A}/resourceGroups/rg-clouds/providers/"
    "Microsoft.Security/securityConnectors/aws-prod"
)
SCALE_SET = (
    f"/subscriptions/{SUB_A}/resourceGroups/rg-a/providers/Microsoft.Compute/"
    "virtualMachineScaleSets/web"
)


def priced(lake: RawLake) -> RawLake:
    lake.price("defender_servers_p1", 0.01, date(2025, 1, 1))
    lake.price("defender_servers_p2", 0.02, date(2025, 1, 1))
    lake.price("mde_for_servers", 3.0, date(2025, 1, 1))
    return lake


def billed(lake: RawLake, machine: str, days, *, rate: float, meter: str, sub: str) -> None:
    for day in days:
        lake.cost(
            date(2026, 1, day), machine, hours=24, amount=24 * rate, meter=meter, subscription=sub
        )


def row_of(views, machine: str) -> dict:
    return (
        views["licensing_comparison_monthly"]
        .filter(pl.col("resource_id") == machine.lower())
        .row(0, named=True)
    )


def findings_of(views) -> dict:
    return {(r["finding"], r["resource_id"]): r for r in views["findings"].iter_rows(named=True)}


# --- 1. a plan is a fact of each day --------------------------------------------------------


def test_a_machine_switched_from_p1_to_p2_on_the_16th_is_priced_day_by_day():
    # Billed P1 Jan 1-15 and P2 Jan 16-31: 15 x 24 x 0.01 + 16 x 24 x 0.02 = 3.60 + 7.68 =
    # 11.28 (pricing every hour at the month's P2 would say 744 x 0.02 = 14.88, +32%).
    lake = priced(RawLake())
    lake.pricing(SUB_A, "Standard", "P2")
    lake.machine(W)
    billed(lake, W, range(1, 16), rate=0.01, meter="Standard P1 Node", sub=SUB_A)
    billed(lake, W, range(16, 32), rate=0.02, meter="Standard P2 Node", sub=SUB_A)
    views = build_views(lake)
    row = row_of(views, W)
    assert (row["plan"], row["plan_days_p1"], row["plan_days_p2"]) == ("P2", 15, 16)
    assert row["hourly_cost"] == pytest.approx(11.28)
    assert row["billed_cost"] == pytest.approx(11.28)
    assert findings_of(views) == {}


def test_the_pricings_history_says_when_a_resource_override_ended():
    # No charges. Snapshots: Jan 10 (W has a resource-level P1 override) and Jan 16 00:00 (it
    # is gone: W inherits the subscription's P2). Jan 1-9: before any snapshot, the earliest
    # (P1); Jan 10-15: the Jan 10 snapshot (P1); Jan 16-31: the Jan 16 one (P2).
    # hourly_cost = 15 x 24 x 0.01 + 16 x 24 x 0.02 = 11.28.
    lake = priced(RawLake())
    lake.pricing(SUB_A, "Standard", "P2", snapshot_at=at(10, 6))
    lake.pricing(SUB_A, "Standard", "P1", resource_id=W.lower(), snapshot_at=at(10, 6))
    lake.pricing(SUB_A, "Standard", "P2", snapshot_at=at(16))
    lake.machine(W)
    views = build_views(lake)
    plans = views["machine_plans_daily"].sort("usage_date")
    by_day = {
        row["usage_date"].day: (row["plan"], row["plan_source"])
        for row in plans.iter_rows(named=True)
    }
    assert by_day[9] == ("P1", "earliest_snapshot")
    assert by_day[10] == ("P1", "pricings_history")
    assert by_day[15] == ("P1", "pricings_history")
    assert by_day[16] == ("P2", "pricings_history")
    assert by_day[31] == ("P2", "pricings_history")
    assert row_of(views, W)["hourly_cost"] == pytest.approx(11.28)


def test_an_override_the_latest_snapshot_no_longer_lists_is_not_the_plan_now():
    # The Jan 10 snapshot lists W's own P1; the Feb 1 (latest) one lists only the
    # subscription's P2: the override was removed by Feb 1, so W's plan now (`machines`) is
    # P2, not the P1 of a stale resource row (`plans` reads a snapshot the same way: an
    # override it does not list is not in force).
    lake = priced(RawLake())
    lake.pricing(SUB_A, "Standard", "P2", snapshot_at=at(10))
    lake.pricing(SUB_A, "Standard", "P1", resource_id=W.lower(), snapshot_at=at(10))
    lake.pricing(SUB_A, "Standard", "P2")
    lake.machine(W)
    lake.machine(Z)
    lake.pricing(SUB_A, "Free", resource_id=Z.lower())
    views = build_views(lake)
    plans = {r["resource_id"]: r["defender_plan"] for r in views["machines"].iter_rows(named=True)}
    # Z's override is in the latest snapshot: it still wins (Free: no plan).
    assert plans == {W.lower(): "P2", Z.lower(): None}


def test_days_before_the_plans_enablement_are_not_covered():
    # SUB_B enabled P2 on Jan 20 00:00 (enablementTime); X is billed from then on, 12 days x
    # 0.48 = 5.76. hourly_cost prices those 12 days only: 12 x 24 x 0.02 = 5.76 (not 744 x
    # 0.02 = 14.88), and Jan 1-19 are no billable_not_billed finding (it would say 9.12).
    lake = priced(RawLake())
    lake.pricing(SUB_B, "Standard", "P2", enablement_time=at(20))
    lake.machine(X)
    billed(lake, X, range(20, 32), rate=0.02, meter="Standard P2 Node", sub=SUB_B)
    views = build_views(lake)
    row = row_of(views, X)
    assert (row["plan_days_p1"], row["plan_days_p2"]) == (0, 12)
    assert row["hourly_cost"] == pytest.approx(5.76)
    assert row["billed_cost"] == pytest.approx(5.76)
    assert findings_of(views) == {}
    uncovered = views["machine_plans_daily"].filter(pl.col("usage_date") < date(2026, 1, 20))
    assert uncovered["plan"].null_count() == 19


# --- 2. the free trial ------------------------------------------------------------------------


def test_trial_days_are_covered_priced_at_zero_and_never_unbilled():
    # SUB_B enabled P2 on Jan 12 00:00; its Jan 20 00:00 snapshot says 5 days of trial remain,
    # so the trial ends Jan 25 00:00: Jan 12-24 are trial days (13), nothing is billed on them.
    # Billed Jan 25-31: 7 x 24 x 0.02 = 3.36 = hourly_cost. Jan 1-11 are not covered.
    lake = priced(RawLake())
    lake.pricing(
        SUB_B,
        "Standard",
        "P2",
        snapshot_at=at(20),
        enablement_time=at(12),
        trial_remaining=timedelta(days=5),
    )
    lake.machine(X)
    billed(lake, X, range(25, 32), rate=0.02, meter="Standard P2 Node", sub=SUB_B)
    views = build_views(lake)
    row = row_of(views, X)
    assert (row["plan_days_p2"], row["trial_days"]) == (20, 13)
    assert row["hourly_cost"] == pytest.approx(3.36)
    assert findings_of(views) == {}


# --- 3. the MDE benefit meter ------------------------------------------------------------------


def test_the_mdatp_benefit_meter_is_a_defender_charge_with_its_benefit():
    # Z is billed all month on "Standard P2 Node - MDATP Benefit" at 0.01328 per hour (the P2
    # rate less the MDE part): 31 x 24 x 0.01328 = 9.88032. W is billed at the full P2 rate:
    # 31 x 0.48 = 14.88. Z is not unbilled, and its benefit is claimed: with 5 seats owned, only
    # W's MDE component is left to claim, 744 h x 0.01 (the P1 rate) = 7.44.
    lake = priced(RawLake())
    lake.pricing(SUB_A, "Standard", "P2")
    lake.machine(Z)
    lake.machine(W)
    billed(lake, Z, range(1, 32), rate=0.01328, meter="Standard P2 Node - MDATP Benefit", sub=SUB_A)
    billed(lake, W, range(1, 32), rate=0.02, meter="Standard P2 Node", sub=SUB_A)
    views = build_views(lake, seats_owned={"mde_for_servers": 5})
    charges = views["defender_charges_daily"]
    on_z = charges.filter(pl.col("resource_id") == Z.lower())
    assert on_z["benefit"].unique().to_list() == ["mde"]
    assert on_z["billed_cost"].sum() == pytest.approx(9.88032)
    assert row_of(views, Z)["billed_cost"] == pytest.approx(9.88032)
    estate = views["fleet_comparison_monthly"].filter(pl.col("subscription_id").is_null())
    assert estate.select("machines_distinct", "machines_with_mde_benefit").row(0) == (2, 1)
    found = findings_of(views)
    assert set(found) == {("mde_benefit_unclaimed", None)}
    assert found[("mde_benefit_unclaimed", None)]["amount"] == pytest.approx(7.44)


# --- 4. charges that are not on a machine --------------------------------------------------------


def test_charges_on_no_machine_stay_unattributed_with_the_reason():
    # Jan 5: 2 h (0.04) on a Log Analytics workspace; Jan 6: 24 h (0.48) on a VM id never
    # collected; Jan 7: 24 h (0.48) on an Arc machine id never collected (no inventory, no
    # event: as unknown as the VM); Jan 8: 24 h (0.48) on an AWS connector's id; Jan 9: 24 h
    # (0.48) on a server onboarded directly through Defender for Endpoint (its name, not an ARM
    # id). None is a machine, none is a finding. W is billed every day (31 x 0.48 = 14.88). The
    # fleet's billed cost is all of it: 14.88 + 0.04 + 4 x 0.48 = 16.84, of which 1.96 on no
    # machine.
    lake = priced(RawLake())
    lake.pricing(SUB_A, "Standard", "P2")
    lake.machine(W)
    billed(lake, W, range(1, 32), rate=0.02, meter="Standard P2 Node", sub=SUB_A)
    lake.cost(date(2026, 1, 5), WORKSPACE, hours=2, amount=0.04)
    lake.cost(date(2026, 1, 6), NEVER_COLLECTED, hours=24, amount=0.48)
    lake.cost(date(2026, 1, 7), ARC, hours=24, amount=0.48)
    lake.cost(date(2026, 1, 8), CONNECTOR, hours=24, amount=0.48)
    lake.cost(date(2026, 1, 9), "sql-07.contoso.local", hours=24, amount=0.48)
    views = build_views(lake)
    charges = views["defender_charges_daily"].filter(
        pl.col("usage_date").dt.day().is_in([5, 6, 7, 8, 9])
    )
    charges = charges.filter(pl.col("charged_resource_id") != W.lower())
    assert charges.select(
        "resource_id", "attribution", "attribution_detail", "charged_resource_id"
    ).rows() == [
        (None, "unattributed", "non_machine_resource", WORKSPACE.lower()),
        (None, "unattributed", "unknown_machine", NEVER_COLLECTED.lower()),
        (None, "unattributed", "unknown_machine", ARC.lower()),
        (None, "unattributed", "connector", CONNECTOR.lower()),
        (None, "unattributed", "direct_onboarding", "sql-07.contoso.local"),
    ]
    assert set(views["defender_charges_daily"]["attribution_detail"]) <= set(ATTRIBUTION_DETAILS)
    machines = views["licensing_comparison_monthly"]
    assert machines["resource_id"].to_list() == [W.lower()]
    assert findings_of(views) == {}
    estate = views["fleet_comparison_monthly"].filter(pl.col("subscription_id").is_null())
    assert estate["billed_cost"].item() == pytest.approx(16.84)
    assert estate["unattributed_cost"].item() == pytest.approx(1.96)


def test_an_arc_server_also_billed_as_directly_onboarded_is_a_duplicate_onboarding():
    # SQL-01 is an Arc machine Connected all January, billed 24 h a day on its own id (31 x
    # 0.48 = 14.88). On Jan 8-10 the same server is also billed as "SQL-01.contoso.local",
    # onboarded directly through Defender for Endpoint (24 h, 0.48 a day): billed twice on 3
    # days, amount 3 x 0.48 = 1.44. BRANCH-01, directly onboarded only (Jan 8, 0.48), has no
    # Arc twin: no finding. The Arc machine's own charges match its hours: no other finding.
    lake = priced(RawLake())
    lake.pricing(SUB_A, "Standard", "P2")
    lake.machine(ARC_SQL, kind="arc", power_state="Connected", provider="on_premises")
    billed(lake, ARC_SQL, range(1, 32), rate=0.02, meter="Standard P2 Node", sub=SUB_A)
    for day in (8, 9, 10):
        lake.cost(date(2026, 1, day), "SQL-01.contoso.local", hours=24, amount=0.48)
    lake.cost(date(2026, 1, 8), "branch-01.contoso.local", hours=24, amount=0.48)
    views = build_views(lake)
    found = findings_of(views)
    assert set(found) == {("duplicate_onboarding", ARC_SQL.lower())}
    duplicate = found[("duplicate_onboarding", ARC_SQL.lower())]
    assert duplicate["amount"] == pytest.approx(1.44)
    assert "'sql-01.contoso.local'" in duplicate["detail"]
    assert "3 day(s)" in duplicate["detail"]
    machine = views["machines"].row(0, named=True)
    assert (machine["machine_kind"], machine["provider"]) == ("arc", "on_premises")


# --- 5. allocation of pooled charges ---------------------------------------------------------


def test_a_subscription_level_charge_is_shared_only_by_covered_machines():
    # SUB_B is on P1; F has a resource-level Free setting. Jan 7: the subscription's pricings
    # id bills 24 h (0.24). F and G were both billable 24 h, but only G is covered: G takes it
    # all (the old split gave each 12 h and 0.12).
    lake = priced(RawLake())
    lake.pricing(SUB_B, "Standard", "P1")
    lake.pricing(SUB_B, "Free", resource_id=F.lower())
    lake.machine(F)
    lake.machine(G)
    lake.cost(
        date(2026, 1, 7),
        pricing_id(SUB_B),
        hours=24,
        amount=0.24,
        meter="Standard P1 Node",
        subscription=SUB_B,
    )
    views = build_views(lake)
    charges = views["defender_charges_daily"]
    assert charges.select(
        "resource_id", "billed_hours", "billed_cost", "attribution_detail"
    ).rows() == [(G.lower(), 24.0, 0.24, "subscription_pricing")]


def test_a_scale_set_setting_covers_its_instances():
    # SUB_A is on P2, the scale set "web" on P1 (a scale-set-level pricing); its instance 0 has
    # no setting of its own, so P1 covers it: all month at 0.01 = 7.44. Jan 8: the
    # subscription's P2 pricings charge (24 h, 0.48) goes to W alone, not to the P1 instance.
    lake = priced(RawLake())
    instance = vmss_instance_id(SUB_A, "rg-a", "web", 0)
    lake.pricing(SUB_A, "Standard", "P2")
    lake.pricing(SUB_A, "Standard", "P1", resource_id=SCALE_SET.lower())
    lake.machine(instance)
    lake.machine(W)
    lake.cost(date(2026, 1, 8), pricing_id(SUB_A), hours=24, amount=0.48)
    views = build_views(lake)
    row = row_of(views, instance)
    assert (row["plan"], row["plan_days_p1"]) == ("P1", 31)
    assert row["hourly_cost"] == pytest.approx(7.44)
    charges = views["defender_charges_daily"]
    assert charges.select("resource_id", "billed_cost").rows() == [(W.lower(), 0.48)]


# --- 6. cost data lags per subscription ---------------------------------------------------------


def test_each_subscription_is_judged_through_its_own_last_billed_day():
    # SUB_A's costs arrive through Jan 31, SUB_B's (pay-as-you-go, later) through Jan 28. X
    # (SUB_B) is billed Jan 1-28 except Jan 10: one unbilled day, 24 x 0.02 = 0.48; Jan 29-31
    # are not judged (the estate-wide cut-off would have found 3 more days, 1.44).
    lake = priced(RawLake())
    lake.pricing(SUB_A, "Standard", "P2")
    lake.pricing(SUB_B, "Standard", "P2")
    lake.machine(W)
    lake.machine(X)
    billed(lake, W, range(1, 32), rate=0.02, meter="Standard P2 Node", sub=SUB_A)
    billed(lake, X, [*range(1, 10), *range(11, 29)], rate=0.02, meter="Standard P2 Node", sub=SUB_B)
    found = findings_of(build_views(lake))
    assert set(found) == {("billable_not_billed", X.lower())}
    unbilled = found[("billable_not_billed", X.lower())]
    assert unbilled["amount"] == pytest.approx(0.48)
    assert unbilled["detail"] == (
        "24.0 h billable on 1 day(s) with no Defender for Servers P2 charge "
        "(cost data judged through 2026-01-28)"
    )


# --- 8. smaller rules -------------------------------------------------------------------------


def test_with_whole_clock_hours_a_boundary_a_few_seconds_off_is_no_finding():
    # W is deallocated all month but for a start that succeeded Jan 9 11:00:05 and a
    # deallocate Jan 9 11:59:00-12:00:00: billable 11:00:05-12:00:00 (0.998611 h; one clock
    # hour when rounded up). Azure's meter saw the start at 10:59:58 and billed 2 hours.
    # Fractional: 2 - 0.998611 = 1.001 h excess > 0.01: a finding. Whole clock hours: 2 - 1 =
    # 1 h, within the rule's own unit (1 h): no finding.
    def lake_of() -> RawLake:
        lake = priced(RawLake())
        lake.pricing(SUB_A, "Standard", "P2")
        lake.machine(W, power_state="deallocated")
        lake.operation(W, "start", at(9, 10, 59), at(9, 11, 0) + timedelta(seconds=5))
        lake.operation(W, "deallocate", at(9, 11, 59), at(9, 12))
        lake.cost(date(2026, 1, 9), W, hours=2, amount=0.04)
        return lake

    fractional = findings_of(build_views(lake_of()))
    assert ("billed_while_not_billable", W.lower()) in fractional
    whole_hours = findings_of(build_views(lake_of(), partial_hours="round_up_clock_hour"))
    assert ("billed_while_not_billable", W.lower()) not in whole_hours


def test_a_scale_set_deallocated_as_a_whole_stops_billing_its_instances():
    # Instances 0 and 1 of "web" run all month; the set is deallocated Jan 10 12:00-12:06 and
    # started Jan 12 12:00-12:02, logged on the set's id only. Each instance is unbillable
    # from Jan 10 12:00 (deallocating) to Jan 12 12:02 (starting ends): 48 h 2 min, so billable
    # 744 - 48 - 2/60 = 695.9667 h. Instance 2 is created Jan 15 (after both operations) and
    # runs from then: 17 x 24 = 408 h. The set itself is no machine.
    lake = priced(RawLake())
    lake.pricing(SUB_A, "Standard", "P2")
    zero, one, two = (vmss_instance_id(SUB_A, "rg-a", "web", index) for index in range(3))
    lake.machine(zero)
    lake.machine(one)
    lake.machine(two, created_at=at(15))
    set_operation = "Microsoft.Compute/virtualMachineScaleSets/{}/action"
    lake.operation(
        SCALE_SET,
        "deallocate",
        at(10, 12),
        at(10, 12, 6),
        operation_name=set_operation.format("deallocate"),
    )
    lake.operation(
        SCALE_SET, "start", at(12, 12), at(12, 12, 2), operation_name=set_operation.format("start")
    )
    views = build_views(lake)
    hours = views["machine_hours_daily"].group_by("resource_id").agg(pl.col("billable_hours").sum())
    assert dict(hours.rows()) == {
        zero.lower(): pytest.approx(744 - 48 - 2 / 60),
        one.lower(): pytest.approx(744 - 48 - 2 / 60),
        two.lower(): pytest.approx(408.0),
    }
    assert SCALE_SET.lower() not in views["machines"]["resource_id"].to_list()


def test_a_move_seen_only_between_snapshots_is_judged_per_machine_not_per_id():
    # mover (one vmId) was listed in SUB_A on Jan 11 and is in SUB_B on Feb 1: mdecost counts
    # its hours on the old id until Jan 11 and on the new id after. It really moved on Jan 21,
    # so Cost Management charged the old id Jan 1-20 and the new id Jan 21-31, 24 h (0.48) a
    # day. Judged per id, Jan 11-20 would be billed-while-not-billable on the old id and
    # billable-not-billed on the new one; judged per machine every day is billed as billable.
    old, new = vm_id(SUB_A, "rg-old", "mover"), vm_id(SUB_B, "rg-new", "mover")
    lake = priced(RawLake())
    lake.pricing(SUB_A, "Standard", "P2")
    lake.pricing(SUB_B, "Standard", "P2")
    lake.machine(old, vm_id="mover-vm", snapshot_at=at(11))
    lake.machine(new, vm_id="mover-vm")
    billed(lake, old, range(1, 21), rate=0.02, meter="Standard P2 Node", sub=SUB_A)
    billed(lake, new, range(21, 32), rate=0.02, meter="Standard P2 Node", sub=SUB_B)
    views = build_views(lake)
    assert findings_of(views) == {}
    row = views["licensing_comparison_monthly"].row(0, named=True)
    assert views["licensing_comparison_monthly"].height == 1
    assert (row["billable_hours"], row["billed_cost"]) == (744.0, pytest.approx(14.88))


def test_a_plan_switched_on_between_two_snapshots_covers_from_its_enablement():
    # SUB_B was Free at the Jan 1 snapshot and Standard P2 at the Feb 1 one, with enablementTime
    # Jan 24 and 20 days of trial left at Feb 1 00:00 (so the trial ends Feb 21). Jan 24-31 are
    # covered (the later snapshot says since when), all of them trial days: priced at 0, not
    # unbilled though nothing was billed. Jan 1-23 are not covered.
    lake = priced(RawLake())
    lake.pricing(SUB_B, "Free", snapshot_at=at(1))
    lake.pricing(
        SUB_B, "Standard", "P2", enablement_time=at(24), trial_remaining=timedelta(days=20)
    )
    lake.machine(X, snapshot_at=at(1))
    lake.machine(X)
    views = build_views(lake)
    row = row_of(views, X)
    assert (row["plan_days_p2"], row["trial_days"], row["hourly_cost"]) == (8, 8, 0.0)
    plans = views["machine_plans_daily"].sort("usage_date")
    assert plans.filter(pl.col("plan").is_not_null())["usage_date"].min() == date(2026, 1, 24)
    assert set(plans.filter(pl.col("plan").is_not_null())["plan_source"]) == {"pricings_history"}
    assert findings_of(views) == {}


def test_the_peak_counts_machines_on_covered_days_only():
    # W (SUB_A, P2) runs all January. X (SUB_B) runs Jan 1-10 and is deallocated from Jan 11
    # 00:00-00:06; SUB_B's plan covers from Jan 20, when X no longer runs. At most one covered
    # machine was billable in any hour: peak 1, not 2. X counts in no fleet figure (it has no
    # billable hour on a covered day), but its month is covered from the 20th.
    lake = priced(RawLake())
    lake.pricing(SUB_A, "Standard", "P2")
    lake.pricing(SUB_B, "Standard", "P2", enablement_time=at(20))
    lake.machine(W)
    lake.machine(X, power_state="deallocated")
    lake.operation(X, "deallocate", at(11), at(11, 0, 6))
    views = build_views(lake)
    estate = views["fleet_comparison_monthly"].filter(pl.col("subscription_id").is_null())
    assert estate.select("peak_concurrent_machines", "machines_distinct").row(0) == (1, 1)
    assert row_of(views, X)["plan_days_p2"] == 12
