"""The `mdecost` command line: configuration at the edge, one command per thing a user runs."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import duckdb
import typer
from rich.console import Console
from rich.markup import escape

from flows import runtime, sqlout, warehouse
from flows.config import ConfigError, Settings, load_settings
from flows.lake import LakeBusyError
from flows.simulator.cli import simulator_app
from pricing.book import (
    PriceEntry,
    PricingError,
    book_entries,
    load_price_book,
    pricing_choices,
)
from pricing.retail import refresh_retail_prices
from transforms.costs import EARLIEST_CHARGE_YEAR
from transforms.schemas import PRICE_BOOK

if TYPE_CHECKING:
    from azure.mgmt.costmanagement import CostManagementClient

    from flows.collect.throttling import RetryLimits

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


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `message` as one error line (never parsed as markup, control characters spelled
    out: messages quote values from files) and return the exit to raise."""
    console.print(
        f"[red]error:[/red] {escape(sqlout.visible(message))}", highlight=False, soft_wrap=True
    )
    return typer.Exit(code)


def settings_or_exit(config: Path | None) -> Settings:
    """Load the settings, or print the one-line configuration error and exit with status 2."""
    try:
        return load_settings(config)
    except ConfigError as error:
        raise fail(str(error), 2) from None


def lake_writer_settings_or_exit(config: Path | None) -> Settings:
    """The settings of a command that writes the lake, or the one-line refusal (status 2) of
    an object-storage lake, which only `build` reads (`LakeSettings.folder`)."""
    settings = settings_or_exit(config)
    try:
        settings.lake.folder  # noqa: B018 (refuses an object-storage lake)
    except ConfigError as error:
        raise fail(str(error), 2) from None
    return settings


def plausible_month(first_day: date) -> date:
    """`first_day` if cost data can exist for its month (`transforms.costs`: 2010 to next
    year), else the one-line refusal (9999-12 has no month after it to end at)."""
    latest = datetime.now(UTC).year + 1
    if not EARLIEST_CHARGE_YEAR <= first_day.year <= latest:
        raise fail(
            f"--month {first_day:%Y-%m} is outside {EARLIEST_CHARGE_YEAR}-01..{latest}-12, "
            "where cost data can be",
            2,
        )
    return first_day


def prepare_flow_run(*refusals: type[BaseException]) -> None:
    """Before a command runs flows: its one-line refusals logged without a traceback, and
    Prefect's temporary server (if one is needed) tied to this process (`flows.runtime`)."""
    runtime.refusals_without_traceback(*refusals)
    runtime.tie_temporary_server()


@app.command("config")
def show_config(config: ConfigOption = None) -> None:
    """Print the effective configuration (secrets masked)."""
    settings = settings_or_exit(config)
    typer.echo(settings.model_dump_json(indent=2))


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
    """Run one SELECT over the warehouse (sandboxed: no files, no settings) and print it."""
    settings = settings_or_exit(config)
    parameters = {}
    for item in param or []:
        name, separator, value = item.partition("=")
        if not separator or not name.isidentifier():
            raise fail(f"--param {item!r} must look like NAME=VALUE", 2)
        parameters[name] = value
    try:
        with warehouse.connect_read_only(settings.warehouse.path) as con:
            answer = sqlout.fetch(
                con,
                warehouse.single_select(statement),
                parameters,
                as_text=output is not OutputFormat.json,
            )
    except (warehouse.WarehouseMissingError, warehouse.QueryRefusedError) as error:
        raise fail(str(error)) from None
    except duckdb.Error as error:
        raise fail(str(error).splitlines()[0]) from None
    if output is OutputFormat.csv:
        sys.stdout.write(sqlout.csv_text(answer))
    elif output is OutputFormat.json:
        sys.stdout.write(sqlout.json_text(answer) + "\n")
    else:
        Console(highlight=False).print(sqlout.rich_table(answer))


prices_app = typer.Typer(
    help="The price book: list prices, Retail Prices refreshes, your discounts and seat prices.",
    no_args_is_help=True,
)
app.add_typer(prices_app, name="prices")
_BOOK_COLUMNS = tuple(PRICE_BOOK.names)


@prices_app.command("refresh")
def refresh_prices(config: ConfigOption = None) -> None:
    """Fetch Defender for Servers list prices from the Retail Prices API into the lake."""
    settings = lake_writer_settings_or_exit(config)
    try:
        result = refresh_retail_prices(settings)
    except PricingError as error:
        raise fail(f"prices refresh failed: {error}; the price book is unchanged") from None
    typer.echo(
        f"{result.items} item(s) on {result.pages} page(s); {result.trial_or_free_ignored} "
        f"trial or zero-priced meter(s) ignored; {result.stored} row(s) stored in "
        f"{result.partition}"
    )
    if not result.new_entries:
        typer.echo("No price changed: the price book is as it was.")
        return
    typer.echo("The price book gained or changed these entries:")
    _print_book(result.new_entries)


@prices_app.command("show")
def show_prices(
    month: Annotated[
        str | None, typer.Option("--month", help="YYYY-MM: only the entries in force then.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Print the effective price book (list prices, refreshes, discounts and overrides)."""
    settings = settings_or_exit(config)
    try:
        first_day = datetime.strptime(month, "%Y-%m").date() if month else None
    except ValueError:
        raise fail(f"--month {month!r} must look like YYYY-MM", 2) from None
    if first_day is not None:
        plausible_month(first_day)
    try:
        book = load_price_book(settings)
        choices = pricing_choices(settings.pricing, book)
    except PricingError as error:
        raise fail(str(error), 2) from None
    entries = book_entries(book)
    if first_day is not None:
        next_month = date(first_day.year + first_day.month // 12, first_day.month % 12 + 1, 1)
        entries = [
            entry
            for entry in entries
            if entry.effective_from < next_month
            and (entry.effective_to is None or entry.effective_to > first_day)
        ]
    if entries:
        _print_book(entries)
    else:
        typer.echo(f"No price book entry is in force in {month}.")
    owned = ", ".join(f"{option} {seats}" for option, seats in choices.seats_owned.items())
    typer.echo(
        f"currency {choices.currency}; seat option {choices.seat_option}; "
        f"seats owned: {owned or 'none'}. Rates are list prices unless the source says otherwise."
    )


def _print_book(entries: list[PriceEntry]) -> None:
    """Book entries as aligned plain-text columns (readable in a pipe too), their long sources
    as numbered notes below."""
    sources = list(dict.fromkeys(entry.source for entry in entries))
    rows = [[column.removeprefix("effective_") for column in _BOOK_COLUMNS]]
    for entry in entries:
        cells = [getattr(entry, column) for column in _BOOK_COLUMNS[:-1]]
        note = f"[{sources.index(entry.source) + 1}]"
        rows.append([*("open" if value is None else str(value) for value in cells), note])
    widths = [max(len(row[index]) for row in rows) for index in range(len(_BOOK_COLUMNS))]
    for row in rows:
        padded = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        typer.echo("  ".join(padded).rstrip())
    for number, source in enumerate(sources, start=1):
        typer.echo(f"[{number}] {source}")


_DAY = ["%Y-%m-%d"]
StartOption = Annotated[
    datetime, typer.Option("--start", formats=_DAY, help="First UTC day (inclusive).")
]
EndOption = Annotated[
    datetime, typer.Option("--end", formats=_DAY, help="UTC day after the last (exclusive).")
]


@app.command("collect")
def collect_command(
    start: StartOption,
    end: EndOption,
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            help="/subscriptions/<id>, repeatable (default: the config's azure.scopes, else every "
            "enabled subscription the credential can read).",
        ),
    ] = None,
    as_of: Annotated[
        datetime | None,
        typer.Option(
            "--as-of",
            formats=["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", *_DAY],
            help="UTC instant the run stands at (default: now); for replays and emulators.",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Re-collect cost months past collect.restatement_days."),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Collect inventory, Defender plans, power events and costs from Azure into the lake.

    Exit status 1 when some scope could not be read (the rest is written), 2 on bad input.
    """
    from flows.collect import CollectIncomplete, collect
    from flows.collect.activity_log import WindowError, check_window
    from flows.collect.scopes import validated_scopes

    settings = lake_writer_settings_or_exit(config)
    instant = (as_of or datetime.now(UTC)).replace(tzinfo=UTC)
    try:
        scopes = validated_scopes(scope) if scope else None
        check_window(start.date(), end.date(), instant, history=settings.history.configured)
    except (ValueError, WindowError) as error:
        raise fail(str(error), 2) from None
    prepare_flow_run(CollectIncomplete, LakeBusyError)
    try:
        summary = collect(
            start=start.date(),
            end=end.date(),
            scopes=scopes,
            as_of=instant,
            config_file=config,
            force=force,
        )
    except CollectIncomplete as incomplete:
        typer.echo("\n".join(incomplete.summary.lines()))
        skipped = ", ".join(incomplete.summary.skipped_scopes)
        raise fail(f"could not read {skipped}") from None
    except LakeBusyError as error:
        raise fail(str(error)) from None
    except WindowError as error:
        raise fail(str(error), 2) from None
    typer.echo("\n".join(summary.lines()))


@app.command("scopes")
def scopes_command(
    months: Annotated[
        int, typer.Option("--months", min=1, help="Months of data to price in QPU (backfill).")
    ] = 13,
    config: ConfigOption = None,
) -> None:
    """List the cost scopes the credential reads and the one collection would query, with the
    QPU each choice costs."""
    from azure.core.exceptions import HttpResponseError

    from flows.azure_clients import AzureClients
    from flows.collect import discover_scopes
    from flows.collect.discovery import discover

    settings = settings_or_exit(config)
    try:
        subscriptions = discover_scopes.fn(config)
        report = discover(
            AzureClients(settings).cost(), settings.azure.arm_endpoint, len(subscriptions)
        )
    except HttpResponseError as error:
        first = error.message.splitlines()[0] if error.message else str(error)
        raise fail(f"listing scopes: {first}") from None
    except ConfigError as error:
        raise fail(str(error), 2) from None
    lines = report.lines(list(settings.azure.cost_scopes), months, len(settings.collect.cost_types))
    typer.echo("\n".join(lines))


exports_app = typer.Typer(
    help="Cost Management exports of a scope into a storage account (read back by collect).",
    no_args_is_help=True,
)
app.add_typer(exports_app, name="exports")
ExportScopeOption = Annotated[
    str, typer.Option("--scope", help="Scope exported: a subscription or billing account.")
]
StorageOption = Annotated[
    str,
    typer.Option(
        "--storage-account",
        help="Resource id of the storage account the runs are written to.",
    ),
]
ContainerOption = Annotated[str, typer.Option("--container", help="Container of the runs.")]
DirectoryOption = Annotated[
    str, typer.Option("--directory", help="The export's root folder in the container.")
]
ExportNameOption = Annotated[str, typer.Option("--name", help="The export's name.")]


def _export_context(
    config: Path | None,
) -> tuple[Settings, CostManagementClient, RetryLimits]:
    from flows.azure_clients import AzureClients
    from flows.collect.throttling import RetryLimits

    settings = settings_or_exit(config)
    limits = RetryLimits(settings.collect.max_retries, settings.collect.max_retry_wait_seconds)
    return settings, AzureClients(settings).cost(), limits


@exports_app.command("create")
def exports_create(
    scope: ExportScopeOption,
    storage_account: StorageOption,
    container: ContainerOption,
    directory: DirectoryOption = "mdecost",
    name: ExportNameOption = "mdecost-focus-daily",
    config: ConfigOption = None,
) -> None:
    """Create a daily, month-to-date FOCUS export of the scope into the storage account."""
    import logging

    from azure.core.exceptions import HttpResponseError

    from flows.collect.export_api import create_daily_export

    settings, client, limits = _export_context(config)
    try:
        create_daily_export(
            client,
            settings.azure.arm_endpoint,
            scope,
            name,
            (storage_account, container, directory),
            starts=f"{datetime.now(UTC):%Y-%m-%dT00:00:00Z}",
            limits=limits,
            log=logging.getLogger("mdecost.exports"),
        )
    except HttpResponseError as error:
        raise fail(f"export {name} of {scope}: {error.message or error}") from None
    typer.echo(
        f"export {name} of {scope}: daily FOCUS runs into {container}/{directory}; add this "
        "container and directory to [[exports.sources]] for collect to read them"
    )


@exports_app.command("backfill")
def exports_backfill(
    scope: ExportScopeOption,
    storage_account: StorageOption,
    container: ContainerOption,
    directory: DirectoryOption = "mdecost",
    name: ExportNameOption = "mdecost-focus-backfill",
    months: Annotated[
        int, typer.Option("--months", min=1, max=13, help="Months back, this one included.")
    ] = 13,
    config: ConfigOption = None,
) -> None:
    """Request one-time FOCUS exports month by month; run again to resume after a failure."""
    import logging

    from azure.core.exceptions import HttpResponseError

    from flows.collect.export_api import backfill
    from flows.collect.scopes import Month

    lake_writer_settings_or_exit(config)  # records the months asked in the lake
    settings, client, limits = _export_context(config)
    wanted = [Month.of(datetime.now(UTC).date())]
    while len(wanted) < months:
        first = wanted[0].first_day
        wanted.insert(0, Month.of(first - timedelta(days=1)))
    try:
        requested = backfill(
            client,
            settings.azure.arm_endpoint,
            scope,
            name,
            (storage_account, container, directory),
            wanted,
            settings.lake.folder,
            limits=limits,
            log=logging.getLogger("mdecost.exports"),
            progress=typer.echo,
        )
    except HttpResponseError as error:
        raise fail(
            f"backfill of {scope} stopped: {error.message or error}; run the same command "
            "again to resume with that month"
        ) from None
    typer.echo(f"{len(requested)} month(s) requested; collect reads the runs as they land")


@app.command("build")
def build_command(
    allow_empty: Annotated[
        bool,
        typer.Option(
            "--allow-empty", help="Build even from an absent or empty lake (an empty warehouse)."
        ),
    ] = False,
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="Recompute every month of every chunk instead of copying from the published "
            "warehouse what the lake's changes do not reach.",
        ),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Rebuild the warehouse from the lake and publish it atomically: incrementally (the
    months a lake change cannot reach are copied from the published warehouse) unless --full."""
    from flows.build import BuildRefusedError, build
    from transforms.comparison import MissingPriceError

    settings_or_exit(config)
    refusals = (warehouse.WarehouseBusyError, PricingError, BuildRefusedError, MissingPriceError)
    prepare_flow_run(*refusals)
    try:
        summary = build(config_file=config, allow_empty=allow_empty, full=full)
    except refusals as error:
        raise fail(str(error)) from None
    typer.echo("\n".join(summary.lines()))


@app.command("docs")
def docs_command(
    output: Annotated[Path, typer.Option("--output", "-o")] = Path("docs/warehouse.md"),
) -> None:
    """Write the warehouse data dictionary (generated from the code) as Markdown."""
    from transforms.dictionary import markdown

    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(markdown())
    typer.echo(f"wrote {output}")


class CostTypeChoice(StrEnum):
    ActualCost = "ActualCost"
    AmortizedCost = "AmortizedCost"


@app.command("import-costs")
def import_costs_command(
    paths: Annotated[
        list[Path], typer.Argument(help="Export files or folders (FOCUS 1.0/1.2, EA/MCA CSV).")
    ],
    cost_type: Annotated[
        CostTypeChoice | None,
        typer.Option(
            "--cost-type",
            help="For EA/MCA cost details, which view the files hold (default: a whole word "
            "of the path, e.g. a folder named ActualCost or amortized; else it is asked for).",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Import Cost Management export files into the lake; a re-import replaces, never adds."""
    from flows.exports import import_costs_to_lake
    from flows.lake import lake_lock
    from transforms.costs import CostDataError

    settings = lake_writer_settings_or_exit(config)
    try:
        with lake_lock(settings.lake.folder):
            result = import_costs_to_lake(
                paths, settings.lake.folder, cost_type=cost_type.value if cost_type else None
            )
    except CostDataError as error:
        raise fail(str(error), 2) from None
    except LakeBusyError as error:
        raise fail(str(error)) from None
    for imported in result.files:
        if imported.duplicate_of is not None:
            typer.echo(f"{imported.path}: same content as {imported.duplicate_of}, read once")
            continue
        notes = [f"{imported.rows:,} rows", imported.layout]
        if imported.cost_type:
            notes.append(imported.cost_type)
        if imported.negative_rows:
            notes.append(f"{imported.negative_rows} refund/credit rows kept")
        if imported.unknown_units:
            notes.append(f"units not in PricingUnits: {', '.join(imported.unknown_units)}")
        if imported.non_arm_ids:
            notes.append(
                f"{len(imported.non_arm_ids)} resource id(s) not Azure ones, kept (they match no "
                f"machine), e.g. {imported.non_arm_ids[0]!r}"
            )
        typer.echo(f"{imported.path}: {'; '.join(notes)}")
    for line in result.kept:
        typer.echo(line)
    typer.echo(f"{result.rows:,} rows in {len(result.written)} partition(s) of the lake")


MonthOption = Annotated[
    datetime | None,
    typer.Option("--month", formats=["%Y-%m"], help="YYYY-MM (default: the last full month)."),
]


@app.command("run")
def run_command(
    start: StartOption,
    end: EndOption,
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="/subscriptions/<id>, repeatable.")
    ] = None,
    report: Annotated[
        bool, typer.Option("--report", help="Also render the report for the window's last month.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Ad-hoc refresh of a window: collect it, rebuild the warehouse, optionally report."""
    from flows.build import BuildRefusedError
    from flows.collect import CollectIncomplete
    from flows.collect.activity_log import WindowError, check_window
    from flows.collect.scopes import validated_scopes
    from flows.pipeline import first_of_month, refresh
    from transforms.comparison import MissingPriceError

    settings = lake_writer_settings_or_exit(config)
    now = datetime.now(UTC)
    try:
        scopes = validated_scopes(scope) if scope else None
        check_window(start.date(), end.date(), now, history=settings.history.configured)
    except (ValueError, WindowError) as error:
        raise fail(str(error), 2) from None
    last_day = end.date() - timedelta(days=1)
    refusals = (LakeBusyError, warehouse.WarehouseBusyError, BuildRefusedError, MissingPriceError)
    prepare_flow_run(CollectIncomplete, *refusals)
    try:
        summary = refresh(
            start=start.date(),
            end=end.date(),
            scopes=scopes,
            as_of=now,
            config_file=config,
            report_month=first_of_month(last_day) if report else None,
        )
    except CollectIncomplete as incomplete:
        typer.echo("\n".join(incomplete.summary.lines()))
        raise fail(f"could not read {', '.join(incomplete.summary.skipped_scopes)}") from None
    except refusals as error:
        raise fail(str(error)) from None
    except WindowError as error:
        raise fail(str(error), 2) from None
    typer.echo("\n".join(summary.lines()))


def month_range(text: str) -> tuple[date, date]:
    """`YYYY-MM..YYYY-MM` -> the first days of both months, the first not after the second."""
    first, separator, last = text.partition("..")
    try:
        if not separator:
            raise ValueError
        start, end = (datetime.strptime(part.strip(), "%Y-%m").date() for part in (first, last))
    except ValueError:
        raise fail(f"--months {text!r} must look like YYYY-MM..YYYY-MM", 2) from None
    if start > end:
        raise fail(f"--months {text!r}: {first} is after {last}", 2)
    return plausible_month(start), plausible_month(end)


@app.command("report")
def report_command(
    month: MonthOption = None,
    months: Annotated[
        str | None,
        typer.Option(
            "--months",
            help="YYYY-MM..YYYY-MM: the trend over these months, the report of the last one.",
        ),
    ] = None,
    formats: Annotated[
        str, typer.Option("--format", help="Comma-separated: html,csv,xlsx.")
    ] = "html,csv,xlsx",
    config: ConfigOption = None,
) -> None:
    """Render the finance report for a month (or a range of months) from the warehouse."""
    from flows.pipeline import previous_full_month
    from flows.report import ReportDataError, parse_formats, render_report

    settings = settings_or_exit(config)
    try:
        wanted = parse_formats(formats)
    except ValueError as error:
        raise fail(str(error), 2) from None
    if month and months:
        raise fail("give --month or --months, not both", 2)
    trend_from = None
    if months:
        trend_from, first_day = month_range(months)
    elif month:
        first_day = plausible_month(month.date())
    else:
        first_day = previous_full_month(datetime.now(UTC))
    try:
        paths = render_report(
            settings.warehouse.path,
            first_day,
            settings.report.path,
            formats=wanted,
            pricing=settings.pricing,
            trend_from=trend_from,
        )
    except (ReportDataError, warehouse.WarehouseMissingError) as error:
        raise fail(str(error)) from None
    for written in (paths.html, paths.csv, paths.xlsx):
        if written is not None:
            typer.echo(f"wrote {written}")


class ExportFormat(StrEnum):
    parquet = "parquet"
    csv = "csv"


@app.command("export")
def export_command(
    directory: Annotated[Path, typer.Argument(help="Folder for one file per warehouse table.")],
    file_format: Annotated[ExportFormat, typer.Option("--format", "-f")] = ExportFormat.parquet,
    config: ConfigOption = None,
) -> None:
    """Write every warehouse table to DIRECTORY as Parquet or CSV (Power BI, Excel)."""
    from flows.export_views import export_warehouse

    settings = settings_or_exit(config)
    try:
        exported = export_warehouse(settings.warehouse.path, directory, file_format.value)
    except warehouse.WarehouseMissingError as error:
        raise fail(str(error)) from None
    except OSError as error:
        raise fail(f"cannot write to {directory}: {error.strerror or error}") from None
    for table in exported:
        typer.echo(f"{table.path} ({table.rows:,} rows)")


@app.command("serve")
def serve_command(config: ConfigOption = None) -> None:
    """Serve the daily-refresh and monthly-finance-report deployments on their schedules."""
    from prefect import serve

    from flows.pipeline import deployments

    lake_writer_settings_or_exit(config)
    serve(*deployments(config.resolve() if config else None))


@app.command("demo")
def demo_command(
    machines: Annotated[int, typer.Option(min=4, max=2000)] = 48,
    seed: int = 7,
    state_dir: Annotated[Path, typer.Option("--state-dir")] = Path("data/demo"),
) -> None:
    """Run the whole pipeline on a simulated estate and print what it found."""
    from flows.demo import run_demo, summary_table

    prepare_flow_run()
    result = run_demo(state_dir=state_dir, machines=machines, seed=seed, progress=console.print)
    Console().print(summary_table(result))


app.add_typer(simulator_app, name="simulator")


def main() -> None:
    """The `mdecost` command: the process set up first (`flows.runtime`), then the command."""
    runtime.private_files()
    runtime.telemetry_off_by_default()
    runtime.sigterm_as_interrupt()
    app()
