"""The estate's ground truth: worked out by hand on a tiny estate, and consistent at scale."""

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from flows.simulator.estate import Estate, EstateBuilder
from flows.simulator.model import MachineSpec, OperationRefused, SubscriptionSpec
from flows.simulator.profiles import profile_counts, window_start_for

MONDAY = datetime(2026, 3, 2, tzinfo=UTC)  # 2026-03-02 is a Monday
NEXT_MONDAY = MONDAY + timedelta(days=7)
SUBSCRIPTION = "00000000-0000-4000-8000-000000000001"
ARM_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/RG-Tiny"
    "/providers/Microsoft.Compute/virtualMachines/Dev-01"
)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """Day 0 is Monday 2026-03-02."""
    return MONDAY + timedelta(days=day, hours=hour, minutes=minute)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def tiny_estate() -> Estate:
    """One business-hours VM on a Plan 2 subscription, observed for one week.

    Mon, Tue, Thu: started 08:00 (2 min `starting`), deallocated 18:00 (3 min `deallocating`).
    Wed: a start at 08:00 fails after 5 minutes (back to deallocated); the retry at 08:15 takes
         2 minutes.
    Thu: shut down from inside the guest at 12:00 (stopped, no event), deallocated at 18:00.
    Fri: started 08:00, powered off (not deallocated) at 18:00 taking 1 minute: stopped, and so
         billable, all weekend.
    """
    builder = EstateBuilder(seed=1, window_start=MONDAY, now=NEXT_MONDAY)
    subscription = builder.add_subscription(
        SubscriptionSpec(
            subscription_id=SUBSCRIPTION,
            display_name="Tiny",
            defender_plan="P2",
            location="westeurope",
            enablement_time=MONDAY - timedelta(days=30),
        )
    )
    machine = MachineSpec(
        subscription=subscription,
        resource_group="RG-Tiny",
        name="Dev-01",
        vm_id="11111111-2222-4333-8444-555555555555",
        os_type="Linux",
        size="Standard_D2s_v5",
        location="westeurope",
        profile="business_hours",
        mde_sensor=True,
        created_at=MONDAY - timedelta(days=100),
    )
    vm = builder.add_machine(machine, initial_state="deallocated")
    for day in (0, 1, 2, 3, 4):
        if day == 2:
            vm.operate("start", at(day, 8), minutes(5), caller="scheduler", succeeded=False)
            vm.operate("start", at(day, 8, 15), minutes(2), caller="scheduler")
        else:
            vm.operate("start", at(day, 8), minutes(2), caller="scheduler")
        if day == 3:
            vm.guest_shutdown(at(day, 12))
        if day == 4:
            vm.operate("power_off", at(day, 18), minutes(1), caller="scheduler")
        else:
            vm.operate("deallocate", at(day, 18), minutes(3), caller="scheduler")
    return builder.build()


def test_billable_hours_of_a_business_hours_week_worked_out_by_hand():
    hours = tiny_estate().billable_hours_daily()
    # Billable = running, stopping, stopped. Mon/Tue/Thu: running 08:02-18:00 = 598 min (Thu is
    # running then stopped: both billable). Wed: 08:17-18:00 = 583 min (the failed start's
    # `starting` is not billable). Fri: 08:02-24:00 = 958 min (stopping and stopped count).
    # Sat, Sun: stopped all day, 1440 min each. Total 6215 min = 103.58333 h.
    expected_minutes = [598, 598, 583, 598, 958, 1440, 1440]
    assert hours["usage_date"].to_list() == [date(2026, 3, 2 + d) for d in range(7)]
    assert hours["resource_id"].unique().to_list() == [ARM_ID.lower()]
    assert hours["billable_hours"].to_list() == pytest.approx([m / 60 for m in expected_minutes])
    assert hours["billable_hours"].sum() == pytest.approx(6215 / 60)


def test_true_timeline_includes_transitional_states_and_the_silent_guest_shutdown():
    intervals = tiny_estate().state_intervals()
    wednesday = intervals.filter((pl.col("start_at") >= at(2, 0)) & (pl.col("start_at") < at(3, 0)))
    assert wednesday.select("state", "start_at", "end_at").rows() == [
        ("starting", at(2, 8), at(2, 8, 5)),
        ("deallocated", at(2, 8, 5), at(2, 8, 15)),
        ("starting", at(2, 8, 15), at(2, 8, 17)),
        ("running", at(2, 8, 17), at(2, 18)),
        ("deallocating", at(2, 18), at(2, 18, 3)),
        ("deallocated", at(2, 18, 3), at(3, 8)),
    ]
    thursday_stop = intervals.filter(pl.col("start_at") == at(3, 12))
    assert thursday_stop.select("state", "end_at", "billable").rows() == [
        ("stopped", at(3, 18), True)
    ]
    assert intervals["end_at"].max() == NEXT_MONDAY


def test_activity_events_follow_azures_sequence_and_skip_the_guest_shutdown():
    events = tiny_estate().activity_events().sort("event_at")
    # Mon, Tue, Thu: start + deallocate; Wed: failed start, start, deallocate; Fri: start +
    # powerOff. Each operation logs Started, Accepted, then Succeeded or Failed: 11 x 3 events.
    assert events.height == 33
    per_operation = events.group_by("correlation_id", maintain_order=True).agg(
        pl.col("status"), pl.col("operation_name").first()
    )
    assert per_operation.height == 11
    assert per_operation["status"].to_list().count(["Started", "Accepted", "Failed"]) == 1
    assert per_operation["status"].to_list().count(["Started", "Accepted", "Succeeded"]) == 10
    assert per_operation["operation_name"].to_list()[-1] == (
        "Microsoft.Compute/virtualMachines/powerOff/action"
    )
    thursday = events.filter((pl.col("event_at") > at(3, 9)) & (pl.col("event_at") < at(3, 17)))
    assert thursday.height == 0
    failed = events.filter(pl.col("status") == "Failed")
    assert failed["event_at"].to_list() == [at(2, 8, 5)]


def test_costs_are_first_reported_incomplete_then_restated():
    estate = tiny_estate()
    defender = pl.col("meter") == "Standard P2 Node"
    tuesday = date(2026, 3, 3)

    def tuesday_hours(as_of):
        rows = estate.cost_rows(as_of=as_of).filter(defender & (pl.col("usage_date") == tuesday))
        return rows["quantity"].to_list()

    # Not reported while Tuesday is still running; then 80 % of 598 min; final from Thursday.
    assert tuesday_hours(at(1, 23)) == []
    assert tuesday_hours(at(2, 12)) == pytest.approx([0.8 * 598 / 60])
    assert tuesday_hours(at(3, 0)) == pytest.approx([598 / 60])
    final = estate.cost_rows().filter(defender)
    # Seven billed days (the day `now` falls in is never billed), at 0.02 USD per P2 hour.
    assert final.height == 7
    assert final["cost"].sum() == pytest.approx(6215 / 60 * 0.02)
    assert final["resource_id"].unique().to_list() == [ARM_ID.lower()]


def test_operations_azure_would_refuse_are_refused():
    estate_builder = EstateBuilder(seed=1, window_start=MONDAY, now=NEXT_MONDAY)
    subscription = estate_builder.add_subscription(
        SubscriptionSpec(SUBSCRIPTION, "Tiny", None, "westeurope")
    )
    machine = MachineSpec(
        subscription=subscription,
        resource_group="rg",
        name="vm",
        vm_id="v",
        os_type="Linux",
        size="Standard_B2ms",
        location="westeurope",
        profile="always_on",
        mde_sensor=False,
        created_at=MONDAY,
    )
    vm = estate_builder.add_machine(machine, initial_state="deallocated")
    with pytest.raises(OperationRefused):
        vm.operate("power_off", at(0, 9), minutes(1), caller="x")
    vm.operate("start", at(0, 9), minutes(2), caller="x")
    with pytest.raises(OperationRefused, match="overlaps"):
        vm.operate("restart", at(0, 9, 1), minutes(1), caller="x")


@pytest.fixture(scope="module")
def generated() -> Estate:
    return Estate.generate(
        seed=11, machines=60, months=4, now=datetime(2026, 11, 15, 12, tzinfo=UTC)
    )


def test_generation_is_deterministic_and_sized_by_parameters(generated):
    now = datetime(2026, 11, 15, 12, tzinfo=UTC)
    again = Estate.generate(seed=11, machines=60, months=4, now=now)
    assert again.machines().equals(generated.machines())
    assert again.activity_events().equals(generated.activity_events())
    assert again.cost_rows().equals(generated.cost_rows())
    other = Estate.generate(seed=12, machines=60, months=4, now=now)
    assert not other.machines()["vm_id"].equals(generated.machines()["vm_id"])
    # 60 machines; one was moved between subscriptions, so it has two resource ids. Besides
    # them, the 6 Arc machines of case 11 (5 in a one-month window: the AWS instance is
    # onboarded on Oct 5, before it starts).
    azure = pl.col("machine_kind") != "arc"
    assert generated.machines().filter(azure).height == 61
    assert generated.machines().filter(~azure).height == 6
    assert generated.moves().height == 1
    small = Estate.generate(seed=11, machines=5, months=1, now=now).machines()
    assert (small.filter(azure).height, small.filter(~azure).height) == (5, 5)
    assert generated.window_start == datetime(2026, 7, 15, tzinfo=UTC)
    assert window_start_for(datetime(2026, 5, 31, 8, tzinfo=UTC), 3) == datetime(
        2026, 2, 28, tzinfo=UTC
    )
    assert sum(profile_counts(60).values()) == 60


def test_generated_estate_has_every_kind_of_machine(generated):
    machines = generated.machines()
    assert set(machines["profile"]) == {
        "always_on",
        "business_hours",
        "business_hours_power_off",
        "batch",
        "guest_os_stopped",
        "short_lived",
        "scale_set",
        "arc",
    }
    assert set(machines["machine_kind"]) == {"vm", "vmss_instance", "arc"}
    assert set(machines["provider"]) == {"azure", "on_premises", "aws", "gcp"}
    assert set(machines["defender_plan"].to_list()) == {"P1", "P2", None}
    assert machines.filter(pl.col("defender_plan").is_not_null() & ~pl.col("mde_sensor")).height
    # A move is not a delete: the id moved out ends at `moved_at`, with no `deleted_at`.
    moves = generated.moves()
    moved_out = machines.filter(pl.col("moved_at").is_not_null())
    assert (
        moved_out.select("resource_id", "moved_at").rows()
        == moves.select("from_resource_id", "moved_at").rows()
    )
    assert moved_out["deleted_at"].is_null().all()
    assert machines.filter(pl.col("deleted_at").is_not_null())[
        "profile"
    ].unique().sort().to_list() == ["arc", "scale_set", "short_lived"]
    pricings = generated.pricings()
    assert set(pricings.filter(pl.col("level") == "resource")["pricing_tier"]) == {
        "Standard",
        "Free",
    }
    assert generated.activity_events().filter(pl.col("status") == "Failed").height > 0
    # Compute spells `resourceGroups/RG-Prod-Web`; cost data spells the same ids differently.
    cost_ids = set(generated.cost_rows()["resource_id"])
    compute_ids = {t.machine.arm_id for t in generated.timelines}
    assert not cost_ids & compute_ids
    assert {i.lower() for i in compute_ids if "virtualMachineScaleSets" not in i} & {
        i.lower() for i in cost_ids
    }


def test_every_transition_is_bracketed_by_its_events(generated):
    """The events a pipeline sees bound the transitional intervals of the true timeline; an
    operation on a whole scale set (logged on the set) bounds those of each of its instances."""
    events = generated.activity_events()
    instances = generated.machines().filter(pl.col("machine_kind") == "vmss_instance")
    set_of_instance = instances.select(
        "resource_id",
        pl.col("resource_id").str.replace(r"/virtualmachines/[^/]+$", "").alias("set_id"),
    )
    started = events.filter(pl.col("status") == "Started").select(
        "correlation_id", "resource_id", pl.col("event_at").alias("start_at")
    )
    started = pl.concat(
        [
            started,
            started.join(set_of_instance, left_on="resource_id", right_on="set_id").select(
                "correlation_id", pl.col("resource_id_right").alias("resource_id"), "start_at"
            ),
        ]
    )
    finished = events.filter(pl.col("status").is_in(["Succeeded", "Failed"])).select(
        "correlation_id", pl.col("event_at").alias("end_at")
    )
    operations = started.join(finished, on="correlation_id", how="inner")
    assert operations.height == started.height
    assert (
        operations.filter(
            pl.col("resource_id").str.ends_with(
                "/virtualmachinescalesets/" + generated.scale_set_specs[0].name.lower()
            )
        ).height
        == 2
    )  # deallocate, start
    transitional = generated.state_intervals().filter(
        pl.col("state").is_in(["starting", "deallocating", "stopping", "creating", "deleting"])
    )
    matched = transitional.join(operations, on=["resource_id", "start_at", "end_at"], how="anti")
    assert matched.height == 0


def test_guest_shutdowns_leave_no_event(generated):
    intervals = generated.state_intervals()
    entered_stopped = intervals.filter(pl.col("state") == "stopped").select(
        "resource_id", pl.col("start_at").alias("event_at")
    )
    events = generated.activity_events().select("resource_id", "event_at")
    silent = entered_stopped.join(events, on=["resource_id", "event_at"], how="anti")
    profiles = silent.join(generated.machines(), on="resource_id")["profile"].unique().to_list()
    assert profiles == ["guest_os_stopped"]


def test_anomalies_are_in_the_cost_data(generated):
    anomalies = generated.anomalies()
    assert set(anomalies["finding"]) == {"billed_while_not_billable", "billable_not_billed"}
    costs = generated.cost_rows().with_columns(pl.col("resource_id").str.to_lowercase())
    defender = costs.filter(pl.col("meter").str.ends_with("Node"))
    for row in anomalies.iter_rows(named=True):
        billed = defender.filter(
            (pl.col("resource_id") == row["resource_id"])
            & (pl.col("usage_date") == row["usage_date"])
        )["quantity"].sum()
        assert billed == row["billed_hours"]
        assert billed != row["billable_hours"]
