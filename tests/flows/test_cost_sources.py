"""One truth per charge (issue 13): overlapping cost sources are counted once, by a stated
precedence; exports of one billing account keep each other's rows; the build refuses, in one
line, lakes it cannot tell the truth from.

The build lakes are written by hand: subscription A's machine a1 runs all January 2026 (inventory
snapshots on Jan 11 and Feb 1 00:00, so the history is [Jan 1, Feb 1)) with Defender for Servers
P2 at subscription level; each Defender charge is one day of a1, 24 h for 0.48 (24 x 0.02).
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flows.build import BuildRefusedError, build
from flows.cli import app
from flows.exports import import_costs_to_lake, scope_partition_value
from flows.lake import dataset_files, scan_dataset, write_partition
from tests.flows.test_bad_exports import read_rows, write_rows
from tests.transforms.conftest import SUB_A, SUB_B, RawLake, at, pricing_id, vm_id
from transforms.schemas import DATASETS
from transforms.sources import CostOverlapError, resolve

A1 = vm_id(SUB_A, "rg-a", "a1")
EXPORTS = Path(__file__).parents[1] / "fixtures" / "exports"
EA_SMALL = EXPORTS / "EA_ActualCost_Small.csv"
HANDMADE = EXPORTS / "EA_ActualCost_handmade_units.csv"
runner = CliRunner()


def day(number: int) -> datetime:
    return datetime(2026, 2, number, tzinfo=UTC)


def write_estate(lake: Path) -> None:
    estate = RawLake()
    estate.pricing(SUB_A, "Standard", "P2")
    estate.machine(A1, vm_id="a1", snapshot_at=at(11))
    estate.machine(A1, vm_id="a1")
    for dataset, rows in (("inventory", estate.inventory_rows), ("pricings", estate.pricing_rows)):
        for snapshot in sorted({row["snapshot_at"] for row in rows}):
            partition = {"snapshot_date": f"{snapshot:%Y-%m-%d}", "subscription_id": SUB_A}
            table = pa.Table.from_pylist(
                [row for row in rows if row["snapshot_at"] == snapshot], schema=DATASETS[dataset]
            )
            write_partition(lake, dataset, partition, table, origin="test lake")


def write_charges(
    lake: Path,
    partition: dict[str, str],
    days: list[int],
    *,
    ingested_at: datetime,
    cost_source: str,
    cost_type: str = "ActualCost",
    subscription: str = SUB_A,
    currency: str = "USD",
) -> Path:
    """One a1 Defender charge (24 h, 0.48) per January `days`, as one lake partition."""
    rows = RawLake(snapshot_at=ingested_at)
    resource = A1 if subscription == SUB_A else pricing_id(subscription)
    for number in days:
        rows.cost(
            date(2026, 1, number),
            resource,
            hours=24,
            amount=0.48,
            subscription=subscription,
            currency=currency,
            cost_type=cost_type,
        )
    for row in rows.cost_rows:
        row["cost_source"] = cost_source
    table = pa.Table.from_pylist(rows.cost_rows, schema=DATASETS["costs"])
    return write_partition(lake, "costs", partition, table, origin="test lake")


def query_partition(cost_type: str = "ActualCost", subscription: str = SUB_A) -> dict[str, str]:
    return {
        "source": "query",
        "month": "2026-01",
        "subscription_id": subscription,
        "cost_type": cost_type,
    }


def export_partition(cost_type: str = "ActualCost", subscription: str = SUB_A) -> dict[str, str]:
    return {
        "source": "export",
        "month": "2026-01",
        "sub_account": subscription,
        "cost_type": cost_type,
    }


@pytest.fixture
def paths(tmp_path, monkeypatch):
    lake, warehouse = tmp_path / "lake", tmp_path / "warehouse.duckdb"
    monkeypatch.setenv("MDECOST_LAKE__PATH", str(lake))
    monkeypatch.setenv("MDECOST_WAREHOUSE__PATH", str(warehouse))
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "mdecost.toml"
    config.write_text("")
    return lake, warehouse, config


def one(warehouse: Path, sql: str):
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.sql(sql).fetchall()


# --- class 3: one source of truth per (subscription, month, cost view) ----------------------
@pytest.mark.parametrize("query_ingested", [day(1), day(5)], ids=["query older", "query newer"])
def test_an_export_is_counted_instead_of_the_query_api_for_the_same_month(
    prefect_harness, paths, query_ingested
):
    lake, warehouse, config = paths
    write_estate(lake)
    query = write_charges(
        lake, query_partition(), [2, 3], ingested_at=query_ingested, cost_source="query"
    )
    export = write_charges(
        lake, export_partition(), [2, 3, 4], ingested_at=day(2), cost_source="export"
    )
    summary = build(config_file=config)
    # Added, the bill would be 5 x 0.48 = 2.40; the export alone is 3 x 0.48 = 1.44.
    assert one(warehouse, "SELECT sum(billed_cost) FROM defender_charges_daily") == [
        (pytest.approx(1.44),)
    ]
    assert one(warehouse, "SELECT sum(billed_cost), min(cost_source) FROM costs") == [
        (pytest.approx(1.44), "export")
    ]
    note = (
        f"2026-01 {SUB_A}: counted export ActualCost ingested 2026-02-02 00:00:00 (3 rows, "
        f"{export}); left out query ActualCost ingested {query_ingested:%Y-%m-%d} 00:00:00 "
        f"(2 rows, {query})"
    )
    assert summary.cost_overlaps == (note,)
    assert f"  {note}" in summary.lines()
    assert any(line.startswith("overlapping cost sources") for line in summary.lines())
    precedence, overlaps = one(warehouse, "SELECT cost_precedence, cost_overlaps FROM build_info")[
        0
    ]
    assert precedence.startswith("one delivery per (subscription, month, cost view): exports")
    assert json.loads(overlaps) == [note]


def test_a_later_export_replaces_the_query_rows_built_before_and_its_removal_restores_them(
    prefect_harness, paths
):
    # The query rows (Jan 2, 3: 2 x 0.48 = 0.96) are built; an export of the month (Jan 2-4:
    # 3 x 0.48 = 1.44) arrives and is counted instead, though the query file did not change;
    # when the export is deleted, the query rows count again. Which delivery counts is part of
    # what the figures depend on (build_info.cost_overlaps), so each change is a full build.
    lake, warehouse, config = paths
    write_estate(lake)
    write_charges(lake, query_partition(), [2, 3], ingested_at=day(1), cost_source="query")
    build(config_file=config)
    counted = "SELECT round(sum(billed_cost), 2), min(cost_source), count(*) FROM costs"
    assert one(warehouse, counted) == [(0.96, "query", 2)]

    export = write_charges(
        lake, export_partition(), [2, 3, 4], ingested_at=day(2), cost_source="export"
    )
    changed = "full build (the settings, the price book or mdecost's code changed)"
    assert build(config_file=config).made == changed
    assert one(warehouse, counted) == [(1.44, "export", 3)]
    assert one(warehouse, "SELECT round(sum(billed_cost), 2) FROM defender_charges_daily") == [
        (1.44,)
    ]

    export.unlink()
    assert build(config_file=config).made == changed
    assert one(warehouse, counted) == [(0.96, "query", 2)]
    assert build(config_file=config).made == "incremental build: chunks 1 copied"
    assert one(warehouse, counted) == [(0.96, "query", 2)]


def test_the_costs_table_keeps_each_rows_own_source_not_its_folders(prefect_harness, paths):
    # The partition's folders say source=export, the rows name their collector ("test"): with
    # every cost file in folders of the same keys, DuckDB would read the folders as columns.
    lake, warehouse, config = paths
    write_estate(lake)
    export = write_charges(
        lake, export_partition(), [2, 3], ingested_at=day(2), cost_source="export"
    )
    build(config_file=config)
    assert one(warehouse, "SELECT DISTINCT source, cost_type, lake_file FROM costs") == [
        ("test", "ActualCost", str(export.relative_to(lake)))
    ]


def test_a_focus_export_imported_after_an_ea_one_replaces_it_and_never_adds(prefect_harness, paths):
    lake, warehouse, config = paths
    write_estate(lake)
    write_charges(lake, query_partition(), [2, 3], ingested_at=day(1), cost_source="query")
    write_charges(lake, export_partition(), [2, 3, 4], ingested_at=day(2), cost_source="export")
    write_charges(
        lake,
        export_partition("FocusCost"),
        [2, 3, 4, 5],
        ingested_at=day(3),
        cost_source="export",
        cost_type="FocusCost",
    )
    build(config_file=config)
    # FOCUS (newest export) states January: 4 x 0.48 = 1.92, not 0.96 + 1.44 + 1.92.
    assert one(warehouse, "SELECT sum(billed_cost) FROM defender_charges_daily") == [
        (pytest.approx(1.92),)
    ]


def test_two_deliveries_of_equal_rank_are_refused_naming_both(prefect_harness, paths):
    lake, warehouse, config = paths
    write_estate(lake)
    # A partition of the earlier export layout (keyed by billing account) and one of today's,
    # the same month of A, imported at the same instant: which one is right cannot be known.
    legacy = {
        "source": "export",
        "month": "2026-01",
        "scope": scope_partition_value("/providers/microsoft.billing/billingaccounts/1"),
        "cost_type": "ActualCost",
    }
    first = write_charges(lake, legacy, [2], ingested_at=day(2), cost_source="export")
    second = write_charges(lake, export_partition(), [2], ingested_at=day(2), cost_source="export")
    with pytest.raises(BuildRefusedError) as refused:
        build(config_file=config)
    named = sorted([str(first), str(second)])
    assert str(refused.value) == (
        f"{named[0]} and {named[1]} both state {SUB_A}'s actual cost for 2026-01, ingested at "
        "the same instant: no precedence tells which is right - delete one of the two "
        "partitions, or import the right export again on its own"
    )
    assert not warehouse.exists()


def deliveries_frame(*rows: tuple) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema=["file", "owner", "month", "cost_source", "cost_type", "ingested_at", "rows"],
        orient="row",
    )


def test_a_view_is_stated_by_one_delivery_and_focus_states_both_views():
    # Newest first: an EA amortized export (day 4) states A's amortized view; the FOCUS export
    # (day 3) states both views, amortized already taken, so it is left out whole; the EA
    # actual export (day 2) then states the actual view; the Query API's actual (day 5) and
    # amortized (day 5) rows lose to exports whatever their date.
    found = deliveries_frame(
        ("ea-amortized", SUB_A, "2026-01", "export", "AmortizedCost", day(4), 30),
        ("focus", SUB_A, "2026-01", "export", "FocusCost", day(3), 31),
        ("ea-actual", SUB_A, "2026-01", "export", "ActualCost", day(2), 29),
        ("query-actual", SUB_A, "2026-01", "query", "ActualCost", day(5), 28),
        ("query-amortized", SUB_A, "2026-01", "query", "AmortizedCost", day(5), 28),
        ("query-actual-b", SUB_B, "2026-01", "query", "ActualCost", day(5), 9),
    )
    resolution = resolve(found)
    left_out = {(SUB_A, "2026-01")}
    assert resolution.left_out == {
        "focus": left_out,
        "query-actual": left_out,
        "query-amortized": left_out,
    }
    assert len(resolution.notes) == 1  # B had one source: nothing to say


def test_a_tie_between_focus_and_ea_is_refused_but_two_views_at_once_are_fine():
    fine = deliveries_frame(
        ("ea-actual", SUB_A, "2026-01", "export", "ActualCost", day(2), 1),
        ("ea-amortized", SUB_A, "2026-01", "export", "AmortizedCost", day(2), 1),
    )
    assert resolve(fine).left_out == {}
    tie = deliveries_frame(
        ("ea-actual", SUB_A, "2026-01", "export", "ActualCost", day(2), 1),
        ("focus", SUB_A, "2026-01", "export", "FocusCost", day(2), 1),
    )
    with pytest.raises(CostOverlapError, match=r"^ea-actual and focus both state "):
        resolve(tie)


def test_focus_and_ea_files_of_one_month_in_one_import_are_refused(tmp_path):
    # Both hand-written files hold subscription 3f2b6a1c-...'s June 2025.
    focus, ea = EXPORTS / "FOCUS-1.2_handmade.csv", HANDMADE
    with pytest.raises(Exception) as refused:
        import_costs_to_lake([focus, ea], tmp_path / "lake")
    assert str(refused.value) == (
        f"{ea} (ActualCost) and {focus} (FocusCost) both state the cost of "
        "3f2b6a1c-9d4e-4c1a-8b7f-2e5d6c7a8b90 for 2025-06; import one of them (a FOCUS export "
        "holds both the actual and the amortized cost)"
    )
    assert not (tmp_path / "lake").exists()


def test_one_file_imported_under_two_names_without_a_billing_account_is_held_once(tmp_path):
    header, *rows = read_rows(HANDMADE)
    index = header.index("BillingAccountId")
    for row in (header, *rows):
        del row[index]
    first = write_rows(tmp_path / "a" / "EA_ActualCost_june.csv", [header, *rows])
    second = tmp_path / "b" / "EA_ActualCost_june_copy.csv"
    second.parent.mkdir()
    shutil.copy(first, second)
    lake = tmp_path / "lake"
    import_costs_to_lake([first], lake)
    import_costs_to_lake([second], lake)
    costs = scan_dataset(lake, "costs").collect()
    # 0.16128 + 4.2 + 5 - 0.3 = 9.06128, once.
    assert (costs.height, costs["billed_cost"].sum()) == (4, pytest.approx(9.06128))


# --- class 4: exports of one billing account keep each other's rows -------------------------
# A: 3.25 (Sep 21) + 2.64 + 0 + 0 (Sep 4) + 0.21268368 (Sep 5)
SMALL_A = "1caaa5a3-2b66-438e-8ab4-bce37d518c5d"
SMALL_B = "64e355d7-997c-491d-b0c1-8414dccfcf42"  # 0.000002 + 1.9584 + 0.4838709677419368 (Sep 4)


def small_export_of(tmp_path: Path, name: str, keep) -> Path:
    """The toolkit's EA sample (billing account 8611537, September 2023), rows kept by `keep`."""
    header, *rows = read_rows(EA_SMALL)
    subscription, when = header.index("SubscriptionId"), header.index("Date")
    kept = [row for row in rows if keep(row[subscription], row[when])]
    return write_rows(tmp_path / name, [header, *kept])


def totals(lake: Path) -> dict[str, float]:
    costs = scan_dataset(lake, "costs").collect()
    return dict(costs.group_by("subscription_id").agg(pl.col("billed_cost").sum()).rows())


def test_importing_subscription_b_after_a_of_one_billing_account_keeps_a(tmp_path):
    only_a = small_export_of(tmp_path, "a/EA_ActualCost.csv", lambda sub, _: sub == SMALL_A)
    only_b = small_export_of(tmp_path, "b/EA_ActualCost.csv", lambda sub, _: sub == SMALL_B)
    lake = tmp_path / "lake"
    import_costs_to_lake([only_a], lake)
    result = import_costs_to_lake([only_b], lake)
    assert result.kept == ()
    assert totals(lake) == {
        SMALL_A: pytest.approx(3.25 + 2.64 + 0.21268368),  # 6.10268368
        SMALL_B: pytest.approx(0.000002 + 1.9584 + 0.4838709677419368),  # 2.4422729677419368
    }


def test_a_restated_export_of_a_replaces_a_only(tmp_path):
    lake = tmp_path / "lake"
    import_costs_to_lake([EA_SMALL], lake)
    header, *rows = read_rows(EA_SMALL)
    cost, subscription = header.index("Cost"), header.index("SubscriptionId")
    restated = [row for row in rows if row[subscription] == SMALL_A]
    restated[0][cost] = "3.5"  # the Sep 21 B1s row, 3.25 before
    import_costs_to_lake([write_rows(tmp_path / "r/EA_ActualCost.csv", [header, *restated])], lake)
    held = totals(lake)
    assert held[SMALL_A] == pytest.approx(3.5 + 2.64 + 0.21268368)
    assert held[SMALL_B] == pytest.approx(2.4422729677419368)
    assert len(held) == 4  # the other two subscriptions of the account are still there


def test_rows_outside_the_days_a_new_file_covers_are_kept_and_said(tmp_path):
    lake = tmp_path / "lake"
    import_costs_to_lake([EA_SMALL], lake)
    # As an mdecost older than the lake's tenant_id column wrote them.
    for path in dataset_files(lake, "costs"):
        pq.write_table(pq.read_table(path).drop_columns("tenant_id"), path)
    # A later export of A holding Sep 4 and Sep 5 only, Sep 4's D2 row restated 2.64 -> 2.00.
    header, *rows = read_rows(EA_SMALL)
    cost, subscription, when = (header.index(c) for c in ("Cost", "SubscriptionId", "Date"))
    early = [r for r in rows if r[subscription] == SMALL_A and r[when] != "09/21/2023"]
    for row in early:
        if row[cost] == "2.64":
            row[cost] = "2.00"
    result = import_costs_to_lake(
        [write_rows(tmp_path / "early/EA_ActualCost.csv", [header, *early])], lake
    )
    assert result.kept == (
        f"kept 1 earlier ActualCost row(s) of {SMALL_A} for 2023-09 dated outside the days the "
        "new file covers",
    )
    # Sep 21's 3.25 kept beside the new Sep 4-5 rows: 3.25 + 2.00 + 0.21268368.
    assert totals(lake)[SMALL_A] == pytest.approx(5.46268368)
    cli = runner.invoke(
        app,
        ["import-costs", str(tmp_path / "early/EA_ActualCost.csv")],
        env={"MDECOST_LAKE__PATH": str(lake)},
    )
    assert cli.exit_code == 0, cli.output
    assert "kept 1 earlier ActualCost row(s)" in cli.output


# --- class 5: bad lake data stops a build in one line naming the partition ------------------
def test_a_lake_partition_with_a_nan_cost_stops_the_build_naming_it(prefect_harness, paths):
    lake, warehouse, config = paths
    write_estate(lake)
    path = write_charges(lake, export_partition(), [2, 3], ingested_at=day(2), cost_source="export")
    table = pq.read_table(path)
    costs = table.column("billed_cost").to_pylist()
    table = table.set_column(
        table.schema.get_field_index("billed_cost"),
        "billed_cost",
        pa.array([costs[0], float("nan")]),
    )
    pq.write_table(table, path)  # as an older mdecost, or a hand, left it
    with pytest.raises(BuildRefusedError) as refused:
        build(config_file=config)
    assert str(refused.value) == (
        f"lake partition {path} holds 1 cost row(s) with a NaN, infinite or absurd amount; "
        "delete that partition and import or collect its month again"
    )
    assert not warehouse.exists()


def test_an_unreadable_lake_partition_stops_the_build_naming_it(prefect_harness, paths):
    lake, _, config = paths
    write_estate(lake)
    path = write_charges(lake, query_partition(), [2], ingested_at=day(2), cost_source="query")
    path.write_bytes(b"PAR1 this is not a Parquet file PAR1")
    result = runner.invoke(app, ["build", "--config", str(config)])
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"error: lake partition {path} is not a readable Parquet file (")
    assert last.endswith("); delete it and collect or import its data again")


# --- class 6: an absent or empty lake, a file that is not a warehouse -----------------------
def test_an_absent_or_empty_lake_is_refused_unless_asked(prefect_harness, paths):
    lake, warehouse, config = paths
    absent = runner.invoke(app, ["build", "--config", str(config)])
    assert absent.exit_code == 1
    assert absent.output.strip().splitlines()[-1] == (
        f"error: no lake at {lake}: check [lake] path (or MDECOST_LAKE__PATH); pass "
        "--allow-empty to build an empty warehouse on purpose"
    )
    lake.mkdir()
    with pytest.raises(BuildRefusedError, match=f"^the lake at {lake} holds no partition: "):
        build(config_file=config)
    assert not warehouse.exists()
    asked = runner.invoke(app, ["build", "--allow-empty", "--config", str(config)])
    assert asked.exit_code == 0, asked.output
    assert one(warehouse, "SELECT count(*) FROM machines") == [(0,)]


@pytest.mark.parametrize("kind", ["text", "duckdb"])
def test_a_file_at_the_warehouse_path_that_is_not_a_warehouse_is_never_replaced(
    prefect_harness, paths, kind
):
    lake, warehouse, config = paths
    write_estate(lake)
    if kind == "text":
        warehouse.write_text("quarterly numbers, not a warehouse\n")
        reason = "is not a DuckDB database"
    else:
        with duckdb.connect(str(warehouse)) as con:
            con.execute("CREATE TABLE ledger AS SELECT 42 AS amount")
        reason = (
            "is a DuckDB database but not a mdecost warehouse (no build_info or machines table)"
        )
    before = warehouse.read_bytes()
    with pytest.raises(BuildRefusedError) as refused:
        build(config_file=config)
    assert str(refused.value) == (
        f"{warehouse} {reason}; check [warehouse] path, or move the file away to build there"
    )
    assert warehouse.read_bytes() == before
    # A warehouse mdecost built is replaced as always.
    warehouse.unlink()
    build(config_file=config)
    build(config_file=config)


# --- class 7: currencies --------------------------------------------------------------------
def test_charges_only_in_another_currency_stop_the_build_naming_it(prefect_harness, paths):
    lake, warehouse, config = paths
    write_estate(lake)
    write_charges(
        lake, query_partition(), [2, 3], ingested_at=day(1), cost_source="query", currency="EUR"
    )
    with pytest.raises(BuildRefusedError) as refused:
        build(config_file=config)
    # Not a warehouse where a1's billed_cost is 0 because no charge is in USD.
    assert str(refused.value) == (
        f"the lake's Defender for Servers charges are billed in EUR ({SUB_A}), but [pricing] "
        'currency is USD; set [pricing] currency = "EUR" (with EUR prices: `mdecost prices '
        "refresh`, [pricing.seat_prices]) and build again"
    )
    assert not warehouse.exists()


def test_a_mixed_currency_estate_is_refused_naming_each_currencys_subscriptions(
    prefect_harness, paths
):
    lake, _, config = paths
    write_estate(lake)
    write_charges(lake, query_partition(), [2], ingested_at=day(1), cost_source="query")
    write_charges(
        lake,
        query_partition(subscription=SUB_B),
        [2],
        ingested_at=day(1),
        cost_source="query",
        subscription=SUB_B,
        currency="EUR",
    )
    with pytest.raises(BuildRefusedError) as refused:
        build(config_file=config)
    assert str(refused.value) == (
        f"the lake's Defender for Servers charges are billed in EUR ({SUB_B}); USD ({SUB_A}), "
        "but [pricing] currency is USD; a warehouse compares in one currency: give the "
        "subscriptions of each currency their own [lake] path and [warehouse] path, each with "
        "its [pricing] currency"
    )


def test_a_non_usd_configuration_is_a_one_line_error_never_a_traceback(prefect_harness, paths):
    lake, _, config = paths
    write_estate(lake)
    write_charges(
        lake, query_partition(), [2, 3], ingested_at=day(1), cost_source="query", currency="EUR"
    )
    result = runner.invoke(
        app, ["build", "--config", str(config)], env={"MDECOST_PRICING__CURRENCY": "EUR"}
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1] == (
        "error: the price book has no EUR price for mde_for_servers: set "
        "[pricing.seat_prices] mde_for_servers in EUR"
    )


# --- class 7: tenants in the lake and in the warehouse --------------------------------------
TENANT_LISTED_A = "aaaaaaaa-0000-4000-8000-00000000000a"
TENANT_LISTED_B = "bbbbbbbb-0000-4000-8000-00000000000b"
TENANT_COLLECTED_B = "cccccccc-0000-4000-8000-00000000000c"
SUB_C = "3c3c3c3c-0000-4000-8000-00000000003c"  # listed by no collection


def test_a_lake_without_tenant_columns_builds_and_the_listing_names_the_tenant(
    prefect_harness, paths
):
    lake, warehouse, config = paths
    write_estate(lake)
    # SUB_A's machines and charges as an mdecost older than the lake's tenant_id column wrote
    # them: no partition has the column.
    old = write_charges(lake, query_partition(), [2], ingested_at=day(1), cost_source="query")
    for path in [old, *dataset_files(lake, "inventory")]:
        pq.write_table(pq.read_table(path).drop_columns("tenant_id"), path)
    listed = pa.Table.from_pylist(
        [
            {
                "snapshot_at": day(1),
                "subscription_id": subscription,
                "tenant_id": tenant,
                "ingested_at": day(1),
                "source": "subscriptions",
                "scope": "/subscriptions",
            }
            for subscription, tenant in ((SUB_A, TENANT_LISTED_A), (SUB_B, TENANT_LISTED_B))
        ],
        schema=DATASETS["subscriptions"],
    )
    write_partition(
        lake,
        "subscriptions",
        {"snapshot_date": "2026-02-01", "tenant": "default"},
        listed,
        origin="test lake",
    )
    # Two snapshots of a1 (write_estate), both without a tenant.
    assert scan_dataset(lake, "inventory").collect()["tenant_id"].null_count() == 2
    build(config_file=config)
    assert one(warehouse, "SELECT DISTINCT subscription_id, tenant_id FROM costs") == [
        (SUB_A, TENANT_LISTED_A)
    ]
    assert one(warehouse, "SELECT DISTINCT tenant_id FROM machines") == [(TENANT_LISTED_A,)]
    # SUB_B's charges collected in a tenant other than the one the listing names (a billing
    # account spanning tenants): the listing wins. SUB_C's, which no listing knows, keep the
    # tenant they were collected in.
    for subscription in (SUB_B, SUB_C):
        collected = write_charges(
            lake,
            query_partition(subscription=subscription),
            [2],
            ingested_at=day(1),
            cost_source="query",
            subscription=subscription,
        )
        table = pq.read_table(collected)
        tenants = pa.array([TENANT_COLLECTED_B] * table.num_rows, pa.string())
        pq.write_table(
            table.set_column(table.schema.get_field_index("tenant_id"), "tenant_id", tenants),
            collected,
        )
    build(config_file=config)
    assert one(
        warehouse, "SELECT DISTINCT subscription_id, tenant_id FROM costs ORDER BY 1"
    ) == sorted([(SUB_A, TENANT_LISTED_A), (SUB_B, TENANT_LISTED_B), (SUB_C, TENANT_COLLECTED_B)])
