"""An incremental `build` gives the warehouse a full build gives, copying what it may.

A lake written by hand, Dec 2025 - Apr 2026, two subscriptions, each its own chunk, seat blocks
of one month (`seat_reassignment_days = 30`) so every month is a unit of its own. Defender for
Servers P2 at subscription level, list price 0.02 an hour (24 h = 0.48).

Collected up to Apr 1 00:00 (the base lake):
- SUB_A: a1 runs throughout (snapshots Dec 1 and Apr 1), charged 0.48 every day Dec 1 - Mar 31
  but Feb 15 (a billable_not_billed finding: 24 h, 0.48).
- SUB_C: b1, running at its Jan 5 snapshot, deallocated at its Apr 1 snapshot, nothing in its
  Activity Log: the Apr 1 state holds back to the Jan 5 evidence, so b1 is billable Dec 1 -
  Jan 5 only (35 days, 840 h). It is charged 0.48 a day Dec 1 - Feb 9 on its own id, so
  Jan 5 - Feb 9 look billed while not billable: Jan 27 days (12.96), Feb 9 days (4.32).

The next night (the daily refresh) collects Apr 2: a snapshot of each subscription (a1 running,
b1 deallocated), their pricings, a1's charge of Apr 1, and b1's February Activity Log arrives
late: a deallocate Feb 10 00:00 - 00:06. b1 now ran until Feb 10 (71 days, 1,704 h), so its
timeline changed from Jan 5: a change whose files are of February and April reaching back into
January. What each chunk recomputes, by the rule of `transforms.incremental`:
- SUB_A: from April. Its new snapshot, its pricings (the same settings as Apr 1's), its charge
  of Apr 1, the history's end (Apr 1 -> Apr 2) and its last billed day (Mar 31 -> Apr 1: the
  days after Mar 31) are all April's; a1's last interval now ends a day later (from Apr 1).
- SUB_C: from January, where the recomputed timeline first differs (Jan 5); December is copied.

Then the cost data restates a1's February: the missing Feb 15 charge arrives (0.48). SUB_A is
recomputed from February, its timelines resumed from the last build's resume points (no power
event or snapshot changed); nothing of SUB_C changed, so it is copied whole.
"""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest

from benchmarks.compare import differences
from flows.build import build
from flows.incremental import (
    WHOLE_HISTORY,
    Facts,
    Published,
    changed_months,
    facts_month,
    first_changed_month,
)
from flows.lake import dataset_files, partition_value
from tests.flows.test_chunked_build import ONE_SUBSCRIPTION_PER_CHUNK, SUB_C, write_estate
from tests.transforms.conftest import SUB_A, RawLake, vm_id
from transforms.schemas import DATASETS

A1 = vm_id(SUB_A, "rg-a", "a1")
A2 = vm_id(SUB_A, "rg-a", "a2")
B1 = vm_id(SUB_C, "rg-c", "b1")
BASE_COLLECTED = datetime(2026, 4, 1, tzinfo=UTC)
REFRESH_COLLECTED = datetime(2026, 4, 2, tzinfo=UTC)


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def base_estate() -> RawLake:
    lake = RawLake(snapshot_at=BASE_COLLECTED)
    for subscription in (SUB_A, SUB_C):
        lake.pricing(subscription, "Standard", "P2")
    lake.machine(A1, vm_id="a1", snapshot_at=datetime(2025, 12, 1, tzinfo=UTC))
    lake.machine(A1, vm_id="a1")
    lake.machine(B1, vm_id="b1", snapshot_at=datetime(2026, 1, 5, tzinfo=UTC))
    lake.machine(B1, vm_id="b1", power_state="deallocated")
    for day in days(date(2025, 12, 1), date(2026, 3, 31)):
        if day != date(2026, 2, 15):
            lake.cost(day, A1, hours=24, amount=0.48, subscription=SUB_A)
    for day in days(date(2025, 12, 1), date(2026, 2, 9)):
        lake.cost(day, B1, hours=24, amount=0.48, subscription=SUB_C)
    return lake


def refresh_estate() -> RawLake:
    """What the Apr 2 collection adds (new partitions: nothing of the base is rewritten)."""
    lake = RawLake(snapshot_at=REFRESH_COLLECTED)
    for subscription in (SUB_A, SUB_C):
        lake.pricing(subscription, "Standard", "P2")
    lake.machine(A1, vm_id="a1")
    lake.machine(B1, vm_id="b1", power_state="deallocated")
    lake.cost(date(2026, 4, 1), A1, hours=24, amount=0.48, subscription=SUB_A)
    lake.operation(
        B1, "deallocate", datetime(2026, 2, 10, tzinfo=UTC), datetime(2026, 2, 10, 0, 6, tzinfo=UTC)
    )
    return lake


def restated_february() -> RawLake:
    """SUB_A's February cost partition as the restated cost data holds it: Feb 15 too."""
    lake = RawLake(snapshot_at=REFRESH_COLLECTED)
    for day in days(date(2026, 2, 1), date(2026, 2, 28)):
        lake.cost(day, A1, hours=24, amount=0.48, subscription=SUB_A)
    return lake


def build_into(folder: Path, name: str, *, full: bool = False, reassignment_days: int = 30) -> str:
    """Build the lake `folder/lake` into `folder/name.duckdb` (its published warehouse if it
    exists); how the chunks were made."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MDECOST_LAKE__PATH", str(folder / "lake"))
        patch.setenv("MDECOST_WAREHOUSE__PATH", str(folder / f"{name}.duckdb"))
        patch.setenv("MDECOST_WAREHOUSE__CHUNK_MEGABYTES", ONE_SUBSCRIPTION_PER_CHUNK)
        patch.setenv("MDECOST_PRICING__SEAT_REASSIGNMENT_DAYS", str(reassignment_days))
        return build(config_file=folder / "mdecost.toml", full=full).made


def assert_same_warehouse(first: Path, second: Path) -> None:
    apart = {
        table: counts
        for table, counts in differences(first, second).items()
        if counts[1] or counts[2]
    }
    assert apart == {}


def findings(warehouse: Path, resource_id: str) -> dict[tuple[str, date], float]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute(
            "SELECT finding, month, round(amount, 6) FROM findings WHERE resource_id = $id",
            {"id": resource_id.lower()},
        ).fetchall()
    return {(finding, month): amount for finding, month, amount in rows}


def billable_hours(warehouse: Path, resource_id: str) -> float:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        (hours,) = con.execute(
            "SELECT sum(billable_hours) FROM machine_hours_daily WHERE resource_id = $id",
            {"id": resource_id.lower()},
        ).fetchone()
    return hours


def test_incremental_builds_equal_full_builds_and_copy_what_no_change_reaches(
    prefect_harness, tmp_path
):
    (tmp_path / "mdecost.toml").write_text("")
    lake = tmp_path / "lake"
    write_estate(lake, base_estate())
    assert build_into(tmp_path, "published").startswith("full build (no published warehouse")
    january, february = date(2026, 1, 1), date(2026, 2, 1)
    assert billable_hours(tmp_path / "published.duckdb", B1) == 840.0
    assert findings(tmp_path / "published.duckdb", B1) == {
        ("billed_while_not_billable", january): 12.96,
        ("billed_while_not_billable", february): 4.32,
    }
    assert findings(tmp_path / "published.duckdb", A1) == {("billable_not_billed", february): 0.48}

    write_estate(lake, refresh_estate())
    made = build_into(tmp_path, "published")
    assert made == "incremental build: chunks 1 from 2026-01, 1 from 2026-04 (timelines resumed)"
    build_into(tmp_path, "full", full=True)
    assert_same_warehouse(tmp_path / "full.duckdb", tmp_path / "published.duckdb")
    # b1 ran Dec 1 - Feb 10 00:00: 31 + 31 + 9 days = 71 x 24 h; every charge was billable.
    assert billable_hours(tmp_path / "published.duckdb", B1) == 1704.0
    assert findings(tmp_path / "published.duckdb", B1) == {}

    write_estate(lake, restated_february())
    (tmp_path / "full.duckdb").unlink()
    made = build_into(tmp_path, "published")
    assert made == "incremental build: chunks 1 copied, 1 from 2026-02 (timelines resumed)"
    build_into(tmp_path, "full", full=True)
    assert_same_warehouse(tmp_path / "full.duckdb", tmp_path / "published.duckdb")
    assert findings(tmp_path / "published.duckdb", A1) == {}


def test_a_cost_month_collected_again_with_the_same_rows_reaches_no_month(
    prefect_harness, tmp_path
):
    # Each night collects its restatement window again; most nights nothing was restated and
    # only the rows' ingested_at moves. SUB_A's February file rewritten so (its 27 rows, Feb 15
    # missing, collected again on Apr 2 03:00): no month is recomputed, both chunks are copied,
    # and the costs table holds the 27 rows of the new collection. A full build agrees.
    (tmp_path / "mdecost.toml").write_text("")
    lake = tmp_path / "lake"
    write_estate(lake, base_estate())
    build_into(tmp_path, "published")
    (february,) = (
        path
        for path in dataset_files(lake, "costs")
        if partition_value(path, "month") == "2026-02"
        and partition_value(path, "subscription_id") == SUB_A
    )
    collected_again = datetime(2026, 4, 2, 3, tzinfo=UTC)
    rows = pl.read_parquet(february).with_columns(ingested_at=pl.lit(collected_again))
    pq.write_table(rows.to_arrow().cast(DATASETS["costs"]), february)

    assert build_into(tmp_path, "published") == "incremental build: chunks 2 copied"
    build_into(tmp_path, "full", full=True)
    assert_same_warehouse(tmp_path / "full.duckdb", tmp_path / "published.duckdb")
    with duckdb.connect(str(tmp_path / "published.duckdb"), read_only=True) as con:
        (recollected,) = con.execute(
            "SELECT count(*) FROM costs WHERE ingested_at = $at", {"at": collected_again}
        ).fetchone()
    assert recollected == 27


def block_seats(warehouse: Path, month: date) -> dict[str, int]:
    """SUB_A's P2 MDE for Servers seats of `month` under each seat rule."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute(
            "SELECT seat_rule, seats FROM licensing_options_monthly WHERE month = $month "
            "AND subscription_id = $subscription AND plan = 'P2' AND option = 'seats_only' "
            "AND seat_option = 'mde_for_servers'",
            {"month": month, "subscription": SUB_A},
        ).fetchall()
    return dict(rows)


def test_a_seat_block_counts_the_machines_of_its_copied_months_and_of_its_recomputed_ones(
    prefect_harness, tmp_path
):
    # Seat blocks of 90 days: calendar quarters, January - March here. Collected up to Mar 1:
    # a1 runs, a2 stays deallocated (snapshots Jan 1 and Mar 1), so the block needs 1 seat.
    # The Mar 2 collection logs a2's start on Mar 1 06:00-06:02: only March is recomputed
    # (January and February are copied), yet the block now holds a1 and a2 in every month of
    # it, January's copied month too: 2 seats; one seat per machine and month stays 1 there.
    (tmp_path / "mdecost.toml").write_text("")
    lake = tmp_path / "lake"
    base = RawLake(snapshot_at=datetime(2026, 3, 1, tzinfo=UTC))
    base.pricing(SUB_A, "Standard", "P2")
    for machine, name, state in ((A1, "a1", "running"), (A2, "a2", "deallocated")):
        base.machine(
            machine, vm_id=name, power_state=state, snapshot_at=datetime(2026, 1, 1, tzinfo=UTC)
        )
        base.machine(machine, vm_id=name, power_state=state)
    for day in days(date(2026, 1, 1), date(2026, 2, 28)):
        base.cost(day, A1, hours=24, amount=0.48, subscription=SUB_A)
    write_estate(lake, base)
    build_into(tmp_path, "published", reassignment_days=90)
    january = date(2026, 1, 1)
    assert block_seats(tmp_path / "published.duckdb", january) == {
        "per_machine": 1,
        "reassign_90d": 1,
    }

    refresh = RawLake(snapshot_at=datetime(2026, 3, 2, tzinfo=UTC))
    refresh.pricing(SUB_A, "Standard", "P2")
    refresh.machine(A1, vm_id="a1")
    refresh.machine(A2, vm_id="a2")
    refresh.operation(
        A2, "start", datetime(2026, 3, 1, 6, tzinfo=UTC), datetime(2026, 3, 1, 6, 2, tzinfo=UTC)
    )
    refresh.cost(date(2026, 3, 1), A1, hours=24, amount=0.48, subscription=SUB_A)
    write_estate(lake, refresh)
    made = build_into(tmp_path, "published", reassignment_days=90)
    assert made == "incremental build: chunks 1 from 2026-03 (timelines resumed)"
    build_into(tmp_path, "full", full=True, reassignment_days=90)
    assert_same_warehouse(tmp_path / "full.duckdb", tmp_path / "published.duckdb")
    assert block_seats(tmp_path / "published.duckdb", january) == {
        "per_machine": 1,
        "reassign_90d": 2,
    }


def test_a_chunk_whose_timelines_may_not_resume_rebuilds_them_whole(prefect_harness, tmp_path):
    # a1 also has a deallocate that failed on Mar 10 00:00 - 00:05 and a snapshot of Mar 20
    # (running): its resume point at the Apr 1 cut. The Apr 2 collection brings a late
    # Succeeded event of that deallocate (Apr 1 12:00): an event after the cut of an
    # operation before the resume point, which the resume points cannot tell from a new
    # operation without its Started event. SUB_A's timelines are rebuilt whole: a1 was
    # deallocating from Mar 10 00:00 to Apr 1 12:00 (the snapshots in between dropped), then
    # running (the Apr 2 snapshot), so billable Dec 1 - Mar 10 (99 days) and Apr 1 12:00 - 24:00:
    # 2,388 h. SUB_C's resume (its Apr 2 snapshot says what its Apr 1 one said).
    (tmp_path / "mdecost.toml").write_text("")
    lake = tmp_path / "lake"
    base = base_estate()
    base.operation(
        A1,
        "deallocate",
        datetime(2026, 3, 10, tzinfo=UTC),
        datetime(2026, 3, 10, 0, 5, tzinfo=UTC),
        outcome="Failed",
    )
    base.machine(A1, vm_id="a1", snapshot_at=datetime(2026, 3, 20, tzinfo=UTC))
    write_estate(lake, base)
    build_into(tmp_path, "published")
    (failed,) = (row for row in base.event_rows if row["status"] == "Failed")
    refresh = RawLake(snapshot_at=REFRESH_COLLECTED)
    refresh.machine(A1, vm_id="a1")
    refresh.machine(B1, vm_id="b1", power_state="deallocated")
    refresh.event_rows.append(
        {
            **failed,
            "event_data_id": "late-success",
            "status": "Succeeded",
            "event_at": datetime(2026, 4, 1, 12, tzinfo=UTC),
            "ingested_at": REFRESH_COLLECTED,
        }
    )
    write_estate(lake, refresh)
    made = build_into(tmp_path, "published")
    assert made == "incremental build: chunks 1 from 2026-03, 1 from 2026-04 (timelines resumed)"
    build_into(tmp_path, "full", full=True)
    assert_same_warehouse(tmp_path / "full.duckdb", tmp_path / "published.duckdb")
    assert billable_hours(tmp_path / "published.duckdb", A1) == 2388.0


def plan_changes(warehouse: Path) -> list[tuple[date, str]]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(
            "SELECT month, detail FROM findings WHERE finding = 'plan_changed' ORDER BY month"
        ).fetchall()


def test_a_recomputed_month_s_plan_change_on_its_first_day_is_seen_against_the_day_before(
    prefect_harness, tmp_path
):
    # SUB_A switched from P1 (pricings snapshot Dec 1) to P2 (snapshot Mar 1); a1 runs
    # throughout and is charged every day, at P1 (0.00672 x 24 h) Dec 1 - Feb 28 and at P2
    # (0.02 x 24 h) in March but Mar 20. Restating March (the Mar 20 charge arrives) recomputes
    # March alone, read from Feb 28: the change of Mar 1 is still found (P1 on Feb 28, P2 on
    # Mar 1, 1 of the subscription's 1 machine), and March's billable_not_billed (Mar 20, 24 h at
    # 0.02: 0.48) is gone. A build reading March alone would find no change at all.
    (tmp_path / "mdecost.toml").write_text("")
    lake = tmp_path / "lake"
    base = RawLake(snapshot_at=BASE_COLLECTED)
    base.pricing(SUB_A, "Standard", "P1", snapshot_at=datetime(2025, 12, 1, tzinfo=UTC))
    base.pricing(SUB_A, "Standard", "P2", snapshot_at=datetime(2026, 3, 1, tzinfo=UTC))
    base.pricing(SUB_A, "Standard", "P2")
    base.machine(A1, vm_id="a1", snapshot_at=datetime(2025, 12, 1, tzinfo=UTC))
    base.machine(A1, vm_id="a1")
    for day in days(date(2025, 12, 1), date(2026, 2, 28)):
        base.cost(day, A1, hours=24, amount=0.16128, meter="Standard P1 Node")
    for day in days(date(2026, 3, 1), date(2026, 3, 31)):
        if day != date(2026, 3, 20):
            base.cost(day, A1, hours=24, amount=0.48)
    write_estate(lake, base)
    build_into(tmp_path, "published")
    march = date(2026, 3, 1)
    change = (
        march,
        "subscription's Defender for Servers plan P1 -> P2 on 2026-03-01 (1 of 1 machines)",
    )
    assert plan_changes(tmp_path / "published.duckdb") == [change]
    assert findings(tmp_path / "published.duckdb", A1) == {("billable_not_billed", march): 0.48}

    restated = RawLake(snapshot_at=REFRESH_COLLECTED)
    for day in days(date(2026, 3, 1), date(2026, 3, 31)):
        restated.cost(day, A1, hours=24, amount=0.48)
    write_estate(lake, restated)
    assert (
        build_into(tmp_path, "published")
        == "incremental build: chunks 1 from 2026-03 (timelines resumed)"
    )
    build_into(tmp_path, "full", full=True)
    assert_same_warehouse(tmp_path / "full.duckdb", tmp_path / "published.duckdb")
    assert plan_changes(tmp_path / "published.duckdb") == [change]
    assert findings(tmp_path / "published.duckdb", A1) == {}


def test_a_subscription_s_first_pricings_snapshot_reaches_its_whole_history(tmp_path):
    # SUB_C's first pricings snapshot (Apr 2) stands for every day before it, whatever the
    # other subscriptions of its chunk collected earlier (SUB_A's Apr 1); a costs partition
    # of April reaches April only.
    def pricings(subscription: str, day: str) -> str:
        return f"raw/pricings/snapshot_date={day}/subscription_id={subscription}/data.parquet"

    april_costs = (
        f"raw/costs/source=query/month=2026-04/subscription_id={SUB_A}/cost_type=ActualCost/"
        "data.parquet"
    )
    before = {pricings(SUB_A, "2026-04-01"): (10, 1)}
    after = {**before, pricings(SUB_C, "2026-04-02"): (10, 2), april_costs: (10, 3)}
    facts = Facts(None, None, None, None)
    previous = Published("context", facts, before, {SUB_A: (SUB_A, SUB_C)}, "code", pl.DataFrame())
    changed = changed_months(tmp_path, previous, after)
    assert changed == {SUB_C: WHOLE_HISTORY, SUB_A: date(2026, 4, 1)}
    assert first_changed_month(changed, (SUB_A, SUB_C), facts_month(facts, facts)) == WHOLE_HISTORY
    assert first_changed_month(changed, (SUB_A,), None) == date(2026, 4, 1)
