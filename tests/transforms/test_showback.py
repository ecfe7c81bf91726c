"""Showback by hand: three machines, one subscription, October 2026.

vm-a tagged CostCenter=CC-1 (its own tag), vm-b untagged but in a resource group tagged
costcenter=CC-2 (inherited: names compare without case), vm-c untagged in an untagged group.
Charges: vm-a 10.10 on its id, vm-b 20.20 on its id, a subscription-level 0.10 allocated a third
to each (0.0333...), and 5.55 on a workspace (no machine). The estate billed 10.10 + 20.20 +
0.10 + 5.55 = 35.95.
"""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from transforms.showback import check_group_key, finish_showback, showback_part
from transforms.tags import TAG_DTYPE, effective_tags

OCTOBER = date(2026, 10, 1)
SUB = "00000000-0000-0000-0000-0000000000aa"
RG_WEB, RG_DATA = "rg-web", "rg-data"


def rid(group: str, name: str) -> str:
    return (
        f"/subscriptions/{SUB}/resourcegroups/{group}/providers/microsoft.compute/"
        f"virtualmachines/{name}"
    )


VM_A, VM_B, VM_C = rid(RG_WEB, "vm-a"), rid(RG_WEB, "vm-b"), rid(RG_DATA, "vm-c")


def machines() -> pl.LazyFrame:
    own = ['{"CostCenter": "CC-1", "env": "prod"}', "{}", None]
    inherited = ['{"CostCenter": "CC-9"}', '{"costcenter": "CC-2"}', "{}"]
    frame = pl.DataFrame(
        {
            "resource_id": [VM_A, VM_B, VM_C],
            "machine_key": ["a", "b", "c"],
            "subscription_id": [SUB] * 3,
            "resource_group": [RG_WEB, RG_WEB, RG_DATA],
            "own": own,
            "inherited": inherited,
        }
    )
    return frame.lazy().with_columns(effective_tags("own", "inherited")).drop("own", "inherited")


def test_tags_are_the_machines_own_plus_its_groups_where_it_has_none():
    tags = machines().collect()["tags"].to_list()
    # vm-a keeps its own CostCenter (the group's CC-9 is hidden by it), vm-b inherits.
    assert tags[0] == [{"key": "CostCenter", "value": "CC-1"}, {"key": "env", "value": "prod"}]
    assert tags[1] == [{"key": "costcenter", "value": "CC-2"}]
    assert tags[2] == []
    assert machines().collect_schema()["tags"] == TAG_DTYPE


def charges() -> pl.LazyFrame:
    day = date(2026, 10, 7)
    rows = [
        (VM_A, "resource", 10.10),
        (VM_B, "resource", 20.20),
        (VM_A, "allocated", 0.10 / 3),
        (VM_B, "allocated", 0.10 / 3),
        (VM_C, "allocated", 0.10 / 3),
        (None, "unattributed", 5.55),
    ]
    return pl.LazyFrame(
        {
            "usage_date": [day] * len(rows),
            "subscription_id": [SUB] * len(rows),
            "resource_id": [row[0] for row in rows],
            "attribution": [row[1] for row in rows],
            "billed_cost": [row[2] for row in rows],
        }
    )


def hours() -> pl.LazyFrame:
    return pl.LazyFrame(
        {
            "usage_date": [date(2026, 10, 7), date(2026, 10, 8), date(2026, 10, 7)],
            "resource_id": [VM_A, VM_A, VM_B],
            "subscription_id": [SUB] * 3,
            "billable_hours": [24.0, 76.0, 50.0],
        }
    )


def licensing() -> pl.LazyFrame:
    # vm-a: seat 5.00 + hourly 2.00 - MDE part 0.672 = 6.328; vm-b in its trial (no MDE part
    # paid, no seat): 0 + 1.00 - 0 = 1.00.
    return pl.LazyFrame(
        {
            "month": [OCTOBER, OCTOBER],
            "resource_id": [VM_A, VM_B],
            "seat_cost": [5.00, 5.00],
            "hourly_cost": [2.00, 1.00],
            "mde_component_cost": [0.672, 0.0],
        }
    )


NO_SUBSCRIPTIONS = pl.LazyFrame(
    schema={"subscription_id": pl.String, "management_group_path": pl.String}
)


def figures_by_group(rows: pl.DataFrame) -> dict:
    """(group kind, value) -> machines, billable hours, billed, allocated, like for like."""
    return {
        (row["group_kind"], row["group_value"]): (
            row["machines"],
            row["billable_hours"],
            round(row["billed_cost"], 6),
            round(row["allocated_cost"], 6),
            round(row["like_for_like_cost"], 6),
        )
        for row in rows.iter_rows(named=True)
    }


def showback(keys: tuple[str, ...]) -> pl.DataFrame:
    part = showback_part(machines(), hours(), charges(), licensing(), keys, currency="usd")
    return finish_showback(part, NO_SUBSCRIPTIONS).collect()


def test_groups_by_cost_centre_add_up_to_the_bill_to_the_cent():
    rows = showback(("tag:CostCenter",))
    got = figures_by_group(rows)
    assert got == {
        # CC-1: vm-a, 24 + 76 = 100 h, 10.10 + 0.0333.. = 10.133333, like for like 6.328
        ("value", "CC-1"): (1, 100.0, 10.133333, 0.033333, 6.328),
        # CC-2 (inherited): vm-b, 50 h, 20.20 + 0.0333.. = 20.233333, like for like 1.00
        ("value", "CC-2"): (1, 50.0, 20.233333, 0.033333, 1.0),
        # untagged: vm-c, no hours but a charge, so a machine of the group: 0.033333
        ("missing", None): (1, 0.0, 0.033333, 0.033333, 0.0),
        # the workspace's 5.55, on no machine
        ("unattributed", None): (0, 0.0, 5.55, 0.0, 0.0),
    }
    assert round(rows["billed_cost"].sum(), 2) == 35.95
    assert set(rows["currency"]) == {"USD"}


def test_under_subscription_charges_on_no_machine_stay_with_their_subscription():
    rows = showback(("subscription", "resource_group"))
    by_subscription = rows.filter(pl.col("group_key") == "subscription")
    assert by_subscription.select("group_kind", "group_value", "machines").rows() == [
        ("value", SUB, 3)
    ]
    assert round(by_subscription["billed_cost"].item(), 2) == 35.95
    by_group = {
        (row["group_kind"], row["group_value"]): round(row["billed_cost"], 6)
        for row in rows.filter(pl.col("group_key") == "resource_group").iter_rows(named=True)
    }
    # rg-web: 10.10 + 20.20 + 2 x 0.0333.. = 30.366667; rg-data: 0.033333; workspace 5.55
    assert by_group == {
        ("value", RG_WEB): 30.366667,
        ("value", RG_DATA): 0.033333,
        ("unattributed", None): 5.55,
    }


def test_unknown_group_keys_are_refused_by_name():
    assert check_group_key("tag: CostCenter") == "tag:CostCenter"
    assert check_group_key("management_group") == "management_group"
    with pytest.raises(ValueError, match="'cost_centre' is not a grouping: use subscription, "):
        check_group_key("cost_centre")


# --- by management group -----------------------------------------------------------------------
#
# Four subscriptions: P1 and P2 under Tenant Root Group / Production, DEV under Tenant Root
# Group / Development, X listed with no management group path (not readable). p1 runs in P1;
# the mover (one machine_key) is in P1, then P2; d1 in DEV; x1 in X. October 7 2026 charges:
# p1 1.11, the mover 2.22 on its P1 id and 3.33 on its P2 id, a P2 workspace 0.44 (no machine),
# d1 4.05 on its id plus 0.10 allocated from DEV's subscription-level charge, x1 5.00, an X
# workspace 0.06, and 0.07 billed under no subscription. The estate billed 1.11 + 2.22 + 3.33 +
# 0.44 + 4.05 + 0.10 + 5.00 + 0.06 + 0.07 = 16.38.

SUB_P1 = "00000000-0000-0000-0000-0000000000p1"
SUB_P2 = "00000000-0000-0000-0000-0000000000p2"
SUB_DEV = "00000000-0000-0000-0000-000000000dev"
SUB_X = "00000000-0000-0000-0000-0000000000xx"
PRODUCTION = "Tenant Root Group / Production"
DEVELOPMENT = "Tenant Root Group / Development"


def vm(subscription: str, name: str) -> str:
    return (
        f"/subscriptions/{subscription}/resourcegroups/rg/providers/microsoft.compute/"
        f"virtualmachines/{name}"
    )


P1, MOVER_OLD, MOVER_NEW = vm(SUB_P1, "p1"), vm(SUB_P1, "mover"), vm(SUB_P2, "mover")
D1, X1 = vm(SUB_DEV, "d1"), vm(SUB_X, "x1")


def estate_showback(keys: tuple[str, ...]) -> pl.DataFrame:
    ids = [P1, MOVER_OLD, MOVER_NEW, D1, X1]
    subscription_of = [SUB_P1, SUB_P1, SUB_P2, SUB_DEV, SUB_X]
    machines = pl.LazyFrame(
        {
            "resource_id": ids,
            "machine_key": ["p1", "mover", "mover", "d1", "x1"],
            "subscription_id": subscription_of,
            "resource_group": ["rg"] * 5,
            "tags": [[] for _ in ids],
        },
        schema_overrides={"tags": TAG_DTYPE},
    )
    day = date(2026, 10, 7)
    rows = [
        (SUB_P1, P1, "resource", 1.11),
        (SUB_P1, MOVER_OLD, "resource", 2.22),
        (SUB_P2, MOVER_NEW, "resource", 3.33),
        (SUB_P2, None, "unattributed", 0.44),
        (SUB_DEV, D1, "resource", 4.05),
        (SUB_DEV, D1, "allocated", 0.10),
        (SUB_X, X1, "resource", 5.00),
        (SUB_X, None, "unattributed", 0.06),
        (None, None, "unattributed", 0.07),
    ]
    charges = pl.LazyFrame(
        {
            "usage_date": [day] * len(rows),
            "subscription_id": [row[0] for row in rows],
            "resource_id": [row[1] for row in rows],
            "attribution": [row[2] for row in rows],
            "billed_cost": [row[3] for row in rows],
        }
    )
    hours = pl.LazyFrame(
        {
            "usage_date": [day] * 5,
            "resource_id": ids,
            "subscription_id": subscription_of,
            "billable_hours": [100.0, 40.0, 60.0, 200.0, 10.0],
        }
    )
    # p1 alone priced: seat 5.00 + hourly 2.00 - MDE part 0.672 = 6.328.
    licensing = pl.LazyFrame(
        {
            "month": [OCTOBER],
            "resource_id": [P1],
            "seat_cost": [5.00],
            "hourly_cost": [2.00],
            "mde_component_cost": [0.672],
        }
    )
    subscriptions = pl.LazyFrame(
        {
            "subscription_id": [SUB_P1, SUB_P2, SUB_DEV, SUB_X],
            "management_group_path": [PRODUCTION, PRODUCTION, DEVELOPMENT, None],
        }
    )
    part = showback_part(machines, hours, charges, licensing, keys, currency="usd")
    return finish_showback(part, subscriptions).collect()


def test_management_groups_roll_up_their_subscriptions_to_the_cent():
    rows = estate_showback(("management_group",))
    got = figures_by_group(rows)
    assert got == {
        # P1 (p1, the mover) 2 + P2 (the mover) 1 = 3: the mover counts once per subscription;
        # 100 + 40 + 60 = 200 h; 1.11 + 2.22 + 3.33 + P2's workspace 0.44 = 7.10; p1's 6.328.
        ("value", PRODUCTION): (3, 200.0, 7.10, 0.0, 6.328),
        # DEV: d1, 200 h, 4.05 + 0.10 = 4.15, of which 0.10 allocated.
        ("value", DEVELOPMENT): (1, 200.0, 4.15, 0.10, 0.0),
        # X has no path: x1, 10 h, 5.00 + X's workspace 0.06 + the 0.07 of no subscription = 5.13.
        ("missing", None): (1, 10.0, 5.13, 0.0, 0.0),
    }
    # 7.10 + 4.15 + 5.13 = 16.38, the estate's bill.
    assert round(rows["billed_cost"].sum(), 2) == 16.38
    assert set(rows["group_key"]) == {"management_group"}


def test_the_subscription_key_beside_it_keeps_its_own_rows():
    rows = estate_showback(("subscription", "management_group"))
    by_subscription = {
        row["group_value"]: round(row["billed_cost"], 6)
        for row in rows.filter(pl.col("group_key") == "subscription").iter_rows(named=True)
    }
    # P1 1.11 + 2.22 = 3.33; P2 3.33 + 0.44 = 3.77; DEV 4.15; X 5.00 + 0.06 = 5.06; the 0.07
    # of no subscription under its (null) subscription.
    assert by_subscription == {
        SUB_P1: 3.33,
        SUB_P2: 3.77,
        SUB_DEV: 4.15,
        SUB_X: 5.06,
        None: 0.07,
    }
    # The same management groups as alone: the 0.07 of no subscription in missing with X's.
    by_group = {
        (row["group_kind"], row["group_value"]): round(row["billed_cost"], 6)
        for row in rows.filter(pl.col("group_key") == "management_group").iter_rows(named=True)
    }
    assert by_group == {
        ("value", PRODUCTION): 7.10,
        ("value", DEVELOPMENT): 4.15,
        ("missing", None): 5.13,
    }
