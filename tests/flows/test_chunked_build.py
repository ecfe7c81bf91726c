"""`build` in chunks of whole subscriptions gives the warehouse of a build in one piece.

A January 2026 lake written by hand, partitioned as the collectors and the export import write
it (31 days, 744 hours; inventory snapshots on Jan 11 and Feb 1 00:00, so the history is
[Jan 1, Feb 1)). Every subscription has Defender for Servers P2 at subscription level.

- SUB_A: a1 runs until a deallocate Jan 5 00:00-00:06 (billable Jan 1-4: 96 h). The "mover"
  (vmId mover-vm) is listed in SUB_A on Jan 11 and in SUB_B on Feb 1 and runs all month: 240 h
  on its SUB_A id (Jan 1-10), 504 h on its SUB_B id (Jan 11-31); one machine.
- SUB_C: c1 runs all month (744 h). c2 is deallocated until a start Jan 19 23:55 - Jan 20 00:00
  and a deallocate Jan 22 12:00-12:06: billable Jan 20 (24 h), Jan 21 (24 h), Jan 22 (12 h) =
  60 h. Its Activity Log spells the subscription in upper case, and so does its events folder.
- Query costs (ActualCost), Defender P2: a1 Jan 2 and Jan 3 (0.48 each), the mover's SUB_A id
  Jan 4 (0.48), its SUB_B id Jan 15 (0.48), SUB_C's pricings id Jan 10 (24 h, 0.48: only c1
  billable that day) and Jan 22 (36 h, 0.72: c1 24 h and c2 12 h billable, so 0.48 and 0.24).
  Not Defender charges: an AmortizedCost copy of a1's Jan 2 charge and a VM compute row.
- One export partition (billing account scope, ActualCost): a1 Jan 4 (0.48) and c1 Jan 25
  (0.48), both named by their resource id only; SUB_D's pricings id Jan 6 (48 h, 0.96; SUB_D
  was never collected); a Defender row of no subscription Jan 7 (0.12); a storage row of none
  (1.00).

Defender money in the lake: 3 x 0.48 + 0.48 + 0.48 + 0.72 (query) + 0.48 + 0.48 + 0.96 + 0.12
(export) = 5.16.

The builds' lake also lists the subscriptions (Feb 1, tenant TENANT): SUB_A and SUB_B under
Tenant Root Group / Production, SUB_C under Tenant Root Group / Development (SUB_D never
listed); showback groups by subscription and by management group.
"""

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

from flows.build import LakeChunk, LakeFiles, build, latest_subscriptions, plan_lake_chunks
from flows.config import load_settings
from flows.exports import scope_partition_value
from flows.lake import scan_dataset, write_partition
from pricing.book import load_price_book
from tests.transforms.conftest import SUB_A, SUB_B, RawLake, at, pricing_id, vm_id
from transforms.billing import DEFENDER_METERS
from transforms.marts import MartOptions, build_marts
from transforms.schemas import DATASETS

SUB_C = "cccccccc-0000-0000-0000-000000000003"
SUB_D = "dddddddd-0000-0000-0000-000000000004"
BILLING_SCOPE = "/providers/Microsoft.Billing/billingAccounts/12345678"
A1 = vm_id(SUB_A, "rg-a", "a1")
MOVER_OLD = vm_id(SUB_A, "rg-old", "mover")
MOVER_NEW = vm_id(SUB_B, "rg-new", "mover")
C1 = vm_id(SUB_C, "rg-c", "c1")
C2 = vm_id(SUB_C, "rg-c", "c2")
C2_AS_LOGGED = vm_id(SUB_C.upper(), "RG-C", "c2")
ONE_SUBSCRIPTION_PER_CHUNK = "0.000001"
SEAT_PRICE = 4.0  # [pricing.seat_prices] mde_for_servers, so seat costs are known by hand
JANUARY = date(2026, 1, 1)
TENANT = "77777777-0000-0000-0000-000000000007"
PRODUCTION = "Tenant Root Group / Production"
DEVELOPMENT = "Tenant Root Group / Development"
MANAGEMENT_GROUPS = {SUB_A: PRODUCTION, SUB_B: PRODUCTION, SUB_C: DEVELOPMENT}
GROUP_BY = ("subscription", "management_group")


def collected_estate() -> RawLake:
    lake = RawLake()  # the latest snapshot: Feb 1 00:00
    for subscription in (SUB_A, SUB_B, SUB_C):
        lake.pricing(subscription, "Standard", "P2")
    lake.machine(A1, vm_id="a1", power_state="deallocated", snapshot_at=at(11))
    lake.machine(MOVER_OLD, vm_id="mover-vm", snapshot_at=at(11))
    lake.machine(A1, vm_id="a1", power_state="deallocated")
    lake.machine(MOVER_NEW, vm_id="mover-vm")
    lake.machine(C1, vm_id="c1")
    lake.machine(C2, vm_id="c2", power_state="deallocated")
    lake.operation(A1, "deallocate", at(5), at(5, 0, 6))
    lake.operation(C2_AS_LOGGED, "start", at(19, 23, 55), at(20))
    lake.operation(C2_AS_LOGGED, "deallocate", at(22, 12), at(22, 12, 6))
    lake.cost(date(2026, 1, 2), A1, hours=24, amount=0.48)
    lake.cost(date(2026, 1, 3), A1, hours=24, amount=0.48)
    lake.cost(date(2026, 1, 4), MOVER_OLD, hours=24, amount=0.48)
    lake.cost(date(2026, 1, 2), A1, hours=24, amount=0.48, cost_type="AmortizedCost")
    lake.cost(date(2026, 1, 2), A1, hours=24, amount=2.40, meter="D2s v5")
    lake.cost(date(2026, 1, 15), MOVER_NEW, hours=24, amount=0.48, subscription=SUB_B)
    lake.cost(date(2026, 1, 10), pricing_id(SUB_C), hours=24, amount=0.48, subscription=SUB_C)
    lake.cost(date(2026, 1, 22), pricing_id(SUB_C), hours=36, amount=0.72, subscription=SUB_C)
    return lake


def exported_costs() -> list[dict]:
    export = RawLake()
    # a1's and c1's rows name no subscription (billed under the billing account, the cost
    # owner of `transforms.sources`): with one, they would state SUB_A's and SUB_C's January,
    # and the build would count the export instead of the query rows, not beside them.
    export.cost(date(2026, 1, 4), A1, hours=24, amount=0.48, subscription=None)
    export.cost(date(2026, 1, 25), C1, hours=24, amount=0.48, subscription=None)
    export.cost(date(2026, 1, 6), pricing_id(SUB_D), hours=48, amount=0.96, subscription=SUB_D)
    export.cost(date(2026, 1, 7), None, hours=6, amount=0.12, subscription=None)
    export.cost(date(2026, 1, 8), None, hours=1, amount=1.00, meter="LRS Data", subscription=None)
    for row in export.cost_rows:
        row.update(cost_source="export", scope=BILLING_SCOPE)
    return export.cost_rows


def write_grouped(
    lake: Path, dataset: str, rows: list[dict], partition: Callable[[dict], dict[str, str]]
) -> None:
    """Write `rows` into the partitions `partition` assigns them, one file each."""
    groups: dict[tuple[tuple[str, str], ...], list[dict]] = defaultdict(list)
    for row in rows:
        groups[tuple(partition(row).items())].append(row)
    for key, members in groups.items():
        table = pa.Table.from_pylist(members, schema=DATASETS[dataset])
        write_partition(lake, dataset, dict(key), table, origin="test lake")


def write_lake(lake: Path) -> None:
    write_estate(lake, collected_estate())
    write_grouped(
        lake,
        "costs",
        exported_costs(),
        lambda row: {
            "source": "export",
            "month": f"{row['charge_period_start']:%Y-%m}",
            "scope": scope_partition_value(BILLING_SCOPE),
            "cost_type": row["cost_type"],
        },
    )


def write_estate(lake: Path, estate: RawLake) -> None:
    """`estate`'s rows partitioned as the collectors write them: snapshots by day, events and
    Query API costs by month, each by subscription."""
    write_grouped(
        lake,
        "inventory",
        estate.inventory_rows,
        lambda row: {
            "snapshot_date": f"{row['snapshot_at']:%Y-%m-%d}",
            "subscription_id": row["subscription_id"],
        },
    )
    write_grouped(
        lake,
        "pricings",
        estate.pricing_rows,
        lambda row: {
            "snapshot_date": f"{row['snapshot_at']:%Y-%m-%d}",
            "subscription_id": row["subscription_id"],
        },
    )
    write_grouped(
        lake,
        "power_events",
        estate.event_rows,
        lambda row: {
            "month": f"{row['event_at']:%Y-%m}",
            "subscription_id": row["subscription_id"],
        },
    )
    write_grouped(
        lake,
        "costs",
        estate.cost_rows,
        lambda row: {
            "source": "query",
            "month": f"{row['charge_period_start']:%Y-%m}",
            "subscription_id": row["subscription_id"],
            "cost_type": row["cost_type"],
        },
    )


def write_subscriptions(lake: Path) -> None:
    """The subscriptions a collection on Feb 1 listed: MANAGEMENT_GROUPS, in TENANT."""
    listed_at = at(1, month=2)
    rows = [
        {
            "snapshot_at": listed_at,
            "subscription_id": subscription,
            "display_name": f"name of {subscription[:8]}",
            "state": "Enabled",
            "tenant_id": TENANT,
            "management_group_path": path,
            "ingested_at": listed_at,
            "source": "subscriptions",
            "scope": "/subscriptions",
        }
        for subscription, path in MANAGEMENT_GROUPS.items()
    ]
    write_partition(
        lake,
        "subscriptions",
        {"snapshot_date": "2026-02-01", "tenant": "default"},
        pa.Table.from_pylist(rows, schema=DATASETS["subscriptions"]),
        origin="test lake",
    )


def partition_bytes(lake: Path, *subscriptions: str) -> int:
    """Bytes of the lake's files in a `subscription_id=` folder of `subscriptions` (any case)."""
    wanted = {f"subscription_id={subscription}" for subscription in subscriptions}
    return sum(
        path.stat().st_size
        for path in (lake / "raw").rglob("*.parquet")
        if wanted & {part.lower() for part in path.parts}
    )


@dataclass(frozen=True)
class Builds:
    lake: Path
    chunked: Path
    chunked_again: Path
    whole: Path
    one_piece: dict[str, pl.DataFrame]


@pytest.fixture(scope="module")
def builds(prefect_harness, tmp_path_factory) -> Builds:
    folder = tmp_path_factory.mktemp("chunked")
    lake = folder / "lake"
    write_lake(lake)
    write_subscriptions(lake)
    config = folder / "mdecost.toml"
    config.write_text(
        f"[pricing.seat_prices]\nmde_for_servers = {SEAT_PRICE}\n\n"
        '[report]\ngroup_by = ["subscription", "management_group"]\n'
    )
    warehouses = {
        "chunked": (folder / "chunked.duckdb", ONE_SUBSCRIPTION_PER_CHUNK),
        "chunked_again": (folder / "chunked-again.duckdb", ONE_SUBSCRIPTION_PER_CHUNK),
        "whole": (folder / "whole.duckdb", None),
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MDECOST_LAKE__PATH", str(lake))
        for warehouse, chunk_megabytes in warehouses.values():
            patch.setenv("MDECOST_WAREHOUSE__PATH", str(warehouse))
            if chunk_megabytes is None:
                patch.delenv("MDECOST_WAREHOUSE__CHUNK_MEGABYTES", raising=False)
            else:
                patch.setenv("MDECOST_WAREHOUSE__CHUNK_MEGABYTES", chunk_megabytes)
            build(config_file=config)
        settings = load_settings(config)
    # The pure build in one piece (no chunk at all, the unknown rows included), same choices.
    options = MartOptions(
        seat_option="mde_for_servers",
        currency="USD",
        partial_hours="fractional",
        group_by=GROUP_BY,
    )
    book = pl.from_arrow(load_price_book(settings)).lazy()
    subscriptions = pl.from_arrow(latest_subscriptions(lake)).lazy()  # type: ignore[union-attr]
    one_piece = build_marts(LakeFiles.of(lake).whole(), book, options, subscriptions)
    paths = {name: path for name, (path, _) in warehouses.items()}
    return Builds(lake, one_piece=one_piece, **paths)


def tables(warehouse: Path) -> dict[str, pl.DataFrame]:
    """Every table of `warehouse`, its times in polars' spelling of UTC (DuckDB's: Etc/UTC)."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        names = [
            row[0]
            for row in con.sql(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'"
            ).fetchall()
        ]
        frames = {}
        for name in sorted(names):
            # A MAP (machines.tags) as its key/value list: the views' own polars type.
            columns = ", ".join(
                f'map_entries("{column}") AS "{column}"'
                if kind.startswith("MAP(")
                else f'"{column}"'
                for column, kind in con.execute(
                    "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? "
                    "ORDER BY column_index",
                    [name],
                ).fetchall()
            )
            frames[name] = pl.from_arrow(
                con.sql(f'SELECT {columns} FROM "{name}"').to_arrow_table()
            )
    return {
        name: frame.with_columns(pl.col(pl.Datetime(time_zone="*")).dt.convert_time_zone("UTC"))
        for name, frame in frames.items()
    }


def in_canonical_order(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows sorted by every column (floats last), so row order is not compared."""
    exact = [name for name, dtype in frame.schema.items() if not dtype.is_float()]
    floats = [name for name, dtype in frame.schema.items() if dtype.is_float()]
    keys = [
        pl.col(name).list.join("|") if frame.schema[name] == pl.List(pl.String) else pl.col(name)
        for name in exact
    ]
    return frame.sort([*keys, *floats], nulls_last=True)


def assert_same_rows(left: pl.DataFrame, right: pl.DataFrame, name: str) -> None:
    """Integers and strings exactly, floats to 1e-12 relative (sums of per-chunk sums)."""
    try:
        assert_frame_equal(
            in_canonical_order(left),
            in_canonical_order(right),
            check_exact=False,
            rel_tol=1e-12,
            abs_tol=0.0,
        )
    except AssertionError as difference:
        raise AssertionError(f"table {name}: {difference}") from None


# --- the plan -------------------------------------------------------------------------------


def test_the_lake_is_cut_into_the_moved_machines_pair_then_c_then_the_unknown_rows(tmp_path):
    lake = tmp_path / "lake"
    write_lake(lake)
    # Every partition file is over one byte: each subscription, or linked set, is a chunk of
    # its own. SUB_A and SUB_B share the mover's vmId; SUB_C's upper-case events folder is
    # SUB_C's; the export partition has no subscription: the unknown chunk reads its rows of
    # SUB_D and of no subscription. SUB_D has no file of its own, so it is in no chunk.
    assert plan_lake_chunks(LakeFiles.of(lake), float(ONE_SUBSCRIPTION_PER_CHUNK)) == [
        LakeChunk((SUB_A, SUB_B), partition_bytes(lake, SUB_A, SUB_B)),
        LakeChunk((SUB_C,), partition_bytes(lake, SUB_C)),
        LakeChunk((), 0, unknown=True),
    ]
    # The default 64 MB holds the whole (tiny) lake in one chunk, plus the unknown rows.
    assert plan_lake_chunks(LakeFiles.of(lake), 64.0) == [
        LakeChunk((SUB_A, SUB_B, SUB_C), partition_bytes(lake, SUB_A, SUB_B, SUB_C)),
        LakeChunk((), 0, unknown=True),
    ]
    # The SUB_C events file is in an upper-case folder, counted with SUB_C's other files.
    assert (lake / "raw/power_events/month=2026-01" / f"subscription_id={SUB_C.upper()}").is_dir()


# --- chunked equals whole -------------------------------------------------------------------


def test_every_table_holds_the_same_rows_chunked_and_whole(builds):
    chunked, whole = tables(builds.chunked), tables(builds.whole)
    assert set(chunked) == set(whole)
    assert {*builds.one_piece, "prices", "costs", "build_info", "subscriptions"} == set(chunked)
    for name in sorted(chunked):
        if name == "build_info":
            continue
        assert_same_rows(chunked[name], whole[name], name)
    assert_frame_equal(chunked["build_info"].drop("built_at"), whole["build_info"].drop("built_at"))


def test_the_chunked_warehouse_holds_the_views_of_the_build_in_one_piece(builds):
    chunked = tables(builds.chunked)
    for name, view in builds.one_piece.items():
        # The views' own columns; the publisher adds tenant_id from `subscriptions` to those with
        # a subscription_id (null for SUB_D and no subscription: never listed).
        assert ("tenant_id" in chunked[name].columns) == ("subscription_id" in view.columns)
        if "tenant_id" in chunked[name].columns:
            listed = pl.col("subscription_id").is_in(list(MANAGEMENT_GROUPS))
            tenants = chunked[name].select(
                expected=pl.when(listed).then(pl.lit(TENANT)), got="tenant_id"
            )
            assert tenants["got"].to_list() == tenants["expected"].to_list()
        assert_same_rows(chunked[name].drop("tenant_id", strict=False), view, name)


# --- figures worked out by hand -------------------------------------------------------------


def test_the_fleet_counts_the_moved_machine_once_and_the_estate_peak_across_chunks(builds):
    fleet = tables(builds.chunked)["fleet_comparison_monthly"]
    rows = {
        row["subscription_id"]: row
        for row in fleet.filter(pl.col("month") == JANUARY).iter_rows(named=True)
    }
    assert fleet.height == len(rows) == 5  # SUB_A, SUB_B, SUB_C, SUB_D and the estate
    figures = {
        subscription: (
            row["machines_distinct"],
            row["peak_concurrent_machines"],
            pytest.approx(row["billable_hours"], rel=1e-12),
            pytest.approx(row["billed_cost"], rel=1e-12),
        )
        for subscription, row in rows.items()
    }
    # Covered machines with billable time, the most billable in one clock hour, their hours,
    # every Defender charge:
    # - SUB_A: a1 and the mover's old id (2), both billable Jan 1-4 (peak 2), 96 + 240 h;
    #   a1 Jan 2, 3, 4 and the mover Jan 4: 4 x 0.48.
    # - SUB_B: the mover's new id, 504 h, its Jan 15 charge 0.48.
    # - SUB_C: c1 and c2, both billable Jan 20 - Jan 22 12:00, 744 + 60 h; 0.48 + 0.72 + 0.48.
    # - SUB_D: no machine, its pricings charge 0.96.
    # - Estate: a1, mover-vm (once), c1, c2 = 4 machines, 336 + 504 + 804 h, 5.16 of charges.
    #   Billable at once: Jan 1-4 a1, the mover, c1 (3); Jan 5-19 the mover, c1 (2); Jan 20 -
    #   Jan 22 12:00 the mover, c1, c2 (3); then 2: peak 3. Not the largest subscription peak
    #   (2), nor their sum (2 + 1 + 2 = 5), nor the sum of the two chunks' peaks (2 + 2 = 4).
    assert figures == {
        SUB_A: (2, 2, 336.0, 1.92),
        SUB_B: (1, 1, 504.0, 0.48),
        SUB_C: (2, 2, 804.0, 1.68),
        SUB_D: (0, 0, 0.0, 0.96),
        None: (4, 3, 1644.0, 5.16),
    }
    # The estate's seats: 4 distinct x 4.00, 3 at peak x 4.00.
    assert rows[None]["seat_cost_distinct"] == 16.0
    assert rows[None]["seat_cost_peak"] == 12.0


def test_showback_by_management_group_rolls_up_its_subscriptions_to_the_cent(builds):
    showback = tables(builds.chunked)["showback_monthly"].filter(
        (pl.col("month") == JANUARY) & (pl.col("group_key") == "management_group")
    )
    got = {
        (row["group_kind"], row["group_value"]): (
            row["machines"],
            pytest.approx(row["billable_hours"], rel=1e-12),
            round(row["billed_cost"], 2),
            round(row["allocated_cost"], 2),
        )
        for row in showback.iter_rows(named=True)
    }
    # As the fleet rows above, per subscription rolled up to its management group:
    # - Production: SUB_A (a1 and the mover's old id: 2 machines, 336 h, 1.92) + SUB_B (the
    #   mover's new id: 1, 504 h, 0.48) = 3 machines (the mover counted in each subscription it
    #   was in), 840 h, 2.40.
    # - Development: SUB_C, c1 and c2, 804 h, 1.68, of which the pool's 0.48 + 0.72 = 1.20
    #   allocated.
    # - missing: SUB_D, never listed, its unattributed 0.96, and the 0.12 of no subscription:
    #   1.08 on no machine.
    assert got == {
        ("value", PRODUCTION): (3, 840.0, 2.40, 0.0),
        ("value", DEVELOPMENT): (2, 804.0, 1.68, 1.20),
        ("missing", None): (0, 0.0, 1.08, 0.0),
    }
    # 2.40 + 1.68 + 1.08 = 5.16: every Defender charge of the lake, to the cent.
    assert round(showback["billed_cost"].sum(), 2) == 5.16


def test_defender_money_is_conserved_and_each_charge_is_attributed_once(builds):
    charges = tables(builds.chunked)["defender_charges_daily"]
    # Every Defender row of the lake's files of a billed cost type (ActualCost here), summed
    # directly from the Parquet.
    billed = (
        scan_dataset(builds.lake, "costs")
        .collect()
        .filter(
            pl.col("sku_meter").str.to_lowercase().is_in(list(DEFENDER_METERS))
            & (pl.col("cost_type") == "ActualCost")
        )
    )
    assert billed.height == 10
    assert charges["billed_cost"].sum() == pytest.approx(billed["billed_cost"].sum(), rel=1e-12)
    assert charges["billed_cost"].sum() == pytest.approx(5.16, rel=1e-12)
    by_attribution = {
        attribution: (rows.height, pytest.approx(rows["billed_cost"].sum(), rel=1e-12))
        for (attribution,), rows in charges.partition_by("attribution", as_dict=True).items()
    }
    # resource: a1 Jan 2, 3 and (export) 4, the mover's ids Jan 4 and Jan 15, c1 Jan 25
    # (export): 6 x 0.48. allocated: SUB_C's pool Jan 10 all to c1 (0.48), Jan 22 to c1 and
    # c2 (0.48 + 0.24). unattributed: SUB_D's pool, no machine of it known (0.96), and the row
    # of no subscription (0.12).
    assert by_attribution == {
        "resource": (6, 2.88),
        "allocated": (3, 1.20),
        "unattributed": (2, 1.08),
    }
    allocated = {
        (row["usage_date"].day, row["resource_id"]): (row["billed_hours"], row["billed_cost"])
        for row in charges.filter(attribution="allocated").iter_rows(named=True)
    }
    # Jan 22: 36 h and 0.72 by billable hours 24 : 12, so c1 2/3 and c2 1/3.
    assert allocated == {
        (10, C1.lower()): (24.0, pytest.approx(0.48, rel=1e-12)),
        (22, C1.lower()): (pytest.approx(24.0, rel=1e-12), pytest.approx(0.48, rel=1e-12)),
        (22, C2.lower()): (pytest.approx(12.0, rel=1e-12), pytest.approx(0.24, rel=1e-12)),
    }
    unattributed = charges.filter(attribution="unattributed").sort("usage_date")
    assert unattributed.select("usage_date", "subscription_id", "resource_id").rows() == [
        (date(2026, 1, 6), SUB_D, None),
        (date(2026, 1, 7), None, None),
    ]


def test_machines_and_hours_are_neither_lost_nor_duplicated(builds):
    views = tables(builds.chunked)
    machines = views["machines"]
    # a1, the mover's two ids (one machine_key), c1, c2.
    assert sorted(machines["resource_id"]) == sorted(
        identifier.lower() for identifier in (A1, MOVER_OLD, MOVER_NEW, C1, C2)
    )
    assert machines.filter(pl.col("machine_key") == "mover-vm").height == 2
    hours = views["machine_hours_daily"]
    # One row per machine and day it existed: a1, c1, c2 31 each, the mover 10 + 21.
    assert hours.height == 31 + 10 + 21 + 31 + 31
    per_machine = dict(
        hours.group_by("resource_id").agg(pl.col("billable_hours").sum()).iter_rows()
    )
    assert per_machine == {
        A1.lower(): 96.0,
        MOVER_OLD.lower(): 240.0,
        MOVER_NEW.lower(): 504.0,
        C1.lower(): 744.0,
        C2.lower(): 60.0,
    }
    # Every cost row of the lake once: 8 query rows and 5 export rows.
    assert views["costs"].height == 13


# --- reproducibility ------------------------------------------------------------------------


def test_a_rebuild_with_the_same_chunks_is_identical_to_the_bit(builds):
    # The same rows, every value to the bit. Not their order: the warehouse is written with
    # DuckDB's preserve_insertion_order off (a SQL table has no order; queries say ORDER BY).
    first, again = tables(builds.chunked), tables(builds.chunked_again)
    assert set(first) == set(again)
    for name in sorted(first):
        left, right = first[name], again[name]
        if name == "build_info":
            left, right = left.drop("built_at"), right.drop("built_at")
        assert_frame_equal(in_canonical_order(left), in_canonical_order(right), check_exact=True)


# --- export rows naming their machine only by resource id -----------------------------------


def test_an_export_row_naming_its_machine_only_by_resource_id_is_charged_to_that_machine(
    prefect_harness, tmp_path, monkeypatch
):
    lake = tmp_path / "lake"
    write_lake(lake)
    # c1's Jan 26 charge in the export with its SubscriptionId / SubAccountId cells blank: the
    # resource id still says SUB_C (defender_charges_daily attributes it from the id).
    blank = RawLake()
    blank.cost(date(2026, 1, 26), C1, hours=24, amount=0.48, subscription=None)
    # Another billing account's export: one of the same account would state the same owner's
    # January as the lake's export partition, at the same instant (refused: a tie).
    blank.cost_rows[0].update(cost_source="export", scope=BILLING_SCOPE + "/other")
    write_partition(
        lake,
        "costs",
        {
            "source": "export",
            "month": "2026-01",
            "scope": scope_partition_value(BILLING_SCOPE + "/other"),
            "cost_type": "ActualCost",
        },
        pa.Table.from_pylist(blank.cost_rows, schema=DATASETS["costs"]),
        origin="test lake",
    )
    warehouse = tmp_path / "warehouse.duckdb"
    monkeypatch.setenv("MDECOST_LAKE__PATH", str(lake))
    monkeypatch.setenv("MDECOST_WAREHOUSE__PATH", str(warehouse))
    monkeypatch.setenv("MDECOST_WAREHOUSE__CHUNK_MEGABYTES", ONE_SUBSCRIPTION_PER_CHUNK)
    config = tmp_path / "mdecost.toml"
    config.write_text("")
    build(config_file=config)
    licensing = tables(warehouse)["licensing_comparison_monthly"]
    # c1 is one machine, one row: Jan 10 and Jan 22 pool shares, Jan 25 and Jan 26 on its own
    # id: 4 x 0.48.
    c1 = licensing.filter(pl.col("resource_id") == C1.lower())
    assert c1.select("machine_key", "billed_cost").rows() == [
        ("c1", pytest.approx(1.92, rel=1e-12))
    ]


# --- a charge billed under one subscription on a resource of another ------------------------


def test_a_charge_billed_under_another_subscription_builds_the_same_in_chunks(
    prefect_harness, tmp_path, monkeypatch
):
    # SUB_C's own query partition holds a Defender row for a1 (a SUB_A machine), Jan 1, 24 h,
    # 0.48: a1 was running all day (it is deallocated only on Jan 5). Built in chunks of one
    # subscription, SUB_C's chunk would meet that charge without a1 (a second "a1" row with
    # 0 billable hours, billed 0.48 while not billable) and SUB_A's chunk a1 without it. The
    # charge links SUB_A and SUB_C into one chunk, so every table equals the whole build.
    lake = tmp_path / "lake"
    write_lake(lake)
    crossing = RawLake()
    crossing.cost(date(2026, 1, 1), A1, hours=24, amount=0.48, subscription=SUB_C)
    write_partition(
        lake,
        "costs",
        {
            "source": "query",
            "month": "2026-01",
            "subscription_id": SUB_C,
            "cost_type": "ActualCost",
        },
        pa.Table.from_pylist(
            [
                *(row for row in collected_estate().cost_rows if row["subscription_id"] == SUB_C),
                *crossing.cost_rows,
            ],
            schema=DATASETS["costs"],
        ),
        origin="test lake",
    )
    assert plan_lake_chunks(LakeFiles.of(lake), float(ONE_SUBSCRIPTION_PER_CHUNK)) == [
        LakeChunk((SUB_A, SUB_B, SUB_C), partition_bytes(lake, SUB_A, SUB_B, SUB_C)),
        LakeChunk((), 0, unknown=True),
    ]
    config = tmp_path / "mdecost.toml"
    config.write_text(f"[pricing.seat_prices]\nmde_for_servers = {SEAT_PRICE}\n")
    monkeypatch.setenv("MDECOST_LAKE__PATH", str(lake))
    built = {}
    for name, chunk_megabytes in (("chunked", ONE_SUBSCRIPTION_PER_CHUNK), ("whole", "64")):
        built[name] = tmp_path / f"{name}.duckdb"
        monkeypatch.setenv("MDECOST_WAREHOUSE__PATH", str(built[name]))
        monkeypatch.setenv("MDECOST_WAREHOUSE__CHUNK_MEGABYTES", chunk_megabytes)
        build(config_file=config)
    options = MartOptions(seat_option="mde_for_servers", currency="USD", partial_hours="fractional")
    book = pl.from_arrow(load_price_book(load_settings(config))).lazy()
    one_piece = build_marts(LakeFiles.of(lake).whole(), book, options)
    chunked, whole = tables(built["chunked"]), tables(built["whole"])
    for name, view in one_piece.items():
        assert_same_rows(chunked[name], whole[name], name)
        assert_same_rows(chunked[name].drop("tenant_id", strict=False), view, name)
    # a1 is one machine with one row for January, its Jan 1 charge on it; no finding says it
    # was billed while not billable. Its charges: Jan 1 (SUB_C's row), 2, 3 (query) and 4
    # (export): 4 x 0.48 = 1.92 for its 96 billable hours.
    a1 = chunked["licensing_comparison_monthly"].filter(pl.col("machine_key") == "a1")
    assert a1.select("billable_hours", "billed_cost").rows() == [
        (96.0, pytest.approx(1.92, rel=1e-12))
    ]
    findings = chunked["findings"]
    assert findings.filter(pl.col("finding") == "billed_while_not_billable").is_empty()
