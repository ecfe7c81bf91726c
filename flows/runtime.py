"""What the `mdecost` process arranges around Prefect before a command runs.

- **Files only for their owner.** The lake and the warehouse hold cost data, the reports too,
  and the simulator's state folder its bearer token: every file and folder the command creates
  is 0600 / 0700 (`private_files`: group and others are taken out of the umask; a stricter
  umask stays). To share a lake with a team, grant access on its folder (a group, an ACL):
  mdecost never widens what it created.
- **Telemetry off unless asked for.** Prefect's local server reports anonymous usage to Prefect
  by default; `PREFECT_SERVER_ANALYTICS_ENABLED=false` is set unless the environment already
  says otherwise (`telemetry_off_by_default`).
- **SIGTERM is SIGINT.** A `kill` or a service manager's stop unwinds the command the way Ctrl-C
  does: `finally` blocks and `atexit` handlers run, so locks are released, staging files removed
  and Prefect's temporary server stopped (`sigterm_as_interrupt`).
- **The temporary Prefect server dies with the command.** The first flow run of a process with
  no `PREFECT_API_URL` starts a local API server as a child process (about 200 MB and a
  listening port). Prefect stops it at exit, but a SIGKILL (the OOM killer, `kill -9`) leaves it
  running for ever under PID 1. `tie_temporary_server` starts it up front and starts beside it a
  small watchdog process that notices when the command is gone and stops the server (Linux:
  it reads `/proc`; elsewhere it does nothing and Prefect's own exit handler is all there is).
- **Refusals are one line.** Prefect logs the traceback of any exception that ends a flow or a
  task. For the errors a command prints as its one-line refusal (a bad lake, a busy lock, a
  missing price) that traceback is noise that reads like a crash; `refusals_without_traceback`
  keeps the log line and drops the traceback, for those exception types only.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Final

ANALYTICS_SETTING: Final = "PREFECT_SERVER_ANALYTICS_ENABLED"
WATCH_SECONDS: Final = 0.5


def private_files() -> None:
    """Create every file 0600 and folder 0700: no group or other bits in the umask."""
    current = os.umask(0o077)
    os.umask(current | 0o077)


def telemetry_off_by_default() -> None:
    """Prefect's server analytics off, unless the environment already sets them."""
    os.environ.setdefault(ANALYTICS_SETTING, "false")


def sigterm_as_interrupt() -> None:
    """Handle SIGTERM as SIGINT: raise KeyboardInterrupt in the main thread."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, interrupt)


def _start_time(pid: int) -> str | None:
    """A process's start time (field 22 of /proc/<pid>/stat): with the pid, who it is, so a
    reused pid is never taken for the server. None: no such process, or no /proc."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def watch(parent: int, server: int, started: str) -> None:
    """The watchdog's loop (its own process): wait while `parent` (the command) lives, then stop
    `server` if it is still the process that started at `started` (SIGTERM, SIGKILL after 10 s).
    """
    while os.getppid() == parent:
        if _start_time(server) != started:
            return
        time.sleep(WATCH_SECONDS)
    if _start_time(server) != started:
        return
    os.kill(server, signal.SIGTERM)
    for _ in range(100):
        time.sleep(0.1)
        if _start_time(server) != started:
            return
    os.kill(server, signal.SIGKILL)


def tie_temporary_server() -> None:
    """Start Prefect's temporary server now (the one the first flow run would start) and a
    watchdog that stops it if this process dies without stopping it. Nothing to do when
    `PREFECT_API_URL` names a server, or ephemeral servers are off."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return
    # Imported only here: the server's modules take ~2 s to import, and a command that talks
    # to a running server (PREFECT_API_URL) never needs them.
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # one per process: the flow runs will use this one
    server.start()
    if server.server_process is None:
        return
    started = _start_time(server.server_process.pid)
    if started is None:  # no /proc: not Linux
        return
    pid = server.server_process.pid
    subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from flows.runtime import watch; watch({os.getpid()}, {pid}, {started!r})",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C to the terminal's group is the command's to handle
    )


class _WithoutTraceback(logging.Filter):
    def __init__(self, refusals: tuple[type[BaseException], ...]) -> None:
        super().__init__()
        self.refusals = refusals

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], self.refusals):
            record.exc_info = None
            record.exc_text = None
        return True


def refusals_without_traceback(*refusals: type[BaseException]) -> None:
    """Drop the traceback Prefect logs for flow and task runs ended by one of `refusals`."""
    quiet = _WithoutTraceback(refusals)
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).addFilter(quiet)
