"""What the chunked build is planned and judged by (`transforms.marts`), worked out by hand.

`plan_chunks` packs whole subscriptions greedily, in sorted order, into chunks of at most
`max_weight`; `linked_subscriptions` finds the subscriptions a moved VM (one vmId) was listed in;
`estate_facts` is what every chunk is judged by, computed once over the whole lake.
"""

from datetime import UTC, date, datetime

from tests.transforms.conftest import SUB_A, SUB_B, RawLake, at, pricing_id, vm_id
from transforms.marts import EstateFacts, estate_facts, linked_subscriptions, plan_chunks
from transforms.marts import RawLake as LakeScans

SUB_C = "cccccccc-0000-0000-0000-000000000003"


def scans(lake: RawLake) -> LakeScans:
    return LakeScans(
        inventory=lake.inventory,
        pricings=lake.pricings,
        power_events=lake.power_events,
        costs=lake.costs,
    )


# --- plan_chunks ----------------------------------------------------------------------------


def test_subscriptions_are_packed_greedily_in_sorted_order_up_to_the_weight():
    # Sorted: s1 (3), s2 (4), s3 (2), s4 (5), at most 7 a chunk. s1 + s2 = 7 fits; s3 would make
    # 9, so it opens the next chunk; s3 + s4 = 7 fits.
    weights = {"s4": 5, "s2": 4, "s3": 2, "s1": 3}
    assert plan_chunks(weights, [], max_weight=7) == [("s1", "s2"), ("s3", "s4")]


def test_packing_is_greedy_in_order_not_a_best_fit():
    # a (4), b (5), c (3), at most 7: a alone (a + b = 9), b alone (b + c = 8), c alone. A best
    # fit would put a and c together (7); the plan never reorders subscriptions.
    assert plan_chunks({"a": 4, "b": 5, "c": 3}, [], max_weight=7) == [("a",), ("b",), ("c",)]


def test_a_linked_set_is_never_split_even_when_it_alone_exceeds_the_weight():
    # b and c share a VM: together they weigh 12 > 5, still one chunk; a and d are not held
    # back by it (a alone before it, d alone after it: 12 + 1 > 5).
    weights = {"a": 1, "b": 6, "c": 6, "d": 1}
    links = [frozenset({"b", "c"})]
    assert plan_chunks(weights, links, max_weight=5) == [("a",), ("b", "c"), ("d",)]


def test_a_linked_set_travels_with_its_first_member_in_sorted_order():
    # a and d are linked (weight 2, placed where a sorts); b + c = 2 fit the next chunk.
    weights = {"a": 1, "b": 1, "c": 1, "d": 1}
    assert plan_chunks(weights, [frozenset({"d", "a"})], max_weight=2) == [("a", "d"), ("b", "c")]


def test_links_are_transitive():
    # a-b and b-c: one machine moved twice, or two machines; either way a, b and c are one set.
    weights = {"a": 1, "b": 1, "c": 1, "d": 1}
    links = [frozenset({"b", "c"}), frozenset({"a", "b"})]
    assert plan_chunks(weights, links, max_weight=1) == [("a", "b", "c"), ("d",)]


def test_a_subscription_heavier_than_the_weight_is_a_chunk_of_its_own():
    # b (10) exceeds 3: it closes a's chunk (1 + 10 > 3) and c cannot join it (10 + 1 > 3).
    assert plan_chunks({"a": 1, "b": 10, "c": 1}, [], max_weight=3) == [("a",), ("b",), ("c",)]
    assert plan_chunks({"b": 10}, [], max_weight=3) == [("b",)]


def test_a_zero_weight_puts_every_subscription_or_linked_set_in_a_chunk_of_its_own():
    weights = {"c": 7, "a": 2, "b": 3}
    assert plan_chunks(weights, [frozenset({"a", "c"})], max_weight=0) == [("a", "c"), ("b",)]


def test_links_naming_subscriptions_absent_from_the_weights_are_ignored():
    weights = {"a": 1, "b": 1, "c": 1}
    # Only one present member: no link at all, and no error for the absent one.
    assert plan_chunks(weights, [frozenset({"a", "gone"})], max_weight=1) == [
        ("a",),
        ("b",),
        ("c",),
    ]
    # The present members of a set still stay together (a and c), the absent one is dropped.
    assert plan_chunks(weights, [frozenset({"a", "gone", "c"})], max_weight=1) == [
        ("a", "c"),
        ("b",),
    ]
    assert plan_chunks({}, [frozenset({"a", "b"})], max_weight=1) == []


def test_the_plan_does_not_depend_on_the_order_weights_and_links_are_given_in():
    weights = {"e": 2, "a": 3, "d": 1, "b": 2, "c": 4}
    links = [frozenset({"e", "b"}), frozenset({"c", "d"})]
    # Sets in sorted order: [a] 3, [b, e] 4, [c, d] 5; at most 7: a + (b, e) = 7 fits,
    # (c, d) opens the next chunk.
    expected = [("a", "b", "e"), ("c", "d")]
    assert plan_chunks(weights, links, max_weight=7) == expected
    reversed_weights = dict(reversed(list(weights.items())))
    assert plan_chunks(reversed_weights, list(reversed(links)), max_weight=7) == expected


# --- linked_subscriptions -------------------------------------------------------------------


def test_a_vm_listed_in_two_subscriptions_links_exactly_that_pair():
    lake = RawLake()
    # The mover's vmId is listed in SUB_A (Jan 11) and then in SUB_B, spelled in upper case
    # there (ids differ in case between APIs): one machine, so SUB_A and SUB_B are linked.
    lake.machine(vm_id(SUB_A, "rg-old", "mover"), vm_id="mover-vm", snapshot_at=at(11))
    lake.machine(vm_id(SUB_B.upper(), "rg-new", "mover"), vm_id="MOVER-VM")
    # A VM moved between resource groups of SUB_C, the subscription spelled in two cases: one
    # subscription, so no link.
    lake.machine(vm_id(SUB_C.upper(), "rg-1", "local"), vm_id="local-vm", snapshot_at=at(11))
    lake.machine(vm_id(SUB_C, "rg-2", "local"), vm_id="local-vm")
    # Unrelated machines, each in one subscription, and two machines of no known vmId in two
    # subscriptions: an unknown vmId links nothing.
    lake.machine(vm_id(SUB_A, "rg", "a1"), vm_id="a1")
    lake.machine(vm_id(SUB_C, "rg", "c1"), vm_id="c1")
    lake.machine(vm_id(SUB_A, "rg", "no-vmid-a"), vm_id="placeholder-a")
    lake.machine(vm_id(SUB_C, "rg", "no-vmid-c"), vm_id="placeholder-c")
    for row in lake.inventory_rows:
        if row["vm_id"].startswith("placeholder"):
            row["vm_id"] = None
    assert linked_subscriptions(lake.inventory) == [frozenset({SUB_A, SUB_B})]


def test_a_directly_onboarded_server_links_its_subscription_with_its_arc_namesake_s():
    lake = RawLake()
    # SQL-01 is an Arc machine of SUB_B; the designated subscription SUB_A is billed for
    # "sql-01.contoso.local", onboarded directly through Defender for Endpoint: the two must be
    # built together. SUB_C's Arc machine WEB-9 has no directly onboarded namesake: no link, nor
    # does "branch-7", directly onboarded with no Arc twin.
    lake.machine(
        f"/subscriptions/{SUB_B}/resourceGroups/rg/providers/Microsoft.HybridCompute/machines/SQL-01",
        kind="arc",
    )
    lake.machine(
        f"/subscriptions/{SUB_C}/resourceGroups/rg/providers/Microsoft.HybridCompute/machines/WEB-9",
        kind="arc",
    )
    lake.cost(date(2026, 1, 8), "sql-01.contoso.local", hours=24, amount=0.48)
    lake.cost(date(2026, 1, 8), "branch-7.contoso.local", hours=24, amount=0.48)
    assert linked_subscriptions(lake.inventory, lake.costs) == [frozenset({SUB_A, SUB_B})]


def test_no_shared_vm_means_no_links():
    lake = RawLake()
    lake.machine(vm_id(SUB_A, "rg", "a1"), vm_id="a1")
    lake.machine(vm_id(SUB_B, "rg", "b1"), vm_id="b1")
    assert linked_subscriptions(lake.inventory) == []


# --- estate_facts ---------------------------------------------------------------------------


def test_billed_through_is_the_last_day_of_a_billed_defender_charge_in_the_history():
    lake = RawLake()  # latest snapshot Feb 1 00:00
    a1 = lake.machine(vm_id(SUB_A, "rg", "a1"))
    lake.operation(a1, "restart", at(10, 8), at(10, 8, 5))
    # History: from Jan 1 (the month of the Jan 10 event) to the Feb 1 00:00 snapshot.
    lake.cost(date(2026, 1, 20), a1, hours=24, amount=0.48)  # billed: ActualCost
    lake.cost(date(2026, 1, 25), a1, hours=24, amount=0.48, cost_type="FocusCost")  # billed
    # Later rows that must not count: an amortized copy, a VM compute row, a charge on Feb 1
    # (outside the history, which ends at Feb 1 00:00).
    lake.cost(date(2026, 1, 30), a1, hours=24, amount=0.48, cost_type="AmortizedCost")
    lake.cost(date(2026, 1, 31), a1, hours=24, amount=2.40, meter="D2s v5")
    lake.cost(date(2026, 2, 1), a1, hours=24, amount=0.48)
    facts = estate_facts(scans(lake))
    assert facts == EstateFacts(
        history=(at(1), at(1, month=2)),
        latest_snapshot_date=date(2026, 2, 1),
        billed_through=date(2026, 1, 25),
    )


def test_a_charge_named_only_by_its_description_counts_and_one_before_the_history_does_not():
    lake = RawLake()
    a1 = lake.machine(vm_id(SUB_A, "rg", "a1"))
    lake.operation(a1, "restart", at(3, 8), at(3, 8, 5))
    lake.cost(date(2025, 12, 31), a1, hours=24, amount=0.48)  # before Jan 1: outside
    lake.cost(
        date(2026, 1, 12),
        pricing_id(SUB_A),
        hours=24,
        amount=0.48,
        meter="",
        description="Microsoft Defender for Servers Plan 2",
    )
    assert estate_facts(scans(lake)).billed_through == date(2026, 1, 12)


def test_no_billed_defender_charge_means_no_billed_through():
    lake = RawLake()
    a1 = lake.machine(vm_id(SUB_A, "rg", "a1"))
    lake.operation(a1, "restart", at(10, 8), at(10, 8, 5))
    # Both rows are inside the history [Jan 1, Feb 1): neither is a billed Defender charge.
    lake.cost(date(2026, 1, 30), a1, hours=24, amount=0.48, cost_type="AmortizedCost")
    lake.cost(date(2026, 1, 31), a1, hours=24, amount=2.40, meter="D2s v5")
    facts = estate_facts(scans(lake))
    assert facts.history == (at(1), at(1, month=2))
    assert facts.billed_through is None


def test_latest_snapshot_date_is_the_estates_not_a_subscriptions():
    # SUB_A was last collected on Jan 11; SUB_B on Jan 31 at 23:30: the estate's latest
    # inventory snapshot is on Jan 31, for SUB_A's machines too.
    lake = RawLake(snapshot_at=datetime(2026, 1, 31, 23, 30, tzinfo=UTC))
    lake.machine(vm_id(SUB_A, "rg", "a1"), snapshot_at=at(11))
    lake.machine(vm_id(SUB_B, "rg", "b1"))
    facts = estate_facts(scans(lake))
    assert facts.latest_snapshot_date == date(2026, 1, 31)
    assert facts.history == (at(1), datetime(2026, 1, 31, 23, 30, tzinfo=UTC))


def test_an_empty_lake_has_no_facts_and_chunks_judge_by_the_epoch():
    empty = RawLake()
    facts = estate_facts(scans(empty))
    assert facts == EstateFacts(history=None, latest_snapshot_date=None, billed_through=None)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert (facts.window_start, facts.window_end) == (epoch, epoch)
