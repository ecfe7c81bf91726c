"""The `mdecost` process and Prefect's temporary server (issue 13): killed with SIGKILL or
SIGTERM, a command leaves no server behind; SIGTERM ends it as Ctrl-C does; the server's
telemetry is off unless asked for; a refusal is one line, without Prefect's traceback.

Each test runs the real command (`.venv/bin/mdecost build`) with no PREFECT_API_URL, so it
starts its own temporary server (in a PREFECT_HOME of the test's own), and holds the warehouse's
build lock meanwhile, so the build sits waiting for it (up to 30 s) until the test stops it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.warehouse import build_lock

MDECOST = Path(sys.executable).with_name("mdecost")
pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def children(pid: int) -> dict[int, str]:
    """The live child processes of `pid`: pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            if int(parent) == pid and state != "Z":
                found[int(entry.name)] = (entry / "cmdline").read_text().replace("\0", " ")
        except (OSError, ValueError):
            continue
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def environment(tmp_path: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "MDECOST_"))
    }
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect"),
        MDECOST_LAKE__PATH=str(tmp_path / "lake"),
        MDECOST_WAREHOUSE__PATH=str(tmp_path / "warehouse.duckdb"),
    )
    return env


def started_build(tmp_path: Path) -> tuple[subprocess.Popen[str], int, Path]:
    """`mdecost build` waiting for the build lock, the pid of its temporary server, and the
    file its output goes to."""
    (tmp_path / "mdecost.toml").write_text("")
    output = tmp_path / "output.txt"
    with output.open("w") as sink:
        command = subprocess.Popen(
            [str(MDECOST), "build"],
            cwd=tmp_path,
            env=environment(tmp_path),
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        servers = [pid for pid, line in children(command.pid).items() if "uvicorn" in line]
        if servers and "Beginning flow run" in output.read_text():
            return command, servers[0], output
        if command.poll() is not None:
            break
        time.sleep(0.2)
    command.kill()
    command.wait()
    raise AssertionError(f"no build waiting with a server:\n{output.read_text()}")


def wait_until_gone(pid: int, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_stopped_build_leaves_no_prefect_server_running(tmp_path, stop):
    with build_lock(tmp_path / "warehouse.duckdb"):
        command, server, output = started_build(tmp_path)
        environ = Path(f"/proc/{server}/environ").read_bytes().split(b"\0")
        # No telemetry: Prefect passes the setting on to its server in its own spelling.
        analytics = [line.lower() for line in environ if b"ANALYTICS" in line]
        assert analytics == [b"prefect_server_analytics_enabled=false"]
        os.kill(command.pid, stop)
        command.wait(timeout=30)
        assert wait_until_gone(server), f"server {server} still running:\n{output.read_text()}"
    if stop == signal.SIGTERM:
        # Handled as Ctrl-C: the command unwinds (Prefect stops its server itself).
        assert command.returncode == 130, output.read_text()
        assert "Stopping temporary server" in output.read_text()


def test_a_refusal_is_one_line_without_prefects_traceback(tmp_path):
    (tmp_path / "mdecost.toml").write_text("")
    result = subprocess.run(
        [str(MDECOST), "build"],
        cwd=tmp_path,
        env=environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    refusal = (
        f"error: no lake at {tmp_path / 'lake'}: check [lake] path (or MDECOST_LAKE__PATH); "
        "pass --allow-empty to build an empty warehouse on purpose"
    )
    assert refusal in output.splitlines()
