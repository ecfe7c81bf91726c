"""Defender charges: recognition by meter, attribution to machines, money conserved.

Expected shares are worked out by hand from the billable hours given to each machine.
"""

import math
from datetime import date

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.transforms.conftest import (
    SUB_A,
    SUB_B,
    RawLake,
    hours_daily,
    pricing_id,
    vm_id,
    vmss_instance_id,
)
from transforms import billing
from transforms.charges import defender_benefit_expr, defender_charges_daily, defender_plan_expr

DAY = date(2026, 1, 12)
WEB = vm_id(SUB_A, "RG-Web", "Web-1")
API = vm_id(SUB_A, "RG-Web", "Api-1")
IDLE = vm_id(SUB_A, "RG-Web", "Idle-1")
OTHER = vm_id(SUB_B, "rg", "other")


def attributed(lake, hours):
    frame = defender_charges_daily(lake.costs, hours).collect()
    return {
        (r["resource_id"], r["attribution"], r["plan"]): (r["billed_hours"], r["billed_cost"])
        for r in frame.iter_rows(named=True)
    }


def test_charge_on_a_machine_id_stays_with_the_machine_whatever_its_case(lake):
    # Cost Management spells the id upper-case; the machine's hours are keyed lower-case.
    lake.cost(DAY, WEB.upper(), hours=24, amount=0.48)
    frame = defender_charges_daily(lake.costs, hours_daily([(DAY, WEB, 24.0)])).collect()
    assert frame.to_dicts() == [
        {
            "usage_date": DAY,
            "subscription_id": SUB_A,
            "resource_id": WEB.lower(),
            "plan": "P2",
            "benefit": None,
            "billed_hours": 24.0,
            "billed_cost": 0.48,
            "currency": "USD",
            "attribution": "resource",
            "attribution_detail": "machine",
            "charged_resource_id": WEB.lower(),
        }
    ]


def test_subscription_level_charge_is_split_by_billable_hours(lake):
    # The pricings/VirtualMachines row bills 36 h for 0.72 USD. WEB was billable 24 h, API 12 h,
    # IDLE 0 h: WEB gets 24/36 = 2/3 (24 h, 0.48), API 1/3 (12 h, 0.24), IDLE nothing.
    # OTHER lives in another subscription and gets nothing either.
    lake.cost(DAY, pricing_id(SUB_A), hours=36, amount=0.72)
    hours = hours_daily([(DAY, WEB, 24.0), (DAY, API, 12.0), (DAY, IDLE, 0.0), (DAY, OTHER, 24.0)])
    result = attributed(lake, hours)
    assert set(result) == {(WEB.lower(), "allocated", "P2"), (API.lower(), "allocated", "P2")}
    assert result[(WEB.lower(), "allocated", "P2")] == pytest.approx((24.0, 0.48))
    assert result[(API.lower(), "allocated", "P2")] == pytest.approx((12.0, 0.24))


def test_machine_charged_on_its_own_id_is_left_out_of_the_subscription_pool(lake):
    # WEB has its own P2 row (24 h, 0.48); the pooled P2 row (12 h, 0.24) pays for API alone.
    lake.cost(DAY, WEB, hours=24, amount=0.48)
    lake.cost(DAY, pricing_id(SUB_A), hours=12, amount=0.24)
    result = attributed(lake, hours_daily([(DAY, WEB, 24.0), (DAY, API, 12.0)]))
    assert result == {
        (WEB.lower(), "resource", "P2"): (24.0, 0.48),
        (API.lower(), "allocated", "P2"): (12.0, 0.24),
    }


def test_what_cannot_be_split_stays_visible_as_unattributed(lake):
    # 1. SUB_A's pooled row on a day no machine of SUB_A was billable (IDLE: 0 h);
    # 2. a pooled row of a subscription mdecost knows no machine of (SUB_B);
    # 3. a Defender row without a resource id.
    lake.cost(DAY, pricing_id(SUB_A), hours=5, amount=0.1)
    lake.cost(DAY, pricing_id(SUB_B), hours=2, amount=0.04, subscription=SUB_B)
    lake.cost(DAY, None, hours=1, amount=0.00672, meter="Standard P1 Node")
    frame = defender_charges_daily(lake.costs, hours_daily([(DAY, IDLE, 0.0)])).collect()
    rows = {(r["subscription_id"], r["plan"]): r for r in frame.iter_rows(named=True)}
    assert set(frame["attribution"]) == {"unattributed"}
    assert frame["resource_id"].null_count() == 3
    assert rows[(SUB_A, "P2")]["billed_cost"] == 0.1
    assert rows[(SUB_B, "P2")]["billed_cost"] == 0.04
    assert rows[(SUB_A, "P1")]["billed_cost"] == 0.00672


def test_rows_come_in_the_view_order_whatever_order_the_ids_were_first_seen_in(lake):
    # The order is (usage_date, subscription_id, resource_id, ...) as strings, nulls last,
    # though the ids are sorted through integer ranks: the ids are cast to a dictionary
    # (Categorical) here in the opposite order first, so its codes do not follow the strings.
    # "api-1" < "web-1"; SUB_A ("aaaa...") < SUB_B ("bbbb..."); the id-less P1 row of SUB_A
    # comes after SUB_A's machines; the day before comes first although it was billed last.
    pl.Series([OTHER.lower(), WEB.lower(), API.lower()]).cast(pl.Categorical)
    before = date(2026, 1, 11)
    lake.cost(DAY, WEB, hours=24, amount=0.48)
    lake.cost(DAY, OTHER, hours=24, amount=0.48, subscription=SUB_B)
    lake.cost(DAY, None, hours=1, amount=0.00672, meter="Standard P1 Node")
    lake.cost(DAY, API, hours=12, amount=0.24)
    lake.cost(before, WEB, hours=24, amount=0.48)
    hours = hours_daily(
        [(before, WEB, 24.0), (DAY, WEB, 24.0), (DAY, API, 12.0), (DAY, OTHER, 24.0)]
    )
    frame = defender_charges_daily(lake.costs, hours).collect()
    assert frame.select("usage_date", "subscription_id", "resource_id").rows() == [
        (before, SUB_A, WEB.lower()),
        (DAY, SUB_A, API.lower()),
        (DAY, SUB_A, WEB.lower()),
        (DAY, SUB_A, None),
        (DAY, SUB_B, OTHER.lower()),
    ]


def test_scale_set_level_charge_is_split_over_its_instances(lake):
    # Cost data names the scale set; instance 0 ran 18 h and instance 1 6 h: 3/4 and 1/4 of
    # 24 h / 0.48 USD = 18 h / 0.36 and 6 h / 0.12.
    first = vmss_instance_id(SUB_A, "rg", "web-ss", 0)
    second = vmss_instance_id(SUB_A, "rg", "web-ss", 1)
    scale_set = first.rsplit("/virtualMachines/", 1)[0]
    lake.cost(DAY, scale_set, hours=24, amount=0.48)
    result = attributed(lake, hours_daily([(DAY, first, 18.0), (DAY, second, 6.0)]))
    assert result[(first.lower(), "allocated", "P2")] == pytest.approx((18.0, 0.36))
    assert result[(second.lower(), "allocated", "P2")] == pytest.approx((6.0, 0.12))


def test_only_defender_rows_of_the_billed_view_count(lake):
    # A VM compute row, an unrelated Defender plan and an AmortizedCost copy are ignored; a row
    # recognised only by its description ("... Plan 1") counts as P1.
    lake.cost(DAY, WEB, hours=24, amount=2.5, meter="D2s v5")
    lake.cost(
        DAY,
        WEB,
        hours=1,
        amount=0.5,
        meter="Standard Node",
        description="Microsoft Defender for Storage",
    )
    lake.cost(DAY, WEB, hours=24, amount=0.48, cost_type="AmortizedCost")
    lake.cost(
        DAY,
        WEB,
        hours=24,
        amount=0.16128,
        meter="Servers Node",
        description="Microsoft Defender for Servers Plan 1",
    )
    assert attributed(lake, hours_daily([(DAY, WEB, 24.0)])) == {
        (WEB.lower(), "resource", "P1"): (24.0, 0.16128)
    }


def test_awkward_split_conserves_money_to_the_last_bit(lake):
    # 1.00 over three machines of 8 h each: 1/3 each does not add up in binary; the largest
    # share (the first id in order on a tie) takes the remainder, so the parts sum to 1.00.
    machines = [vm_id(SUB_A, "rg", f"m{i}") for i in range(3)]
    lake.cost(DAY, pricing_id(SUB_A), hours=24, amount=1.0)
    frame = defender_charges_daily(
        lake.costs, hours_daily([(DAY, m, 8.0) for m in machines])
    ).collect()
    assert frame["billed_cost"].to_list() == pytest.approx([1 / 3] * 3)
    assert sum(frame["billed_cost"].to_list()) == 1.0
    assert sum(frame["billed_hours"].to_list()) == 24.0


_METERS = st.one_of(
    st.sampled_from(
        [
            "Standard P1 Node",
            " standard p2 node",
            "STANDARD P2 NODE ",
            "Standard P2 Node - MDATP Benefit",
            "standard p1 node-mdatp benefit",
            "Standard P2 Nodes",
            "Standard P2 Node -",
            "Standard P2 Node - -",
            "D2s v5",
            "",
            None,
        ]
    ),
    st.text(alphabet="standrdp12oe -", max_size=24).map(lambda tail: "Standard P2 Node" + tail),
)
_DESCRIPTIONS = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "Microsoft Defender for Servers Plan 2",
            "microsoft defender for servers - Standard P1 Node",
            "Microsoft Defender for Servers",
            "  Microsoft Defender for Servers plan 1 and P2",
            "Microsoft Defender for Storage P1",
        ]
    ),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzP12 -", max_size=40),
)


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(st.tuples(_METERS, _DESCRIPTIONS), min_size=1, max_size=20))
def test_vectorised_plan_and_benefit_recognition_agree_with_the_billing_module(rows):
    frame = pl.DataFrame(
        {"meter": [m for m, _ in rows], "description": [d for _, d in rows]},
        schema={"meter": pl.String, "description": pl.String},
    )
    plans = frame.select(defender_plan_expr(pl.col("meter"), pl.col("description")))
    assert plans.to_series().to_list() == [billing.defender_plan(m, d) for m, d in rows]
    benefits = frame.select(defender_benefit_expr(pl.col("meter")))
    assert benefits.to_series().to_list() == [billing.defender_meter(m)[1] for m, _ in rows]


_MACHINES = [vm_id(sub, "rg", f"vm{i}") for sub in (SUB_A, SUB_B) for i in range(3)]
_TARGETS = st.sampled_from(
    [
        *_MACHINES,
        pricing_id(SUB_A),
        pricing_id(SUB_B),
        pricing_id("cccccccc-0000-0000-0000-000000000003"),
        None,
    ]
)
_DAYS = st.sampled_from([date(2026, 1, 1), date(2026, 1, 2)])


@settings(max_examples=60, deadline=None)
@given(
    charges=st.lists(
        st.tuples(
            _DAYS,
            _TARGETS,
            st.sampled_from(["Standard P1 Node", "Standard P2 Node"]),
            st.floats(min_value=0, max_value=500, allow_nan=False),
            st.floats(min_value=-100, max_value=10_000, allow_nan=False),
        ),
        min_size=1,
        max_size=25,
    ),
    hours=st.lists(
        st.tuples(_DAYS, st.sampled_from(_MACHINES), st.floats(min_value=0, max_value=24)),
        max_size=12,
        unique_by=lambda row: (row[0], row[1]),
    ),
)
def test_attribution_conserves_money_and_hours(charges, hours):
    lake = RawLake()
    for day, target, meter, quantity, amount in charges:
        lake.cost(day, target, hours=quantity, amount=amount, meter=meter)
    result = defender_charges_daily(lake.costs, hours_daily(hours)).collect()
    assert math.isclose(
        math.fsum(result["billed_cost"]), math.fsum(c[4] for c in charges), abs_tol=1e-9
    )
    assert math.isclose(
        math.fsum(result["billed_hours"]), math.fsum(c[3] for c in charges), abs_tol=1e-9
    )
    unattributed = result.filter(pl.col("attribution") == "unattributed")
    assert unattributed["resource_id"].null_count() == unattributed.height
    assert result.filter(pl.col("attribution") != "unattributed")["resource_id"].null_count() == 0
    billable = {(d, m.lower()) for d, m, h in hours if h > 0}
    for row in result.filter(pl.col("attribution") == "allocated").iter_rows(named=True):
        assert (row["usage_date"], row["resource_id"]) in billable
