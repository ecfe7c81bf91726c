"""Cost Management export runs read from a storage account (Azurite, on loopback).

A run is written as Cost Management writes one: `<root>/<export>/<YYYYMMDD-YYYYMMDD>/<run id>/`
with its data file and a `manifest.json` naming the export, run, period, dataset and files. The
data is the handmade FOCUS 1.2 file of `tests/fixtures/exports`: four June 2025 rows of one
subscription billed 0.48 + 0.16128 + 4.2 + 0 = 4.84128.
"""

import json
import logging
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from azure.core.rest import HttpRequest
from azure.storage.blob import ContainerClient

from flows.azure_clients import AzureClients
from flows.collect import collect_export_runs
from flows.collect.export_api import backfill, create_daily_export, export_url
from flows.collect.scopes import Month
from flows.collect.throttling import RetriesExhausted, RetryLimits
from flows.lake import scan_dataset
from tests.flows.collect.test_archive_storage import azurite  # noqa: F401 (a fixture)

pytestmark = pytest.mark.simulator

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "exports" / "FOCUS-1.2_handmade.csv"
CONNECTION_ENV = "MDECOST_TEST_EXPORTS_CONNECTION"
ROOT = "exports/focus"


def write_run(container: ContainerClient, run_id: str, submitted: str, data: bytes) -> str:
    folder = f"{ROOT}/defender-daily/20250601-20250630/{run_id}"
    part = f"{folder}/part_0_0001.csv"
    container.upload_blob(part, data, overwrite=True)
    manifest = {
        "manifestVersion": "2024-04-01",
        "exportConfig": {
            "exportName": "defender-daily",
            "resourceId": "/subscriptions/3f2b6a1c-9d4e-4c1b-8e7f-2a5d9c0e1b34",
            "dataVersion": "1.2",
            "type": "FocusCost",
            "timeFrame": "MonthToDate",
            "granularity": "Daily",
        },
        "deliveryConfig": {"partitionData": True, "fileFormat": "Csv", "compressionMode": "None"},
        "runInfo": {
            "executionType": "Scheduled",
            "submittedTime": submitted,
            "runId": run_id,
            "startDate": "2025-06-01T00:00:00",
            "endDate": "2025-06-30T00:00:00",
        },
        "blobs": [{"blobName": part, "byteCount": len(data)}],
    }
    container.upload_blob(f"{folder}/manifest.json", json.dumps(manifest), overwrite=True)
    return part


@pytest.fixture
def exports(azurite, tmp_path, monkeypatch):  # noqa: F811 (the fixture imported above)
    endpoint, connection = azurite
    name = f"costs{tmp_path.name.replace('_', '').lower()[-20:]}"
    container = ContainerClient.from_connection_string(connection, name)
    container.create_container()
    monkeypatch.setenv(CONNECTION_ENV, connection)
    config = tmp_path / "mdecost.toml"
    config.write_text(
        '[lake]\npath = "lake"\n'
        "[[exports.sources]]\n"
        f'account_url = "{endpoint}"\ncontainer = "{name}"\ndirectory = "{ROOT}"\n'
        f'connection_string_env = "{CONNECTION_ENV}"\n'
    )
    return container, config, tmp_path / "lake"


def collect_runs(config: Path):
    return collect_export_runs.fn(config, "the test's exports", 0)


def billed(lake: Path) -> float:
    return round(scan_dataset(lake, "costs").collect()["billed_cost"].sum(), 9)


def test_a_run_is_imported_once_and_a_newer_run_of_the_month_replaces_it(exports):
    container, config, lake = exports
    data = FIXTURE.read_bytes()
    write_run(container, "run-1", "2025-06-02T03:00:00Z", data)

    first = collect_runs(config)
    assert (first.failure, first.rows) == (None, 4)
    assert billed(lake) == 4.84128

    again = collect_runs(config)
    assert again.rows == 0 and again.skipped == "no new run (1 already imported)"
    assert billed(lake) == 4.84128

    # The next day's run restates the P2 row from 0.48 to 0.96: 4.84128 - 0.48 + 0.96 = 5.32128.
    assert data.count(b"\n0.48,") == 1
    write_run(container, "run-2", "2025-06-03T03:00:00Z", data.replace(b"\n0.48,", b"\n0.96,"))
    newer = collect_runs(config)
    assert (newer.failure, newer.rows) == (None, 4)
    assert billed(lake) == 5.32128
    assert scan_dataset(lake, "costs").collect().height == 4


def test_a_corrupt_run_is_refused_naming_the_blob_and_the_lake_is_left_as_it_was(exports):
    container, config, lake = exports
    write_run(container, "run-1", "2025-06-02T03:00:00Z", FIXTURE.read_bytes())
    assert collect_runs(config).failure is None
    garbled = FIXTURE.read_bytes().replace(b"\n0.48,", b"\nzero point 48,")
    part = write_run(container, "run-2", "2025-06-03T03:00:00Z", garbled)

    with pytest.raises(Exception, match=rf"the test's exports/{part}") as refused:
        collect_runs(config)
    assert "mdecost-export-" not in str(refused.value)  # no scratch path, the blob's name
    assert billed(lake) == 4.84128


def test_the_simulators_exports_api_writes_runs_that_collect_imports_and_a_backfill_resumes(
    simulator,
    azurite,  # noqa: F811 (the fixture imported above)
    tmp_path,
    monkeypatch,
):
    endpoint, connection = azurite
    name = f"sim{tmp_path.name.replace('_', '').lower()[-20:]}"
    ContainerClient.from_connection_string(connection, name).create_container()
    simulator.export_storage = lambda account, container: ContainerClient.from_connection_string(
        connection, container
    )
    monkeypatch.setenv(CONNECTION_ENV, connection)
    settings = simulator.settings()
    client = AzureClients(settings).cost()
    limits, log = RetryLimits(1, 0.0), logging.getLogger("test")
    subscription = simulator.estate.subscriptions[0]
    scope = f"/subscriptions/{subscription}"
    storage = "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st"
    destination = (storage, name, "focus")
    lake = tmp_path / "lake"

    # A daily export, run once (Azure runs it each day): November 1 to 14 (month to date).
    create_daily_export(
        client, settings.azure.arm_endpoint, scope, "daily", destination,
        starts="2026-11-01T00:00:00Z", limits=limits, log=log,
    )  # fmt: skip
    run = client.send_request(
        HttpRequest("POST", export_url(settings.azure.arm_endpoint, scope, "daily", "/run"))
    )
    assert run.status_code == 200

    # A backfill of August to October whose September run fails (twice: a try and its one
    # retry); run again, it resumes with September.
    months = [Month(2026, 8), Month(2026, 9), Month(2026, 10)]
    before = simulator.requests["export_run"]

    def fail_after_august(line: str) -> None:
        if line.startswith("2026-08: export run requested"):
            simulator.faults.inject("server_error", "export_run", times=2)

    args = (client, settings.azure.arm_endpoint, scope, "backfill", destination, months, lake)
    with pytest.raises(RetriesExhausted, match="one-time export backfill-202609"):
        backfill(*args, limits=limits, log=log, progress=fail_after_august)
    assert backfill(*args, limits=limits, log=log) == ["2026-09", "2026-10"]
    assert backfill(*args, limits=limits, log=log) == []  # all done: nothing asked again
    # August once, September's two failures and its run, October once.
    assert simulator.requests["export_run"] - before == 1 + 2 + 1 + 1

    config = tmp_path / "mdecost.toml"
    config.write_text(
        f'[lake]\npath = "{lake}"\n'
        "[[exports.sources]]\n"
        f'account_url = "{endpoint}"\ncontainer = "{name}"\ndirectory = "focus"\n'
        f'connection_string_env = "{CONNECTION_ENV}"\n'
    )
    result = collect_runs(config)
    assert result.failure is None and result.pages == 4  # four runs imported
    costs = scan_dataset(lake, "costs").collect()
    truth = simulator.estate.cost_rows(as_of=simulator.clock).filter(
        (pl.col("subscription_id") == subscription)
        & pl.col("usage_date").is_between(date(2026, 8, 1), date(2026, 11, 14))
    )
    assert costs["billed_cost"].sum() == pytest.approx(truth["cost"].sum())
