"""`mdecost export`: every warehouse table as Parquet (types kept) or CSV (maps as JSON, formula
cells defused), from a hand-made warehouse."""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from flows.cli import app


def hand_made_warehouse(path: Path) -> Path:
    with duckdb.connect(str(path)) as con:
        con.execute(
            "CREATE TABLE machines AS SELECT * FROM (VALUES "
            "('/subscriptions/a/vm1', MAP {'CostCenter': 'CC-1'}), "
            "('=HYPERLINK(\"x\")', MAP {})) AS t(resource_id, tags)"
        )
        con.execute(
            "CREATE TABLE build_info AS SELECT TIMESTAMPTZ '2026-11-15 12:00:00+00' AS built_at"
        )
        con.execute(
            "CREATE TABLE showback_monthly AS SELECT DATE '2026-10-01' AS month, "
            "'tag:CostCenter' AS group_key, 12.5 AS billed_cost"
        )
    return path


def config_for(tmp_path: Path, warehouse: Path) -> Path:
    config = tmp_path / "mdecost.toml"
    config.write_text(f'[warehouse]\npath = "{warehouse}"\n')
    return config


def test_parquet_keeps_every_table_and_its_types(tmp_path):
    warehouse = hand_made_warehouse(tmp_path / "warehouse.duckdb")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "export",
            str(out),
            "--format",
            "parquet",
            "--config",
            str(config_for(tmp_path, warehouse)),
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in out.iterdir()) == [
        "build_info.parquet",
        "machines.parquet",
        "showback_monthly.parquet",
    ]
    machines = pq.read_table(out / "machines.parquet")
    assert pa.types.is_map(machines.schema.field("tags").type)
    assert machines.column("tags").to_pylist()[0] == [("CostCenter", "CC-1")]
    assert pq.read_table(out / "showback_monthly.parquet").column("billed_cost").to_pylist() == [
        12.5
    ]
    assert "machines.parquet (2 rows)" in result.output


def test_csv_writes_maps_as_json_and_defuses_formulas(tmp_path):
    warehouse = hand_made_warehouse(tmp_path / "warehouse.duckdb")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["export", str(out), "-f", "csv", "--config", str(config_for(tmp_path, warehouse))]
    )
    assert result.exit_code == 0, result.output
    with (out / "machines.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0] == {"resource_id": "/subscriptions/a/vm1", "tags": '{"CostCenter":"CC-1"}'}
    assert rows[1]["resource_id"] == '\'=HYPERLINK("x")'
    assert rows[1]["tags"] == "{}"


def test_no_warehouse_is_one_line(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "export",
            str(tmp_path / "out"),
            "--config",
            str(config_for(tmp_path, tmp_path / "none.duckdb")),
        ],
    )
    assert result.exit_code == 1
    assert "no warehouse at" in result.output
