"""`mdecost sql`: read-only, values bound as parameters, three output formats."""

import json

import duckdb
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.warehouse import connect_read_only, staged

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


# --- the sandbox: SELECTs over the warehouse and nothing else -----------------------------------
@pytest.fixture
def published(tmp_path, monkeypatch):
    warehouse = tmp_path / "warehouse.duckdb"
    publish(warehouse, pa.table({"n": [1, 2, 3]}))
    monkeypatch.setenv("MDECOST_WAREHOUSE__PATH", str(warehouse))
    monkeypatch.setenv("MDECOST_STATIC_TOKEN", "sandbox-token-that-must-not-print")
    monkeypatch.chdir(tmp_path)
    return warehouse


@pytest.mark.parametrize(
    "statement",
    [
        "COPY (SELECT 100 AS billed_cost) TO '{target}' (FORMAT parquet)",
        "COPY t TO '{target}'",
        "SELECT * FROM read_text('/proc/self/environ')",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_blob('{target}')",
        "SELECT * FROM glob('/*')",
        "SELECT * FROM read_parquet('{target}')",
        "ATTACH '{target}' AS other (READ_WRITE)",
        "EXPORT DATABASE '{folder}'",
        "SET enable_external_access = true",
        "RESET lock_configuration",
        "PRAGMA enable_profiling",
        "INSTALL httpfs",
        "LOAD httpfs",
        "CALL pragma_version()",
        "CREATE TEMP TABLE copied AS SELECT * FROM t",
        "SELECT 1; COPY t TO '{target}'",
    ],
)
def test_sql_answers_selects_over_the_warehouse_and_touches_no_file(published, statement):
    target = published.parent / "lake" / "forged.parquet"
    target.parent.mkdir()
    folder = published.parent / "exported"
    result = runner.invoke(
        app, ["sql", statement.format(target=target, folder=folder), "-f", "csv"]
    )
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error:")
    assert len(result.output.strip().splitlines()) == 1
    assert "sandbox-token-that-must-not-print" not in result.output
    assert not target.exists() and not folder.exists()
    assert list(target.parent.iterdir()) == []


@pytest.mark.parametrize("statement", ["", "   ", ";", "/* only a comment */"])
def test_sql_refuses_an_empty_statement_in_one_line(published, statement):
    result = runner.invoke(app, ["sql", statement])
    assert result.exit_code == 1
    assert result.output.strip() == "error: no SQL statement given: pass one SELECT query"


def test_every_analyst_connection_is_sandboxed_the_report_s_too(published):
    with connect_read_only(published) as con:
        assert con.sql("SELECT sum(n) FROM t").fetchall() == [(6,)]
        with pytest.raises(duckdb.PermissionException):
            con.sql("SELECT * FROM read_text('/proc/self/environ')").fetchall()
        with pytest.raises(duckdb.InvalidInputException, match="locked"):
            con.execute("SET enable_external_access = true")
        with pytest.raises(duckdb.InvalidInputException, match="locked"):
            con.execute("SET autoload_known_extensions = true")


# --- output: data is data ------------------------------------------------------------------------
def test_sql_prints_intervals_repeated_names_and_nested_values_in_every_format(published):
    statement = (
        "SELECT INTERVAL 1 MONTH + INTERVAL 2 DAY AS span, 1 AS a, 2 AS a, [1, 2] AS l, "
        "{'k': 'v'} AS s, MAP {'x': 3} AS m"
    )
    as_csv = runner.invoke(app, ["sql", statement, "-f", "csv"])
    assert as_csv.exit_code == 0, as_csv.output
    assert as_csv.stdout == "span,a,a_1,l,s,m\n1 month 2 days,1,2,\"[1, 2]\",{'k': v},{x=3}\n"

    as_json = runner.invoke(app, ["sql", statement, "-f", "json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == [
        {"span": "1 month 2 days", "a": 1, "a_1": 2, "l": [1, 2], "s": {"k": "v"}, "m": {"x": 3}}
    ]

    as_table = runner.invoke(app, ["sql", statement])
    assert as_table.exit_code == 0, as_table.output
    assert "1 month 2 days" in as_table.stdout and "a_1" in as_table.stdout


def test_sql_json_is_strict_json_non_finite_numbers_are_null(published):
    statement = (
        "SELECT 'nan'::DOUBLE AS a, 'inf'::DOUBLE AS b, '-inf'::DOUBLE AS c, 1.5 AS d, "
        "['nan'::DOUBLE, 2.0] AS l"
    )
    result = runner.invoke(app, ["sql", statement, "-f", "json"])
    assert result.exit_code == 0, result.output
    assert "NaN" not in result.stdout and "Infinity" not in result.stdout

    def strict(constant):
        raise AssertionError(f"{constant} is not JSON")

    assert json.loads(result.stdout, parse_constant=strict) == [
        {"a": None, "b": None, "c": None, "d": 1.5, "l": [None, 2.0]}
    ]


def test_sql_prints_markup_and_terminal_escapes_as_the_text_they_are(published):
    # A machine name as an attacker would write it: rich markup, a screen clear, a window title
    # and an OSC 52 clipboard write, a right-to-left override.
    name = "[bold red]x[/bold red]\x1b[2J\x1b]0;owned\x07\x1b]52;c;ZWNobw==\x07\u202eabc"
    shown = "[bold red]x[/bold red]\\x1b[2J\\x1b]0;owned\\x07\\x1b]52;c;ZWNobw==\\x07\\u202eabc"
    statement = "SELECT $name AS machine_name"
    as_csv = runner.invoke(app, ["sql", statement, "-p", f"name={name}", "-f", "csv"])
    assert as_csv.exit_code == 0, as_csv.output
    assert as_csv.stdout == f"machine_name\n{shown}\n"

    as_table = runner.invoke(app, ["sql", statement, "-p", f"name={name}"])
    assert as_table.exit_code == 0, as_table.output
    assert "\x1b" not in as_table.stdout and "\x07" not in as_table.stdout
    assert "\u202e" not in as_table.stdout
    assert "[bold red]x[/bold red]" in as_table.stdout  # the brackets printed, not obeyed

    as_json = runner.invoke(app, ["sql", statement, "-p", f"name={name}", "-f", "json"])
    assert json.loads(as_json.stdout) == [{"machine_name": name}]
    assert "\x1b" not in as_json.stdout
