"""`mdecost simulator serve`: runs in the foreground, and the config it writes works for the SDK."""

import signal
import subprocess
import sys

import pytest

from flows.azure_clients import AzureClients
from flows.config import load_settings

pytestmark = pytest.mark.simulator


def test_serve_writes_a_working_config_and_stops_on_ctrl_c(tmp_path, monkeypatch):
    monkeypatch.delenv("MDECOST_STATIC_TOKEN", raising=False)
    state_dir = tmp_path / "sim"
    command = [
        sys.executable,
        "-c",
        "from flows.cli import main; main()",
        "simulator",
        "serve",
        "--port",
        "0",
        "--machines",
        "6",
        "--months",
        "1",
        "--seed",
        "3",
        "--now",
        "2026-11-15T12:00:00Z",
        "--state-dir",
        str(state_dir),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [process.stdout.readline() for _ in range(5)]
        assert lines[0].startswith("Simulated Azure: 6 machines in 5 subscriptions, 2026-10-15")
        endpoint = lines[1].split()[1]
        assert endpoint.startswith("https://127.0.0.1:")
        assert (state_dir / "ca.pem").exists()
        settings = load_settings(state_dir / "mdecost.toml")
        assert settings.azure.arm_endpoint == endpoint
        assert settings.azure.credential == "static_token"
        assert settings.pricing.retail_prices_endpoint == f"{endpoint}/api/retail/prices"
        assert settings.lake.path == state_dir / "lake"
        subscriptions = list(AzureClients(settings).subscriptions().subscriptions.list())
        assert len(subscriptions) == 5
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert "stopped" in out
