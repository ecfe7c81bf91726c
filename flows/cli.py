"""The `mdecost` command line: configuration at the edge, one command per thing a user runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

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


def main() -> None:
    app()
