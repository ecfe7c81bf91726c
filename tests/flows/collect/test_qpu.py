"""The tenant's QPU ledger: reservations wait for room in every window; answers settle them."""

from pathlib import Path

from flows.collect.qpu import QpuBudget, ledger_path, remaining_by_window

REMAINING = "x-ms-ratelimit-microsoft.costmanagement-qpu-remaining"
CONSUMED = "x-ms-ratelimit-microsoft.costmanagement-qpu-consumed"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def budget(tmp_path: Path, clock: Clock) -> QpuBudget:
    return QpuBudget(ledger_path(tmp_path, "tenant-a"), clock=clock, sleep=clock.sleep)


def test_the_thirteenth_query_in_ten_seconds_waits_for_the_first_to_leave_the_window(tmp_path):
    clock = Clock()
    ledger = budget(tmp_path, clock)
    waits = []
    for _ in range(13):
        reservation, waited = ledger.reserve()
        ledger.settle(reservation, {CONSUMED: "1"})
        waits.append(waited)
    # Twelve fit in the 10 s window at once; the 13th waits until the first (answered at
    # t=1000) has left it: 10 s, taken 10 % longer (WINDOW_MARGIN) = 11 s, plus a microsecond.
    assert waits[:12] == [0.0] * 12
    assert abs(waits[12] - 11.0) < 1e-3


def test_the_hour_window_binds_after_600_qpu(tmp_path):
    clock = Clock()
    ledger = budget(tmp_path, clock)
    total_wait = 0.0
    for _ in range(601):
        reservation, waited = ledger.reserve()
        ledger.settle(reservation, {})
        total_wait += waited
    # 600 fit in the hour (60 a minute, 12 per 10 s); the 601st waits for the first to leave
    # the hour: it went at t=1000, so the 601st goes at 1000 + 3600 x 1.1 = 4960.
    assert abs(clock.now - 4960.0) < 1e-3


def test_what_other_tools_used_is_booked_from_the_remaining_header(tmp_path):
    clock = Clock()
    ledger = budget(tmp_path, clock)
    reservation, _ = ledger.reserve()
    # The service says 2 QPU are left in the 10 s window: 12 - 2 = 10 used, 1 of them ours,
    # so 9 are other tools'. Two more fit now; the third waits 11 s.
    ledger.settle(
        reservation,
        {CONSUMED: "1", REMAINING: "QueryPerTenantPer10Seconds:2,QueryPerTenantPer1Min:50"},
    )
    waits = [ledger.reserve()[1] for _ in range(3)]
    assert waits[:2] == [0.0, 0.0]
    assert abs(waits[2] - 11.0) < 1e-3


def test_the_remaining_header_is_read_by_the_unit_each_window_names():
    assert remaining_by_window("QueryPerTenantPer10Seconds:11, PerMinute:59,Hourly:598,x:1") == {
        10.0: 11.0,
        60.0: 59.0,
        3600.0: 598.0,
    }
