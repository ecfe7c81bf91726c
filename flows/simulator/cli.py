"""`mdecost simulator ...`: serve the simulated Azure estate in the foreground."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

simulator_app = typer.Typer(
    help="A simulated Azure estate on loopback, for the demo, the tests and trying mdecost "
    "without a tenant.",
    no_args_is_help=True,
)


def _parse_now(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 date-time, e.g. 2026-11-15T12:00:00Z"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@simulator_app.command("serve")
def serve(
    port: Annotated[int, typer.Option(help="TCP port on 127.0.0.1; 0 picks a free one.")] = 8443,
    seed: Annotated[int, typer.Option(help="Seed of the generated estate.")] = 7,
    machines: Annotated[int, typer.Option(min=1, help="Number of machines.")] = 40,
    months: Annotated[int, typer.Option(min=1, help="Months of history before --now.")] = 4,
    state_dir: Annotated[
        Path, typer.Option(help="Where ca.pem and mdecost.toml are written.")
    ] = Path("data/simulator"),
    now: Annotated[
        str | None,
        typer.Option(help="The estate's present, UTC (default: the current hour)."),
    ] = None,
) -> None:
    """Serve a simulated Azure estate over HTTPS until interrupted (Ctrl-C).

    Writes STATE_DIR/ca.pem and STATE_DIR/mdecost.toml, a complete config (bearer token
    included) that points mdecost at it: `mdecost <command> --config STATE_DIR/mdecost.toml`.
    The token is MDECOST_STATIC_TOKEN when set, else the development token.
    """
    from flows.simulator.estate import Estate
    from flows.simulator.server import SimulatedAzure

    estate = Estate.generate(seed=seed, machines=machines, months=months, now=_parse_now(now))
    try:
        simulator = SimulatedAzure(estate, state_dir, port=port).start()
    except OSError as error:
        typer.echo(f"error: cannot listen on 127.0.0.1:{port}: {error.strerror}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"Simulated Azure: {machines} machines in {len(estate.subscriptions)} subscriptions, "
        f"{estate.window_start:%Y-%m-%d} to {estate.now:%Y-%m-%dT%H:%MZ} (seed {seed})"
    )
    typer.echo(f"endpoint: {simulator.arm_endpoint}")
    typer.echo(f"config:   {simulator.config_path}")
    typer.echo(f"ca:       {simulator.ca_bundle}")
    typer.echo("Press Ctrl-C to stop.")
    sys.stdout.flush()  # the endpoint must reach a pipe (a supervisor, a test) right away
    try:
        simulator.serve_forever()
    except KeyboardInterrupt:
        typer.echo("stopped")


@simulator_app.command("generate")
def generate(
    machines: Annotated[int, typer.Option(min=1, help="Number of machines.")],
    months: Annotated[int, typer.Option(min=1, help="Whole months of history before --now.")],
    lake: Annotated[Path, typer.Option(help="The lake folder to write into.")],
    seed: Annotated[int, typer.Option(help="Seed of the generated estate.")] = 7,
    now: Annotated[
        str | None,
        typer.Option(help="The snapshot instant, UTC (default: the start of this month)."),
    ] = None,
) -> None:
    """Write a large simulated estate straight into LAKE (no HTTP), for benchmarks.

    Inventory and plan snapshots, power events and Query API cost rows, in the raw lake schemas
    and partitioned as `mdecost collect` partitions them; existing partitions are replaced.
    """
    from flows.simulator.bulk import generate_lake

    summary = generate_lake(
        lake,
        machines=machines,
        months=months,
        seed=seed,
        now=None if now is None else _parse_now(now),
    )
    typer.echo(summary.line())
