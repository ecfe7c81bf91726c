"""`build` with `[warehouse] executor = "dask"` gives the warehouse of the local build.

The hand-built January 2026 lake of `test_chunked_build` (its docstring works out every figure),
cut into one chunk per subscription (three chunks: SUB_A with SUB_B, SUB_C, the rows of no
collected subscription), built once on the local executor and once on a local Dask cluster of
two worker processes. Both compute each chunk with the same function and append the same chunks
in the same order, so the tables hold the same rows to the bit (row order aside: a SQL table has
none).
"""

from datetime import date
from pathlib import Path

import duckdb
import pytest
from polars.testing import assert_frame_equal

from flows.build import BuildRefusedError, build
from flows.config import ConfigError, load_settings
from tests.flows.test_chunked_build import (
    C1,
    ONE_SUBSCRIPTION_PER_CHUNK,
    SEAT_PRICE,
    SUB_C,
    in_canonical_order,
    tables,
    write_estate,
    write_lake,
    write_subscriptions,
)
from tests.transforms.conftest import RawLake

CONFIG = (
    f"[pricing.seat_prices]\nmde_for_servers = {SEAT_PRICE}\n\n"
    '[report]\ngroup_by = ["subscription", "management_group"]\n'
)


def build_with(
    folder: Path, lake: Path, name: str, executor: str, monkeypatch, workers: str | None = "2"
) -> Path:
    """Build `lake` into `folder/<name>.duckdb` on `executor` (dask: a local cluster of
    `workers` processes, else the scheduler at MDECOST_WAREHOUSE__DASK_ADDRESS), one
    subscription per chunk."""
    warehouse = folder / f"{name}.duckdb"
    monkeypatch.setenv("MDECOST_LAKE__PATH", str(lake))
    monkeypatch.setenv("MDECOST_WAREHOUSE__PATH", str(warehouse))
    monkeypatch.setenv("MDECOST_WAREHOUSE__CHUNK_MEGABYTES", ONE_SUBSCRIPTION_PER_CHUNK)
    monkeypatch.setenv("MDECOST_WAREHOUSE__EXECUTOR", executor)
    if executor == "dask" and workers is not None:
        monkeypatch.setenv("MDECOST_WAREHOUSE__DASK_WORKERS", workers)
    else:
        monkeypatch.delenv("MDECOST_WAREHOUSE__DASK_WORKERS", raising=False)
    config = folder / "mdecost.toml"
    config.write_text(CONFIG)
    build(config_file=config)
    return warehouse


def column_types(warehouse: Path) -> list[tuple[str, str, str]]:
    """Every table's columns with their DuckDB types, in order."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(
            "SELECT table_name, column_name, data_type FROM duckdb_columns() "
            "ORDER BY table_name, column_index"
        ).fetchall()


def assert_identical_warehouses(left: Path, right: Path) -> None:
    """`left` and `right` have the same columns with the same DuckDB types, and every table holds
    the same rows, every value to the bit (the build time aside)."""
    assert column_types(left) == column_types(right)
    first, second = tables(left), tables(right)
    assert set(first) == set(second)
    for name in sorted(first):
        one, other = first[name], second[name]
        if name == "build_info":
            one, other = one.drop("built_at"), other.drop("built_at")
        try:
            assert_frame_equal(in_canonical_order(one), in_canonical_order(other), check_exact=True)
        except AssertionError as difference:
            raise AssertionError(f"table {name}: {difference}") from None


@pytest.mark.slow
def test_a_dask_cluster_of_two_workers_builds_the_warehouse_of_the_local_build(
    prefect_harness, tmp_path, monkeypatch
):
    lake = tmp_path / "lake"
    write_lake(lake)
    write_subscriptions(lake)
    local = build_with(tmp_path, lake, "local", "local", monkeypatch)
    dask = build_with(tmp_path, lake, "dask", "dask", monkeypatch)
    assert_identical_warehouses(local, dask)
    # Three chunks, each with its Parquet parts: none left behind once published.
    assert not list(tmp_path.glob(".*.parts"))
    assert not list(tmp_path.glob("*.parquet"))
    with duckdb.connect(str(dask), read_only=True) as con:
        # Defender money in the lake, every charge counted once (test_chunked_build): 5.16.
        [(billed,)] = con.execute(
            "SELECT round(sum(billed_cost), 2) FROM defender_charges_daily"
        ).fetchall()
    assert billed == pytest.approx(5.16)


@pytest.mark.slow
def test_an_existing_scheduler_at_dask_address_builds_the_warehouse_of_the_local_build(
    prefect_harness, tmp_path, monkeypatch
):
    from distributed import LocalCluster
    from prefect.settings import PREFECT_API_URL

    lake = tmp_path / "lake"
    write_lake(lake)
    write_subscriptions(lake)
    local = build_with(tmp_path, lake, "local", "local", monkeypatch)
    parts = tmp_path / "parts"  # the folder the cluster's workers and the build share
    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=True,
        dashboard_address="127.0.0.1:0",
        env={"PREFECT_API_URL": PREFECT_API_URL.value()},
    ) as cluster:
        monkeypatch.setenv("MDECOST_WAREHOUSE__DASK_ADDRESS", cluster.scheduler_address)
        monkeypatch.setenv("MDECOST_WAREHOUSE__PARTS_PATH", str(parts))
        remote = build_with(tmp_path, lake, "remote", "dask", monkeypatch, workers=None)
        assert cluster.scheduler_info["workers"]  # still up: the build used it, not its own
    assert_identical_warehouses(local, remote)
    assert list(parts.iterdir()) == []


def test_an_unreachable_scheduler_is_refused_in_one_line_naming_it(
    prefect_harness, tmp_path, monkeypatch
):
    lake = tmp_path / "lake"
    write_lake(lake)
    monkeypatch.setenv("MDECOST_LAKE__PATH", str(lake))
    monkeypatch.setenv("MDECOST_WAREHOUSE__PATH", str(tmp_path / "unreachable.duckdb"))
    monkeypatch.setenv("MDECOST_WAREHOUSE__EXECUTOR", "dask")
    # Port 9 (discard) on loopback: nothing listens there.
    monkeypatch.setenv("MDECOST_WAREHOUSE__DASK_ADDRESS", "tcp://127.0.0.1:9")
    with pytest.raises(BuildRefusedError) as refused:
        build()
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("[warehouse] dask_address tcp://127.0.0.1:9: no Dask scheduler")
    assert not (tmp_path / "unreachable.duckdb").exists()


def test_an_address_and_a_local_cluster_size_together_are_refused(tmp_path, monkeypatch):
    config = tmp_path / "mdecost.toml"
    config.write_text(
        '[warehouse]\nexecutor = "dask"\ndask_address = "tcp://scheduler:8786"\ndask_workers = 4\n'
    )
    with pytest.raises(ConfigError, match="exclude each other: set one"):
        load_settings(config)
    config.write_text('[warehouse]\nexecutor = "dask"\ndask_address = "scheduler"\n')
    with pytest.raises(ConfigError, match="must be a Dask scheduler address such as tcp://"):
        load_settings(config)


@pytest.mark.slow
def test_an_incremental_build_on_dask_equals_a_full_local_one(
    prefect_harness, tmp_path, monkeypatch
):
    # Built once locally, then SUB_C's January costs are restated (its partition rewritten with
    # one charge: c1, Jan 23, 0.48): the Dask build copies the unchanged chunk (SUB_A with
    # SUB_B) from the published warehouse and computes the others on the cluster; the result is
    # the warehouse a full local build of the restated lake makes.
    lake = tmp_path / "lake"
    write_lake(lake)
    write_subscriptions(lake)
    build_with(tmp_path, lake, "incremental", "local", monkeypatch)
    restated = RawLake()
    restated.cost(date(2026, 1, 23), C1, hours=24, amount=0.48, subscription=SUB_C)
    write_estate(lake, restated)
    incremental = build_with(tmp_path, lake, "incremental", "dask", monkeypatch)
    full = build_with(tmp_path, lake, "full", "local", monkeypatch)
    assert_identical_warehouses(incremental, full)
