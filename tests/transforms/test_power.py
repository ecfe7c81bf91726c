"""Power intervals and billable hours on small hand-built estates, figures worked out by hand.

The window is January 2026 ([Jan 1, Feb 1), 31 days, 744 hours) unless a test says otherwise;
the inventory snapshot is taken at the window's end (Feb 1 00:00), "the present".
"""

from datetime import date

import polars as pl
import pytest

from tests.transforms.conftest import SUB_A, SUB_B, at, vm_id, vmss_instance_id
from transforms.machines import machines
from transforms.power import machine_hours_daily, power_intervals

WINDOW_START = at(1)
WINDOW_END = at(1, month=2)


def intervals_of(lake, resource_id=None):
    frame = power_intervals(
        lake.inventory, lake.power_events, window_start=WINDOW_START, window_end=WINDOW_END
    ).collect()
    if resource_id is not None:
        frame = frame.filter(pl.col("resource_id") == resource_id.lower())
    return [
        (r["state"], r["start_at"], r["end_at"], r["billable"]) for r in frame.iter_rows(named=True)
    ]


def daily_hours(lake, partial_hours="fractional"):
    intervals = power_intervals(
        lake.inventory, lake.power_events, window_start=WINDOW_START, window_end=WINDOW_END
    )
    view = machines(lake.inventory, lake.power_events, lake.pricings)
    return machine_hours_daily(intervals, view, partial_hours=partial_hours).collect()


def hours_by_day(daily, resource_id):
    rows = daily.filter(pl.col("resource_id") == resource_id.lower())
    return dict(zip(rows["usage_date"], rows["billable_hours"], strict=True))


def test_vm_stopped_from_the_guest_os_stays_billable_all_window(lake):
    # No event at all and the instance view says `stopped`: shut down from inside the OS, still
    # allocated, so billable the whole window: 31 days x 24 h = 744 h.
    vm = lake.machine(vm_id(SUB_A, "rg", "guest-stopped"), power_state="stopped")
    assert intervals_of(lake, vm) == [("stopped", WINDOW_START, WINDOW_END, True)]
    hours = hours_by_day(daily_hours(lake), vm)
    assert len(hours) == 31
    assert set(hours.values()) == {24.0}


def test_snapshot_stopped_after_a_start_is_a_guest_shutdown_and_billable(lake):
    # Deallocated until a start Jan 10 08:00-08:02; the snapshot at the present says stopped
    # with no event after the start: a guest shutdown, billable from 08:02 to the present.
    vm = lake.machine(vm_id(SUB_A, "rg", "app"), power_state="stopped")
    lake.operation(vm, "start", at(10, 8), at(10, 8, 2))
    assert intervals_of(lake, vm) == [
        ("deallocated", WINDOW_START, at(10, 8), False),
        ("starting", at(10, 8), at(10, 8, 2), False),
        ("stopped", at(10, 8, 2), WINDOW_END, True),
    ]
    hours = hours_by_day(daily_hours(lake), vm)
    # Jan 10: 08:02 -> 24:00 = 15 h 58 min; Jan 11..31: 21 days x 24 h.
    assert hours[date(2026, 1, 9)] == 0.0
    assert hours[date(2026, 1, 10)] == pytest.approx(15 + 58 / 60, abs=1e-9)
    assert sum(hours.values()) == pytest.approx(15 + 58 / 60 + 21 * 24, abs=1e-9)


def test_every_snapshot_taken_while_an_operation_runs_is_ignored(lake):
    # Running until a deallocate Jan 10 00:00 - Jan 12 00:00 (a slow one), deallocated after;
    # two snapshots during it (Jan 10 12:00 and Jan 11 12:00, both `running`, the second right
    # after the first) tell nothing the operation does not: both are ignored, the second too.
    # Billable: Jan 1 - 10, 9 days = 216 h.
    vm = lake.machine(vm_id(SUB_A, "rg", "slow"), power_state="running", snapshot_at=at(10, 12))
    lake.machine(vm, power_state="running", snapshot_at=at(11, 12))
    lake.machine(vm, power_state="deallocated")
    lake.operation(vm, "deallocate", at(10), at(12))
    assert intervals_of(lake, vm) == [
        ("running", WINDOW_START, at(10), True),
        ("deallocating", at(10), at(12), False),
        ("deallocated", at(12), WINDOW_END, False),
    ]
    assert sum(hours_by_day(daily_hours(lake), vm).values()) == 216.0


def test_an_earlier_snapshot_settles_the_state_before_the_first_operation(lake):
    # The Jan 1 snapshot saw the VM stopped (a guest shutdown before the window); it is started
    # Jan 10 08:00-08:02. Without that snapshot the start would imply deallocated before it.
    # A snapshot taken during the start (08:01, `starting`) is ignored: the operation says more.
    # Billable: all of January but the 2 starting minutes = 744 h - 2 min.
    vm = lake.machine(vm_id(SUB_A, "rg", "jump"), power_state="stopped", snapshot_at=at(1))
    lake.machine(vm, power_state="starting", snapshot_at=at(10, 8, 1))
    lake.machine(vm, power_state="running")
    lake.operation(vm, "start", at(10, 8), at(10, 8, 2))
    assert intervals_of(lake, vm) == [
        ("stopped", WINDOW_START, at(10, 8), True),
        ("starting", at(10, 8), at(10, 8, 2), False),
        ("running", at(10, 8, 2), WINDOW_END, True),
    ]
    assert sum(hours_by_day(daily_hours(lake), vm).values()) == pytest.approx(744 - 2 / 60)


def test_snapshots_between_operations_hold_backwards_and_forwards(lake):
    # No operations; snapshots saw `deallocated` on Jan 11 and `running` on Feb 1 (a start whose
    # events were lost). Backwards from each sighting: deallocated until Jan 11 00:00, running
    # from then (nothing logged between them): 21 days x 24 h = 504 h.
    vm = lake.machine(vm_id(SUB_A, "rg", "sparse"), power_state="deallocated", snapshot_at=at(11))
    lake.machine(vm, power_state="running")
    assert intervals_of(lake, vm) == [
        ("deallocated", WINDOW_START, at(11), False),
        ("running", at(11), WINDOW_END, True),
    ]


def test_failed_start_returns_the_vm_to_deallocated(lake):
    # start Started Jan 5 10:00, Failed 10:03: starting for 3 minutes, then deallocated again.
    vm = lake.machine(vm_id(SUB_A, "rg", "flaky"), power_state="deallocated")
    lake.operation(vm, "start", at(5, 10), at(5, 10, 3), outcome="Failed")
    assert intervals_of(lake, vm) == [
        ("deallocated", WINDOW_START, at(5, 10), False),
        ("starting", at(5, 10), at(5, 10, 3), False),
        ("deallocated", at(5, 10, 3), WINDOW_END, False),
    ]
    assert sum(hours_by_day(daily_hours(lake), vm).values()) == 0.0


def test_vm_created_and_deleted_inside_the_month_is_bounded_by_both(lake):
    # Known only from the Activity Log: created Jan 3 12:00-12:10, powered off Jan 4 06:00-06:01,
    # deleted Jan 5 18:00-18:30. Billable: running from 12:10 (11 h 50 min on Jan 3), running /
    # stopping / stopped all of Jan 4 (24 h), stopped until the delete starts (18 h on Jan 5).
    vm = vm_id(SUB_A, "rg", "Ephemeral")
    lake.operation(vm, "write", at(3, 12), at(3, 12, 10))
    lake.operation(vm, "power_off", at(4, 6), at(4, 6, 1))
    lake.operation(vm, "delete", at(5, 18), at(5, 18, 30))
    assert intervals_of(lake, vm) == [
        ("creating", at(3, 12), at(3, 12, 10), False),
        ("running", at(3, 12, 10), at(4, 6), True),
        ("stopping", at(4, 6), at(4, 6, 1), True),
        ("stopped", at(4, 6, 1), at(5, 18), True),
        ("deleting", at(5, 18), at(5, 18, 30), False),
    ]
    hours = hours_by_day(daily_hours(lake), vm)
    assert hours == {
        date(2026, 1, 3): pytest.approx(11 + 50 / 60, abs=1e-9),
        date(2026, 1, 4): 24.0,
        date(2026, 1, 5): 18.0,
    }
    row = machines(lake.inventory, lake.power_events, lake.pricings).collect().row(0, named=True)
    assert row["resource_id"] == vm.lower()
    assert row["machine_name"] == "ephemeral"
    assert row["machine_kind"] == "vm"
    assert row["created_at"] == at(3, 12)
    assert row["deleted_at"] == at(5, 18, 30)
    assert row["last_seen_at"] is None


def test_deleted_vm_without_earlier_events_was_running_until_the_delete(lake):
    # Only a delete Jan 20 09:00-09:05: assumed running from before the window (19 x 24 + 9 h).
    vm = vm_id(SUB_A, "rg", "old")
    lake.operation(vm, "delete", at(20, 9), at(20, 9, 5))
    assert intervals_of(lake, vm) == [
        ("running", WINDOW_START, at(20, 9), True),
        ("deleting", at(20, 9), at(20, 9, 5), False),
    ]
    assert sum(hours_by_day(daily_hours(lake), vm).values()) == 19 * 24 + 9


def test_restart_and_update_keep_the_vm_running_and_billable(lake):
    # A restart Jan 7 03:00-03:04 and a configuration write Jan 8 09:00-09:01 on a VM created in
    # 2025: it stays allocated and running; one interval, 744 billable hours.
    vm = lake.machine(vm_id(SUB_A, "rg", "web"), power_state="running")
    lake.operation(vm, "restart", at(7, 3), at(7, 3, 4))
    lake.operation(vm, "write", at(8, 9), at(8, 9, 1))
    assert intervals_of(lake, vm) == [("running", WINDOW_START, WINDOW_END, True)]
    assert sum(hours_by_day(daily_hours(lake), vm).values()) == 744.0


def test_resource_id_case_differs_between_inventory_and_events(lake):
    # Compute spells `resourceGroups/RG-Mixed/.../VM-Case`; the events arrive upper-cased.
    # Both are one machine: deallocated Jan 31 12:00-12:10, so 12 billable hours on Jan 31.
    vm = lake.machine(vm_id(SUB_A, "RG-Mixed", "VM-Case"), power_state="deallocated")
    lake.operation(vm.upper(), "deallocate", at(31, 12), at(31, 12, 10))
    frame = power_intervals(
        lake.inventory, lake.power_events, window_start=WINDOW_START, window_end=WINDOW_END
    ).collect()
    assert frame["resource_id"].unique().to_list() == [vm.lower()]
    hours = hours_by_day(daily_hours(lake), vm)
    assert hours[date(2026, 1, 31)] == 12.0
    assert sum(hours.values()) == 30 * 24 + 12


def test_scale_set_instances_are_machines_of_their_own(lake):
    # Instance 0 runs all month (744 h). Instance 1 is created Jan 30 00:00-00:06 by the scale
    # set (its own write event) and runs until the present: 24 h - 6 min on Jan 30, 24 h on 31.
    first = lake.machine(vmss_instance_id(SUB_A, "rg", "web-ss", 0))
    second = lake.machine(vmss_instance_id(SUB_A, "rg", "web-ss", 1), created_at=at(30))
    lake.operation(second, "write", at(30), at(30, 0, 6))
    daily = daily_hours(lake)
    assert sum(hours_by_day(daily, first).values()) == 744.0
    assert hours_by_day(daily, second) == {
        date(2026, 1, 30): pytest.approx(23.9, abs=1e-9),
        date(2026, 1, 31): 24.0,
    }
    view = machines(lake.inventory, lake.power_events, lake.pricings).collect()
    assert view["machine_kind"].to_list() == ["vmss_instance", "vmss_instance"]
    assert view["machine_name"].to_list() == ["web-ss_0", "web-ss_1"]
    assert view["scale_set_name"].to_list() == ["web-ss", "web-ss"]


def test_moved_vm_is_one_machine_with_both_ids(lake):
    # vmId "moved-vm" was last listed in rg-old (SUB_A) on the Jan 15 snapshot and is listed in
    # rg-new (SUB_B) on the Feb 1 snapshot; running throughout, no events. The old id ends and
    # the new one begins at the old id's last sighting (Jan 15 00:00): 14 x 24 = 336 h on the
    # old id, 17 x 24 = 408 h on the new one, 744 h in all: counted once.
    old = lake.machine(vm_id(SUB_A, "rg-old", "mover"), vm_id="moved-vm", snapshot_at=at(15))
    new = lake.machine(vm_id(SUB_B, "rg-new", "mover"), vm_id="moved-vm")
    daily = daily_hours(lake)
    assert sum(hours_by_day(daily, old).values()) == 336.0
    assert sum(hours_by_day(daily, new).values()) == 408.0
    view = machines(lake.inventory, lake.power_events, lake.pricings).collect()
    rows = {r["resource_id"]: r for r in view.iter_rows(named=True)}
    assert rows[old.lower()]["machine_key"] == rows[new.lower()]["machine_key"] == "moved-vm"
    assert rows[old.lower()]["other_resource_ids"] == [new.lower()]
    assert rows[new.lower()]["other_resource_ids"] == [old.lower()]
    assert rows[old.lower()]["moved_at"] == at(15)
    assert rows[new.lower()]["moved_at"] is None


def test_vm_gone_from_the_inventory_without_a_delete_event_ends_at_its_last_sighting(lake):
    # Listed on the Jan 10 snapshot only, running, no events: billable Jan 1-9 (9 x 24 h).
    gone = lake.machine(vm_id(SUB_A, "rg", "gone"), snapshot_at=at(10))
    lake.machine(vm_id(SUB_A, "rg", "stays"))
    assert sum(hours_by_day(daily_hours(lake), gone).values()) == 216.0


def test_operation_still_in_progress_at_the_present_is_transitional_until_then(lake):
    # deallocate Started Jan 31 23:30 with no outcome yet: deallocating (not billable) until the
    # present, so Jan 31 has 23.5 billable hours.
    vm = lake.machine(vm_id(SUB_A, "rg", "busy"), power_state="deallocating")
    lake.operation(vm, "deallocate", at(31, 23, 30), None)
    assert intervals_of(lake, vm)[-1] == ("deallocating", at(31, 23, 30), WINDOW_END, False)
    assert hours_by_day(daily_hours(lake), vm)[date(2026, 1, 31)] == 23.5


def test_round_up_clock_hour_counts_each_started_hour_once(lake):
    # Jan 2: running until a deallocate at 10:10 (done 10:15), started again 10:40-10:45.
    # Fractional: 24 h - 35 min billable. Rounded: hours 00..09 and 10 (billable 10:00-10:10
    # and 10:45-11:00, counted once) and 11..23 = 24 h.
    # Jan 10: deallocated 06:30-07:30 (deallocate 06:20-06:30, start 07:30-07:35): rounded, hour
    # 6 (billable until 06:20) and hour 7 (from 07:35) both count: 24 h; fractional 22 h 45 min.
    vm = lake.machine(vm_id(SUB_A, "rg", "blip"))
    lake.operation(vm, "deallocate", at(2, 10, 10), at(2, 10, 15))
    lake.operation(vm, "start", at(2, 10, 40), at(2, 10, 45))
    lake.operation(vm, "deallocate", at(10, 6, 20), at(10, 6, 30))
    lake.operation(vm, "start", at(10, 7, 30), at(10, 7, 35))
    fractional = hours_by_day(daily_hours(lake), vm)
    rounded = hours_by_day(daily_hours(lake, "round_up_clock_hour"), vm)
    assert fractional[date(2026, 1, 2)] == pytest.approx(24 - 35 / 60, abs=1e-9)
    assert fractional[date(2026, 1, 10)] == pytest.approx(22.75, abs=1e-9)
    assert rounded[date(2026, 1, 2)] == 24.0
    assert rounded[date(2026, 1, 10)] == 24.0
    assert len(rounded) == 31


def test_round_up_of_a_short_life_counts_whole_hours(lake):
    # Created Jan 3 12:00-12:10, deleted Jan 3 14:20-14:25: billable 12:10-14:20, touching the
    # clock hours 12, 13 and 14 -> 3 h rounded (2 h 10 min fractional).
    vm = vm_id(SUB_A, "rg", "blink")
    lake.operation(vm, "write", at(3, 12), at(3, 12, 10))
    lake.operation(vm, "delete", at(3, 14, 20), at(3, 14, 25))
    assert hours_by_day(daily_hours(lake), vm) == {date(2026, 1, 3): pytest.approx(13 / 6)}
    assert hours_by_day(daily_hours(lake, "round_up_clock_hour"), vm) == {date(2026, 1, 3): 3.0}


def test_unknown_partial_hours_mode_is_refused(lake):
    lake.machine(vm_id(SUB_A, "rg", "x"))
    intervals = power_intervals(lake.inventory, lake.power_events, window_start=WINDOW_START)
    view = machines(lake.inventory, lake.power_events, lake.pricings)
    with pytest.raises(ValueError, match="partial_hours 'per_minute'"):
        machine_hours_daily(intervals, view, partial_hours="per_minute")


def test_window_end_defaults_to_the_latest_snapshot(lake):
    lake.machine(vm_id(SUB_A, "rg", "x"))
    frame = power_intervals(lake.inventory, lake.power_events, window_start=at(31)).collect()
    assert frame["end_at"].to_list() == [lake.snapshot_at]


def test_inventoried_vm_without_a_reported_power_state_is_unknown_and_not_billable(lake):
    # The instance view gave no power state and no event says anything: `unknown` all window,
    # not billable (a charge on it would show as billed_while_not_billable).
    vm = lake.machine(vm_id(SUB_A, "rg", "mute"), power_state=None)
    assert intervals_of(lake, vm) == [("unknown", WINDOW_START, WINDOW_END, False)]


def test_arc_machines_bill_while_connected(lake):
    # Arc machines have no compute events: connected all window is 744 billable hours,
    # disconnected none.
    connected = "/subscriptions/%s/resourceGroups/rg/providers/Microsoft.HybridCompute/machines/on"
    disconnected = connected.replace("/on", "/off")
    lake.machine(connected % SUB_A, kind="arc", power_state="Connected")
    lake.machine(disconnected % SUB_A, kind="arc", power_state="Disconnected")
    daily = daily_hours(lake)
    assert sum(hours_by_day(daily, connected % SUB_A).values()) == 744.0
    assert sum(hours_by_day(daily, disconnected % SUB_A).values()) == 0.0


ARC_ID = "/subscriptions/%s/resourceGroups/rg-arc/providers/Microsoft.HybridCompute/machines/%s"


def test_arc_status_history_from_daily_snapshots_and_last_status_change(lake):
    # The refresh saw `hq` Connected on Jan 10 (since Dec 1), Disconnected on Jan 11 (since
    # Jan 10 18:00), Connected on Jan 12 and at the present (since Jan 11 06:00): connected
    # until Jan 10 18:00, disconnected 12 h, connected again. Billable 744 - 12 = 732 h; Jan 10
    # 18 h, Jan 11 18 h (06:00-24:00).
    hq = ARC_ID % (SUB_A, "hq")
    since_december = at(1, month=12, year=2025)
    lake.machine(
        hq,
        kind="arc",
        power_state="Connected",
        status_changed_at=since_december,
        snapshot_at=at(10),
        created_at=None,
    )
    lake.machine(
        hq,
        kind="arc",
        power_state="Disconnected",
        status_changed_at=at(10, 18),
        snapshot_at=at(11),
        created_at=None,
    )
    for snapshot in (at(12), WINDOW_END):
        lake.machine(
            hq,
            kind="arc",
            power_state="Connected",
            status_changed_at=at(11, 6),
            snapshot_at=snapshot,
            created_at=None,
        )
    assert intervals_of(lake, hq) == [
        ("connected", WINDOW_START, at(10, 18), True),
        ("disconnected", at(10, 18), at(11, 6), False),
        ("connected", at(11, 6), WINDOW_END, True),
    ]
    hours = hours_by_day(daily_hours(lake), hq)
    assert sum(hours.values()) == 732.0
    assert (hours[date(2026, 1, 10)], hours[date(2026, 1, 11)]) == (18.0, 18.0)


def test_arc_machines_first_seen_after_a_change(lake):
    # Before a machine's first status change only the change itself is known:
    # - `old`, first snapshotted Jan 10 Disconnected since Dec 6 and Expired at the present
    #   since Jan 20 (45 days later): disconnected, then expired; never billable.
    # - `lapsed`, first seen at the present Expired since Jan 20: Disconnected from 45 days
    #   before (Dec 6), so the same, 0 h.
    # - `dropped`, first seen Disconnected since Jan 15: connected before (a machine
    #   disconnects from Connected), billable Jan 1-15, 14 x 24 = 336 h.
    # - `back`, first seen Connected since Jan 25 12:00: the disconnection before that change is
    #   of unknown length, taken as none, so connected all window: 744 h.
    # - `new`, onboarded Jan 25 12:00 (systemData.createdAt) and Connected since: it exists
    #   from then, 6.5 days = 156 h.
    old, lapsed = ARC_ID % (SUB_A, "old"), ARC_ID % (SUB_A, "lapsed")
    dropped, back, new = (ARC_ID % (SUB_A, name) for name in ("dropped", "back", "new"))
    lake.machine(
        old,
        kind="arc",
        power_state="Disconnected",
        snapshot_at=at(10),
        status_changed_at=at(6, month=12, year=2025),
        created_at=None,
    )
    for machine in (old, lapsed):
        lake.machine(
            machine, kind="arc", power_state="Expired", status_changed_at=at(20), created_at=None
        )
    lake.machine(
        dropped, kind="arc", power_state="Disconnected", status_changed_at=at(15), created_at=None
    )
    lake.machine(
        back, kind="arc", power_state="Connected", status_changed_at=at(25, 12), created_at=None
    )
    lake.machine(
        new,
        kind="arc",
        power_state="Connected",
        status_changed_at=at(25, 12),
        created_at=at(25, 12),
    )
    expired = [
        ("disconnected", WINDOW_START, at(20), False),
        ("expired", at(20), WINDOW_END, False),
    ]
    assert intervals_of(lake, old) == expired
    assert intervals_of(lake, lapsed) == expired
    assert intervals_of(lake, dropped) == [
        ("connected", WINDOW_START, at(15), True),
        ("disconnected", at(15), WINDOW_END, False),
    ]
    assert intervals_of(lake, back) == [("connected", WINDOW_START, WINDOW_END, True)]
    assert intervals_of(lake, new) == [("connected", at(25, 12), WINDOW_END, True)]
    daily = daily_hours(lake)
    totals = {m: sum(hours_by_day(daily, m).values()) for m in (old, dropped, back, new)}
    assert totals == {old: 0.0, dropped: 336.0, back: 744.0, new: 156.0}


def test_an_arc_disconnection_between_two_snapshots_is_not_seen(lake):
    # Snapshots at Jan 10 00:00 and Jan 11 00:00 both say Connected; the second since Jan 10
    # 20:00, so the machine was not connected just before then, but when that began the
    # snapshots cannot say. The assumption fills the gap: the earlier status holds until the
    # change, so all 744 h are billable (the precision the daily refresh gives).
    dip = ARC_ID % (SUB_A, "dip")
    lake.machine(
        dip,
        kind="arc",
        power_state="Connected",
        snapshot_at=at(10),
        status_changed_at=at(1, month=12, year=2025),
        created_at=None,
    )
    lake.machine(
        dip, kind="arc", power_state="Connected", status_changed_at=at(10, 20), created_at=None
    )
    assert intervals_of(lake, dip) == [("connected", WINDOW_START, WINDOW_END, True)]
