"""Secrets never reach logs, the lake, the warehouse, reports or Prefect's records; the static
emulator token is refused for any endpoint that is not this machine.

The pipeline runs end to end through the CLI (config, prices refresh, collect under injected
faults with one unreadable scope, build, report) plus an export import, against a simulated
Azure of its own whose bearer token is a known secret given ONLY through MDECOST_STATIC_TOKEN
(the config file it reads holds none). A client secret sits in AZURE_CLIENT_SECRET all along.
Every output is then searched for both: each log record at DEBUG (azure-core's HTTP logging
included), the CLI's output, every file written (Parquet, DuckDB and xlsx read decoded, since
their storage is compressed), and Prefect's database (run logs, parameters, states).
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest
from typer.testing import CliRunner

import flows.collect  # noqa: F401  (Prefect binds its console handler at import; see test_collect_cli)
from flows.azure_clients import build_credential
from flows.cli import app
from flows.config import STATIC_TOKEN_ENV, ConfigError, Settings, load_settings
from flows.exports import import_costs_to_lake
from flows.simulator.server import simulated_azure
from transforms.costs import CostDataError

pytestmark = pytest.mark.simulator

BEARER_TOKEN = "mdecost-test-bearer-9f3c2a71e6d84b0c"
CLIENT_SECRET = "mdecost-test-client-secret-4d7e1b93"
SAS_SIGNATURE = "mdecost-test-sas-sig-5a0c8e2f"
SECRETS = (BEARER_TOKEN, CLIENT_SECRET, SAS_SIGNATURE)
NOW = datetime(2026, 11, 15, 12, tzinfo=UTC)
EXPORT = Path(__file__).parent / "fixtures" / "exports" / "EA_ActualCost_Small.csv"
HTTP_LOGGING = "azure.core.pipeline.policies.http_logging_policy"
# Loggers whose records are captured at DEBUG (Prefect's run loggers do not propagate).
CAPTURED_LOGGERS = ("", "azure", "urllib3", "flows", "mdecost", "prefect", "prefect.flow_runs",
                    "prefect.task_runs")  # fmt: skip


class Capture(logging.Handler):
    """Every record, formatted with its traceback if any, once."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen: dict[int, str] = {}
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.setdefault(id(record), self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.seen.values())


@dataclass
class Outputs:
    """Everything the run produced that someone could read afterwards."""

    logs: str = ""
    cli: list[str] = field(default_factory=list)
    out: Path = Path()
    prefect_db: list[Path] = field(default_factory=list)
    config: Path = Path()
    subscription: str = ""


@contextmanager
def captured_at_debug() -> Iterator[Capture]:
    handler = Capture()
    loggers = [logging.getLogger(name) for name in CAPTURED_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        if logger.name not in ("root", "prefect"):
            logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def prefect_database_files() -> list[Path]:
    from prefect.settings import get_current_settings

    url = get_current_settings().server.database.connection_url
    location = Path(url.get_secret_value().split("///", 1)[1])
    return [path for path in location.parent.glob(f"{location.name}*") if path.is_file()]


@pytest.fixture(scope="module")
def outputs(prefect_harness, tmp_path_factory) -> Outputs:
    base = tmp_path_factory.mktemp("security")
    out = base / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(STATIC_TOKEN_ENV, BEARER_TOKEN)
        patch.setenv("AZURE_CLIENT_SECRET", CLIENT_SECRET)
        patch.setenv("MDECOST_COLLECT__MAX_RETRY_WAIT_SECONDS", "0.05")
        for name in ("MDECOST_LAKE__PATH", "MDECOST_WAREHOUSE__PATH", "MDECOST_CONFIG"):
            patch.delenv(name, raising=False)
        with simulated_azure(
            seed=11, machines=6, months=1, now=NOW, state_dir=base / "simulator"
        ) as simulator:
            assert simulator.token == BEARER_TOKEN
            config = base / "mdecost.toml"
            config.write_text(
                "[azure]\n"
                f'arm_endpoint = "{simulator.arm_endpoint}"\n'
                f'ca_bundle = "{simulator.ca_bundle}"\n'
                'credential = "static_token"\n'
                '[lake]\npath = "out/lake"\n'
                '[warehouse]\npath = "out/warehouse.duckdb"\n'
                '[report]\npath = "out/reports"\n'
                "[pricing]\n"
                f'retail_prices_endpoint = "{simulator.arm_endpoint}/api/retail/prices"\n'
            )
            # Warnings and error paths too: a retried 5xx, a retried truncated answer, a 404.
            simulator.faults.inject("server_error", "cost_query", times=1)
            simulator.faults.inject("truncated_json", "vm_list", times=1)
            unknown = "/subscriptions/00000000-0000-4000-8000-00000000beef"
            scopes = [unknown, *(f"/subscriptions/{s}" for s in simulator.estate.subscriptions)]
            commands = [
                ["config"],
                ["prices", "refresh"],
                ["collect", "--start", "2026-10-20", "--end", "2026-11-15",
                 "--as-of", "2026-11-15T12:00:00", *(f"--scope={scope}" for scope in scopes)],
                ["build"],
                ["report", "--month", "2026-10"],
            ]  # fmt: skip
            with captured_at_debug() as capture:
                runner = CliRunner()
                results = [
                    runner.invoke(app, [*args, "--config", str(config)]) for args in commands
                ]
                import_costs_to_lake([EXPORT], out / "lake")
                with pytest.raises(CostDataError) as refused:
                    import_costs_to_lake(
                        [Path(f"https://account.blob.core.windows.net/exports/a.csv?sv=2024&sig={SAS_SIGNATURE}")],
                        out / "lake",
                    )  # fmt: skip
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    codes = [result.exit_code for result in results]
    # Everything ran; collect exits 1 for the unknown scope it reports.
    assert codes == [0, 0, 1, 0, 0], [result.output for result in results]
    return Outputs(
        logs=capture.text,
        cli=[result.stdout + result.stderr for result in results] + [str(refused.value)],
        out=out,
        prefect_db=prefect_database_files(),
        config=config,
        subscription=simulator.estate.subscriptions[0],
    )


def decoded(path: Path) -> str:
    """A file's content as text, decoded from the storage formats that compress it."""
    if path.suffix == ".parquet":
        return repr(pl.read_parquet(path).rows())
    if path.suffix == ".duckdb":
        with duckdb.connect(str(path), read_only=True) as connection:
            tables = [row[0] for row in connection.sql("SHOW TABLES").fetchall()]
            return "\n".join(
                repr(connection.sql(f'SELECT * FROM "{table}"').fetchall()) for table in tables
            )
    if path.suffix == ".xlsx":
        with zipfile.ZipFile(path) as book:
            return "\n".join(book.read(name).decode("utf-8", "replace") for name in book.namelist())
    return path.read_bytes().decode("utf-8", "replace")


def test_the_run_produced_every_kind_of_output_and_the_search_can_see_into_it(outputs):
    files = [path for path in outputs.out.rglob("*") if path.is_file()]
    assert {".parquet", ".duckdb", ".html", ".csv", ".xlsx"} <= {path.suffix for path in files}
    # Positive controls: what the run did write is found by the same search.
    for suffix in (".parquet", ".duckdb", ".csv", ".xlsx", ".html"):
        assert any(outputs.subscription in decoded(p) for p in files if p.suffix == suffix), suffix
    config = str(outputs.config).encode()  # the flow run's parameter
    assert any(config in path.read_bytes() for path in outputs.prefect_db)
    # azure-core's HTTP logging was on, and it redacted the Authorization header.
    assert f"{HTTP_LOGGING} INFO Request URL" in outputs.logs
    assert "'Authorization': 'REDACTED'" in outputs.logs
    # The error paths ran: a retried 5xx was logged, the unknown scope reported.
    assert "page 1: 503 server error, waiting" in outputs.logs
    assert "could not read 1 scope(s)" in outputs.cli[2]
    assert outputs.prefect_db


@pytest.mark.parametrize("secret", SECRETS, ids=["bearer token", "client secret", "SAS"])
def test_no_secret_in_any_log_record_or_cli_output(outputs, secret):
    assert secret not in outputs.logs
    assert not [text for text in outputs.cli if secret in text]


@pytest.mark.parametrize("secret", SECRETS, ids=["bearer token", "client secret", "SAS"])
def test_no_secret_in_any_file_written(outputs, secret):
    files = [path for path in outputs.out.rglob("*") if path.is_file()]
    assert len(files) > 20
    assert [path for path in files if secret in decoded(path)] == []


@pytest.mark.parametrize("secret", SECRETS, ids=["bearer token", "client secret", "SAS"])
def test_no_secret_in_prefect_records(outputs, secret):
    for path in outputs.prefect_db:
        assert secret.encode() not in path.read_bytes(), path


def test_a_url_is_refused_without_its_query_string(outputs):
    assert outputs.cli[-1] == (
        "https:/account.blob.core.windows.net/exports/a.csv: a URL; mdecost imports export files "
        "on disk - download them first (the URL's query string is not shown: it may hold a SAS "
        "token)"
    )


# --- static_token only ever goes to this machine ----------------------------------------------
@pytest.mark.parametrize(
    "endpoint",
    [
        "https://management.azure.com",
        "https://management.usgovcloudapi.net",
        "https://localhost.example.com",
        "https://127.0.0.1.nip.io:8443",
        "https://10.0.0.4:8443",
        "https://0.0.0.0:8443",
    ],
)
def test_static_token_is_refused_for_an_endpoint_that_is_not_loopback(tmp_path, endpoint):
    config = tmp_path / "mdecost.toml"
    config.write_text(f'[azure]\narm_endpoint = "{endpoint}"\ncredential = "static_token"\n')
    with pytest.raises(ConfigError) as refused:
        load_settings(config)
    assert f"'static_token' is for emulators only and is refused for {endpoint}" in str(
        refused.value
    )
    # Settings made without load_settings are refused where the credential is built.
    settings = Settings(azure={"arm_endpoint": endpoint, "credential": "static_token"})
    with pytest.raises(ConfigError, match="'static_token' is for emulators only"):
        build_credential(settings)


@pytest.mark.parametrize(
    "endpoint", ["https://127.0.0.1:8443", "https://localhost:8443", "https://[::1]:8443"]
)
def test_static_token_is_accepted_for_loopback(tmp_path, monkeypatch, endpoint):
    monkeypatch.setenv(STATIC_TOKEN_ENV, BEARER_TOKEN)
    config = tmp_path / "mdecost.toml"
    config.write_text(f'[azure]\narm_endpoint = "{endpoint}"\ncredential = "static_token"\n')
    credential = build_credential(load_settings(config))
    assert credential.get_token("scope").token == BEARER_TOKEN
    assert BEARER_TOKEN not in repr(credential)


def test_an_environment_override_to_a_remote_endpoint_is_refused(tmp_path, monkeypatch):
    source = tmp_path / "mdecost.toml"
    source.write_text(
        '[azure]\narm_endpoint = "https://127.0.0.1:8443"\ncredential = "static_token"\n'
    )
    monkeypatch.setenv("MDECOST_AZURE__ARM_ENDPOINT", "https://management.azure.com")
    with pytest.raises(ConfigError, match=r"refused for https://management\.azure\.com"):
        load_settings(source)
