"""The `mdecost` command line: configuration at the edge, one command per thing a user runs."""

from __future__ import annotations

import json
import sys
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import duckdb
import polars as pl
import typer
from rich.console import Console
from rich.table import Table

from flows import warehouse
from flows.config import ConfigError, Settings, load_settings

app = typer.Typer(
    name="mdecost",
    help="What Defender for Servers really costs, machine by machine, versus per-seat MDE.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


@app.callback()
def _group() -> None:
    """Commands are grouped; see `mdecost --help`."""


ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="mdecost.toml to use (default: ./mdecost.toml)."),
]


def settings_or_exit(config: Path | None) -> Settings:
    """Load the settings, or print the one-line configuration error and exit with status 2."""
    try:
        return load_settings(config)
    except ConfigError as error:
        console.print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(2) from None


@app.command("config")
def show_config(config: ConfigOption = None) -> None:
    """Print the effective configuration (secrets masked)."""
    settings = settings_or_exit(config)
    typer.echo(settings.model_dump_json(indent=2))


def _json_value(value: object) -> object:
    """JSON for what DuckDB returns beyond JSON's types: exact numbers, dates and times."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, date | datetime):
        return value.isoformat()
    return str(value)


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


@app.command("sql")
def run_sql(
    statement: Annotated[str, typer.Argument(help="One SQL query over the warehouse views.")],
    output: Annotated[OutputFormat, typer.Option("--format", "-f")] = OutputFormat.table,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="NAME=VALUE, bound to $NAME in the query."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Run a read-only query against the warehouse and print the result."""
    settings = settings_or_exit(config)
    parameters = {}
    for item in param or []:
        name, separator, value = item.partition("=")
        if not separator or not name.isidentifier():
            console.print(f"[red]error:[/red] --param {item!r} must look like NAME=VALUE")
            raise typer.Exit(2)
        parameters[name] = value
    try:
        result = warehouse.query(settings.warehouse.path, statement, parameters)
    except warehouse.WarehouseMissingError as error:
        console.print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(1) from None
    except duckdb.Error as error:
        console.print(f"[red]error:[/red] {str(error).splitlines()[0]}", highlight=False)
        raise typer.Exit(1) from None
    frame = pl.from_arrow(result)
    assert isinstance(frame, pl.DataFrame)
    if output is OutputFormat.csv:
        sys.stdout.write(frame.write_csv())
    elif output is OutputFormat.json:
        json.dump(result.to_pylist(), sys.stdout, default=_json_value)
        sys.stdout.write("\n")
    else:
        table = Table(*frame.columns)
        for row in frame.iter_rows():
            table.add_row(*("" if value is None else str(value) for value in row))
        Console().print(table)


def main() -> None:
    app()
