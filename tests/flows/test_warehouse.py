"""Publishing the warehouse: atomic swap under a reader, one build at a time, read-only queries."""

import threading

import pyarrow as pa
import pytest

from flows.warehouse import (
    QueryRefusedError,
    WarehouseBusyError,
    WarehouseMissingError,
    build_lock,
    connect_read_only,
    query,
    staged,
    sweep_abandoned_builds,
)


def numbers(*values: int) -> pa.Table:
    return pa.table({"n": pa.array(values, pa.int64())})


def publish(warehouse, tables, table_comments=None, column_comments=None):
    """Write `tables` as a build does: staged beside the warehouse, then swapped in."""
    with staged(warehouse) as new:
        for name, table in tables.items():
            new.append(name, table)
        new.document(table_comments or {}, column_comments or {})


def test_an_open_reader_keeps_the_old_warehouse_and_a_new_connection_sees_the_new(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    publish(warehouse, {"t": numbers(1, 2)})
    analyst = connect_read_only(warehouse)
    publish(warehouse, {"t": numbers(1, 2, 3)})
    assert analyst.execute("SELECT sum(n) FROM t").fetchone() == (3,)
    analyst.close()
    assert query(warehouse, "SELECT sum(n) AS total FROM t").to_pylist() == [{"total": 6}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["warehouse.duckdb"]


def test_comments_document_tables_and_columns(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    publish(
        warehouse,
        {"t": numbers(1)},
        table_comments={"t": "one row per number"},
        column_comments={"t": {"n": "the analyst's number"}},
    )
    rows = query(
        warehouse, "SELECT comment FROM duckdb_columns() WHERE table_name = 't'"
    ).to_pylist()
    assert rows == [{"comment": "the analyst's number"}]


def test_queries_are_read_only_and_take_values_only_as_parameters(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    publish(warehouse, {"t": numbers(1, 2, 3)})
    assert query(
        warehouse, "SELECT count(*) AS c FROM t WHERE n > $low", {"low": 1}
    ).to_pylist() == [{"c": 2}]
    with pytest.raises(QueryRefusedError, match="read-only"):
        query(warehouse, "DELETE FROM t")


def test_a_missing_warehouse_says_how_to_build_one(tmp_path):
    with pytest.raises(WarehouseMissingError, match="run `mdecost build`"):
        query(tmp_path / "absent.duckdb", "SELECT 1")


def test_a_second_build_waits_then_stops_with_a_clear_message(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    holding = threading.Event()
    release = threading.Event()

    def first_build() -> None:
        with build_lock(warehouse):
            holding.set()
            release.wait(5)

    thread = threading.Thread(target=first_build)
    thread.start()
    holding.wait(5)
    try:
        with (
            pytest.raises(
                WarehouseBusyError, match=r"another mdecost build .*warehouse.duckdb.lock"
            ),
            build_lock(warehouse, wait_seconds=0.3),
        ):
            pass
    finally:
        release.set()
        thread.join()
    with build_lock(warehouse, wait_seconds=0.3):
        pass


def test_staging_files_of_a_killed_build_are_swept_and_nothing_else(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    publish(warehouse, {"t": numbers(1)})
    leftovers = [
        tmp_path / ".warehouse.duckdb.0123abcd.building",
        tmp_path / ".warehouse.duckdb.0123abcd.building.wal",
    ]
    for path in leftovers:
        path.write_bytes(b"half a database")
    unrelated = tmp_path / ".other.duckdb.0123abcd.building"
    unrelated.write_bytes(b"someone else's")
    assert sweep_abandoned_builds(warehouse) == sorted(leftovers)
    assert sorted(p.name for p in tmp_path.iterdir()) == [unrelated.name, "warehouse.duckdb"]
