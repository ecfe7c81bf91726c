"""`build` against the simulated estate: the warehouse's hours equal the estate's ground truth.

One collection of October 1 .. November 15 12:00 (the simulator's now) into a lake of this
module's own, then one build. The ground truth comes from the simulator's true state timeline,
a different computation from the pipeline's reconstruction from Activity Log events.
"""

from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from benchmarks.compare import differences
from benchmarks.refresh import daily_refresh
from flows.build import build, lake_fingerprint
from flows.collect import collect
from flows.lake import write_partition
from tests.conftest import ambiguous_machine_days, without_arc_after_one_snapshot
from transforms.dictionary import column_comments, markdown
from transforms.schemas import DATASETS

WINDOW_START = datetime(2026, 10, 1, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(simulator, prefect_harness, tmp_path_factory):
    simulator.reset()
    folder = tmp_path_factory.mktemp("build")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MDECOST_LAKE__PATH", str(folder / "lake"))
        patch.setenv("MDECOST_WAREHOUSE__PATH", str(folder / "warehouse.duckdb"))
        collect(
            start=WINDOW_START.date(),
            end=date(2026, 11, 16),
            as_of=simulator.clock,
            config_file=simulator.config_path,
        )
        summary = build(config_file=simulator.config_path)
    return summary


def table(summary, sql: str) -> pl.DataFrame:
    with duckdb.connect(str(summary.warehouse), read_only=True) as con:
        return pl.from_arrow(con.sql(sql).to_arrow_table())


def unseen_moved_out_days(estate) -> pl.DataFrame:
    """Machine-days of ids the one collection never sees, worked out from the TRUE estate.

    A VM moved to another subscription (case 9 of issue #11) leaves its old id before the
    collection at `now` lists the new one, and a move logs no Compute event: an old id with no
    Activity Log event in the window is unknown to the lake, so its days (window start to the
    move) have no machine to count on. Its charges stay unattributed (`unknown_machine`).
    """
    events = estate.activity_events().filter(pl.col("event_at") >= WINDOW_START)
    alive = estate.alive_at(estate.now)["resource_id"]
    unseen = estate.moves().filter(
        ~pl.col("from_resource_id").is_in(events["resource_id"].implode())
        & ~pl.col("from_resource_id").is_in(alive.implode())
    )
    return unseen.select(
        resource_id="from_resource_id",
        usage_date=pl.date_ranges(
            pl.lit(WINDOW_START.date()), pl.col("moved_at").dt.date(), closed="left"
        ),
    ).explode("usage_date")


def test_billable_hours_equal_the_ground_truth_to_the_second(built, simulator):
    truth = simulator.estate.billable_hours_daily().filter(
        pl.col("usage_date") >= WINDOW_START.date()
    )
    mine = table(built, "SELECT usage_date, resource_id, billable_hours FROM machine_hours_daily")
    ambiguous = ambiguous_machine_days(simulator.estate, WINDOW_START)
    unseen = unseen_moved_out_days(simulator.estate)
    compared = (
        truth.select("usage_date", "resource_id", truth_hours="billable_hours")
        .join(mine, on=["usage_date", "resource_id"], how="full", coalesce=True)
        .join(ambiguous, on=["usage_date", "resource_id"], how="anti")
        .join(unseen, on=["usage_date", "resource_id"], how="anti")
        .with_columns(pl.col("truth_hours", "billable_hours").fill_null(0.0))
    )
    assert compared.height > 1000
    compared = without_arc_after_one_snapshot(compared, simulator.estate)
    off = compared.filter((pl.col("truth_hours") - pl.col("billable_hours")).abs() > 1 / 3600)
    assert off.height == 0, off
    assert ambiguous.height <= 5
    # The moved VM's old id, Oct 1-21 (moved at Oct 22 00:00): 21 days the warehouse has no
    # row for, though the truth bills every one of them.
    assert unseen.height == 21
    assert mine.join(unseen, on=["usage_date", "resource_id"]).height == 0
    unseen_truth = truth.join(unseen, on=["usage_date", "resource_id"])
    assert unseen_truth.height == 21 and (unseen_truth["billable_hours"] > 0).all()


def test_charges_of_an_id_the_lake_never_saw_stay_unattributed(built, simulator):
    # Issue #11, rule 4: the unseen old id's Defender charges (one per day, Oct 1-21) are
    # nobody's machine: unattributed as unknown_machine, never a machine or a finding.
    unseen = unseen_moved_out_days(simulator.estate)
    old_id = unseen["resource_id"].unique().item()
    charges = table(
        built,
        "SELECT usage_date, attribution, attribution_detail, resource_id "
        f"FROM defender_charges_daily WHERE charged_resource_id = '{old_id}'",
    )
    assert charges.height == unseen.height == 21
    assert set(charges["usage_date"]) == set(unseen["usage_date"])
    assert set(charges.select("attribution", "attribution_detail").rows()) == {
        ("unattributed", "unknown_machine")
    }
    assert charges["resource_id"].is_null().all()
    assert table(built, f"SELECT * FROM findings WHERE resource_id = '{old_id}'").height == 0


def test_defender_money_is_conserved_from_costs_to_machines(built):
    # Every Defender for Servers meter, the MDE benefit's (issue #11, rule 3) included.
    charged = table(
        built,
        "SELECT sum(billed_cost) AS total, "
        "sum(billed_cost) FILTER (WHERE lower(sku_meter) LIKE '% - mdatp benefit') AS benefit "
        "FROM costs WHERE regexp_matches(lower(sku_meter), "
        "'^standard p[12] node( - mdatp benefit)?$')",
    ).row(0, named=True)
    attributed = table(
        built,
        "SELECT sum(billed_cost) AS total, "
        "sum(billed_cost) FILTER (WHERE benefit = 'mde') AS benefit "
        "FROM defender_charges_daily",
    ).row(0, named=True)
    assert charged["benefit"] > 0
    assert attributed["total"] == pytest.approx(charged["total"], abs=1e-9)
    assert attributed["benefit"] == pytest.approx(charged["benefit"], abs=1e-9)


def test_every_table_and_column_is_documented_in_the_warehouse(built):
    # The views in `main`, and the build's own record (`build_state`), documented alike.
    comments = table(
        built,
        "SELECT schema_name, table_name, column_name, comment FROM duckdb_columns() "
        "WHERE NOT internal",
    )
    undocumented = comments.filter(pl.col("comment").is_null() | (pl.col("comment") == ""))
    assert undocumented.height == 0, undocumented
    comments = comments.filter(pl.col("schema_name") == "main")
    published = set(comments["table_name"])
    assert published == set(column_comments())
    for name, columns in column_comments().items():
        assert set(comments.filter(pl.col("table_name") == name)["column_name"]) == set(columns)


def test_the_data_dictionary_in_docs_is_generated_from_the_code():
    assert (REPO / "docs" / "warehouse.md").read_text() == markdown(), (
        "docs/warehouse.md is out of date: run `mdecost docs`"
    )


def test_build_info_records_the_settings_and_the_lake_it_was_built_from(built):
    info = table(built, "SELECT * FROM build_info")
    assert info.height == 1
    assert info["lake_fingerprint"][0] == built.lake_fingerprint
    assert info["history_start"][0] == WINDOW_START
    assert info["history_end"][0] == datetime(2026, 11, 15, 12, tzinfo=UTC)
    assert info["partial_hours"][0] == "fractional"


def test_the_lake_fingerprint_changes_when_prices_are_refreshed(tmp_path):
    # A prices refresh writes only `retail_prices`; the price book, hence every priced figure,
    # follows it, so a scheduled report must see the lake as changed and rebuild.
    lake = tmp_path / "lake"
    before = lake_fingerprint(lake)
    write_partition(
        lake,
        "retail_prices",
        {"snapshot_date": "2026-11-15", "currency": "USD"},
        DATASETS["retail_prices"].empty_table(),
        origin="test",
    )
    assert lake_fingerprint(lake) != before


def test_the_night_after_an_incremental_build_equals_a_full_one(built, simulator, tmp_path):
    # The simulated estate (every case of the simulator: moves, scale sets, Arc, trials, the
    # MDE benefit meter, charges billed under another subscription...) built, then one nightly
    # collection later (`benchmarks.refresh`) built incrementally from that warehouse, and in
    # full: the two warehouses hold the same rows. Seat blocks of one month, so November alone
    # is recomputed (with the default 90 days, Oct - Dec is one block: the whole history).
    collected = built.warehouse.parent / "lake"
    daily_refresh(collected, tmp_path / "lake")
    made = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MDECOST_PRICING__SEAT_REASSIGNMENT_DAYS", "30")
        for lake, name, full in (
            (collected, "warehouse", True),
            (tmp_path / "lake", "warehouse", False),
            (tmp_path / "lake", "full", True),
        ):
            patch.setenv("MDECOST_LAKE__PATH", str(lake))
            patch.setenv("MDECOST_WAREHOUSE__PATH", str(tmp_path / f"{name}.duckdb"))
            made[name] = build(config_file=simulator.config_path, full=full).made
    assert made["warehouse"] == "incremental build: chunks 1 from 2026-11 (timelines resumed)"
    apart = differences(tmp_path / "full.duckdb", tmp_path / "warehouse.duckdb")
    assert {table: rows for table, rows in apart.items() if rows[1] or rows[2]} == {}
