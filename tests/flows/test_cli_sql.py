"""`mdecost sql`: read-only, values bound as parameters, three output formats."""

import json

import pyarrow as pa
from typer.testing import CliRunner

from flows.cli import app
from flows.warehouse import staged

runner = CliRunner()


def publish(warehouse, table):
    with staged(warehouse) as new:
        new.append("t", table)


def test_sql_prints_csv_json_and_binds_parameters(tmp_path, monkeypatch):
    warehouse = tmp_path / "warehouse.duckdb"
    publish(warehouse, pa.table({"n": [1, 2, 3]}))
    monkeypatch.setenv("MDECOST_WAREHOUSE__PATH", str(warehouse))
    monkeypatch.chdir(tmp_path)

    csv = runner.invoke(app, ["sql", "SELECT n FROM t WHERE n >= $low", "-p", "low=2", "-f", "csv"])
    assert csv.exit_code == 0, csv.output
    assert csv.stdout == "n\n2\n3\n"

    as_json = runner.invoke(app, ["sql", "SELECT sum(n) AS total FROM t", "--format", "json"])
    assert json.loads(as_json.stdout) == [{"total": 6}]

    injected = runner.invoke(
        app,
        [
            "sql",
            "SELECT count(*) AS c FROM t WHERE n::VARCHAR = $v",
            "-p",
            "v=1 OR 1=1",
            "-f",
            "csv",
        ],
    )
    assert injected.stdout == "c\n0\n"


def test_sql_refuses_writes_and_names_a_missing_warehouse(tmp_path, monkeypatch):
    warehouse = tmp_path / "warehouse.duckdb"
    monkeypatch.setenv("MDECOST_WAREHOUSE__PATH", str(warehouse))
    monkeypatch.chdir(tmp_path)
    missing = runner.invoke(app, ["sql", "SELECT 1"])
    assert missing.exit_code == 1
    assert "run `mdecost build`" in missing.output

    publish(warehouse, pa.table({"n": [1]}))
    refused = runner.invoke(app, ["sql", "DROP TABLE t"])
    assert refused.exit_code == 1
    assert "read-only" in refused.output
