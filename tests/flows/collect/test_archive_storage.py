"""Power history from archive storage, against Azurite (Microsoft's storage emulator) on loopback.

The seam estate of `test_history` (one VM started and deallocated on Aug 14 and Aug 17 2026, the
Activity Log keeping events from Aug 17 12:00) is archived the way a diagnostic setting writes
it: one blob per subscription and hour in `insights-activity-logs`, records upper-cased, statuses
spelt Start / Accept / Success; most hours as JSON lines, one hour as an old `{"records": [...]}`
document. `collect` reads it with the real `azure-storage-blob` client through the connection
string named in `[history]`, then `build` must give the hours worked out by hand.
"""

import json
import os
import shutil
import socket
import subprocess
import time
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest
from azure.storage.blob import ContainerClient

from flows.build import build
from flows.collect import collect
from flows.lake import scan_dataset
from flows.simulator import wire
from flows.simulator.server import simulated_azure
from tests.flows.collect.test_history import NOW, SUBSCRIPTION, _env, _seam_estate

pytestmark = pytest.mark.simulator

REPO = Path(__file__).resolve().parents[3]
AZURITE = REPO / ".azurite" / "node_modules" / ".bin" / "azurite-blob"
# Azurite's documented development account and key (public, emulator only).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
CONNECTION_ENV = "MDECOST_TEST_ARCHIVE_CONNECTION"
DIAGNOSTIC_STATUS = {"Started": "Start", "Accepted": "Accept", "Succeeded": "Success"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def azurite(tmp_path_factory):
    """A blob-only Azurite on loopback for this module; its connection string."""
    if not AZURITE.exists():
        if shutil.which("npm") is None:
            pytest.skip("Azurite is not installed and npm is not available (make test installs it)")
        subprocess.run(
            [
                "npm",
                "install",
                "--prefix",
                str(REPO / ".azurite"),
                "--no-audit",
                "--no-fund",
                "--silent",
                "azurite@3",
            ],
            check=True,
            timeout=600,
        )
    port = _free_port()
    workdir = tmp_path_factory.mktemp("azurite")
    process = subprocess.Popen(
        [
            str(AZURITE),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            str(workdir),
            "--silent",
            "--skipApiVersionCheck",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("Azurite did not start") from None
                time.sleep(0.2)
        endpoint = f"http://127.0.0.1:{port}/{ACCOUNT}"
        yield (
            endpoint,
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={endpoint};",
        )
    finally:
        process.terminate()
        process.wait(timeout=10)


def _archive(estate, connection: str) -> int:
    """Write the estate's events as a diagnostic setting archives them; the blobs written."""
    container = ContainerClient.from_connection_string(connection, "insights-activity-logs")
    container.create_container()
    events = estate.activity_events().with_columns(hour=pl.col("event_at").dt.truncate("1h"))
    blobs = 0
    for (hour,), rows in events.sort("event_at").group_by("hour", maintain_order=True):
        records = [
            {
                "time": wire.timestamp(row["event_at"]),
                "resourceId": row["resource_id"].upper(),
                "operationName": row["operation_name"].upper(),
                "category": "Administrative",
                "resultType": DIAGNOSTIC_STATUS.get(row["status"], row["status"]),
                "resultSignature": row["status"] + ".",
                "correlationId": row["correlation_id"],
                "level": "Information",
            }
            for row in rows.iter_rows(named=True)
        ]
        name = (
            f"resourceId=/SUBSCRIPTIONS/{SUBSCRIPTION.upper()}/y={hour:%Y}/m={hour:%m}/"
            f"d={hour:%d}/h={hour:%H}/m=00/PT1H.json"
        )
        if hour == datetime(2026, 8, 14, 8, tzinfo=UTC):
            body = json.dumps({"records": records})  # the layout before November 2018
        else:
            body = "\n".join(json.dumps(record) for record in records) + "\n"
        container.upload_blob(name, body.encode())
        blobs += 1
    return blobs


def _storage_setting(endpoint: str) -> str:
    return json.dumps([{"account_url": endpoint, "connection_string_env": CONNECTION_ENV}])


def _run(tmp_path, azurite, *, workspace: bool):
    endpoint, connection = azurite
    estate = _seam_estate()
    with (
        simulated_azure(estate=estate, state_dir=tmp_path / "sim", history=workspace) as sim,
        pytest.MonkeyPatch.context() as patch,
    ):
        _env(patch, tmp_path)
        patch.setenv("MDECOST_HISTORY__STORAGE", _storage_setting(endpoint))
        patch.setenv(CONNECTION_ENV, connection)
        collect(
            start=date(2026, 8, 1), end=date(2026, 11, 16), as_of=NOW, config_file=sim.config_path
        )
        built = build(config_file=sim.config_path)
    with duckdb.connect(str(built.warehouse), read_only=True) as con:
        hours = pl.from_arrow(
            con.sql(
                "SELECT usage_date, billable_hours FROM machine_hours_daily WHERE usage_date "
                "BETWEEN DATE '2026-08-13' AND DATE '2026-08-18' ORDER BY usage_date"
            ).to_arrow_table()
        )
    return hours, scan_dataset(tmp_path / "lake", "power_events").collect().sort("event_at")


@pytest.fixture(scope="module")
def archived(azurite):
    return _archive(_seam_estate(), azurite[1])


def test_the_archive_gives_the_hours_worked_out_by_hand(
    archived, azurite, prefect_harness, tmp_path
):
    # 12 events (2 days x (start, deallocate) x (Started, Accepted, Succeeded)) in 4 hours:
    # 08:00 and 18:00 of Aug 14 and of Aug 17.
    assert archived == 4
    hours, events = _run(tmp_path, azurite, workspace=False)
    # As in test_history: running 08:02-18:00 = 598 minutes on Aug 14 and Aug 17, else 0.
    assert hours["billable_hours"].to_list() == pytest.approx(
        [0, 598 / 60, 0, 0, 598 / 60, 0], abs=1e-9
    )
    aug17 = events.filter(pl.col("event_at").dt.date() == date(2026, 8, 17))
    assert aug17.select("operation", "source").unique(maintain_order=True).rows() == [
        ("start", "archive_storage"),
        ("deallocate", "activity_log"),
    ]
    # Each event once: 12 in all. The API holds only Aug 17's deallocation (after 12:00), 3
    # events; the other 9 are the archive's, with the ids made from what identifies them.
    assert events.height == 12
    assert events["event_data_id"].str.starts_with("archive-").sum() == 9


def test_with_a_workspace_too_the_archive_adds_no_event(
    archived, azurite, prefect_harness, tmp_path
):
    hours, events = _run(tmp_path, azurite, workspace=True)
    assert hours["billable_hours"].to_list() == pytest.approx(
        [0, 598 / 60, 0, 0, 598 / 60, 0], abs=1e-9
    )
    # Both history sources hold the start of Aug 14 and 17 and the deallocation of Aug 14:
    # the workspace's rows are kept (it ranks above the archive), each event once.
    assert events.height == 12
    assert set(events["source"]) == {"log_analytics", "activity_log"}
    assert os.environ.get(CONNECTION_ENV) is None  # the secret was only set for the run
