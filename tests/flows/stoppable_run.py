"""Run one mdecost flow in this process and stop it at a chosen point: SIGKILL, or a pause.

The interruption and concurrency tests start it as `python stoppable_run.py '<json spec>'`. The
instrumentation lives here only: it wraps what the product calls (`os.replace`,
`pyarrow.parquet.write_table`, the warehouse's table writes) so that the n-th call at a point
either SIGKILLs this process (no `finally`, no cleanup: like the OOM killer or a power cut) or
prints that it got there and waits for a line on stdin (a run held in place, for a second run to
meet). Counting is by call, not by time, so a kill point is the same on every machine.

Spec: `{"flow": "collect" | "refresh" | "build", "arguments": {...}, "point": <point>,
"nth": n, "action": "kill" | "pause"}`. Points:
- `torn_partition_write`: the n-th lake partition write stops half-way through its staging file.
- `partition_replace`: just before the n-th lake partition replaces the old one.
- `after_partition_replace`: just after the n-th lake partition replaced the old one.
- `warehouse_table`: just after the n-th table write (a table, or a chunk's rows of one)
  in the warehouse being built.
- `warehouse_swap`: just before the new warehouse replaces the published one.

Before stopping it prints `STOPPED <point> #<n>: <file>` on stdout; a run that ends prints
`FINISHED`. The Prefect API is the one in `PREFECT_API_URL` (the test session's server).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

import flows.warehouse
from flows.lake import PARTITION_FILE

POINTS = (
    "torn_partition_write",
    "partition_replace",
    "after_partition_replace",
    "warehouse_table",
    "warehouse_swap",
)


class StopAt:
    """Counts calls at one point and stops the process at the n-th.

    `lock` is held while stopping, and around each whole partition replace, so no other thread
    of the run gets past the point meanwhile: exactly n-1 calls have completed, whatever the
    task threads' timing.
    """

    def __init__(self, point: str, nth: int, action: str) -> None:
        self.point, self.nth, self.action = point, nth, action
        self.calls = 0
        self.lock = threading.RLock()

    def reached(self, point: str, detail: str, then: Callable[[], Any] = lambda: None) -> bool:
        """Count a call at `point`; at the n-th, run `then` and stop. False if not stopping."""
        if point != self.point:
            return False
        with self.lock:
            self.calls += 1
            if self.calls != self.nth:
                return False
            then()
            print(f"STOPPED {point} #{self.nth}: {detail}", flush=True)
            if self.action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            sys.stdin.readline()
            return True


def instrument(stop: StopAt) -> None:
    real_replace = os.replace
    real_write_table = pq.write_table
    real_append_table = flows.warehouse._append_table

    def replace(source: Any, target: Any, **options: Any) -> None:
        if Path(target).name == PARTITION_FILE:
            with stop.lock:
                stop.reached("partition_replace", str(target))
                real_replace(source, target, **options)
                stop.reached("after_partition_replace", str(target))
            return
        if Path(source).name.endswith(".building"):
            stop.reached("warehouse_swap", str(target))
        real_replace(source, target, **options)

    def write_table(table: pa.Table, where: Any, *args: Any, **options: Any) -> None:
        def torn_write() -> None:
            whole = pa.BufferOutputStream()
            real_write_table(table, whole, *args, **options)
            data = whole.getvalue().to_pybytes()
            with open(where, "wb") as handle:
                handle.write(data[: len(data) // 2])
                handle.flush()
                os.fsync(handle.fileno())

        if not stop.reached("torn_partition_write", str(where), then=torn_write):
            real_write_table(table, where, *args, **options)

    def append_table(con: Any, qualified_name: str, table: Any, create: bool) -> None:
        real_append_table(con, qualified_name, table, create)
        stop.reached("warehouse_table", qualified_name)

    os.replace = replace
    pq.write_table = write_table
    flows.warehouse._append_table = append_table


def run(flow: str, arguments: dict[str, Any]) -> None:
    config_file = Path(arguments["config_file"])
    if flow == "build":
        from flows.build import build

        build(config_file=config_file)
        return
    window = {
        "start": date.fromisoformat(arguments["start"]),
        "end": date.fromisoformat(arguments["end"]),
        "as_of": datetime.fromisoformat(arguments["as_of"]),
        "scopes": arguments.get("scopes"),
        "config_file": config_file,
    }
    if flow == "collect":
        from flows.collect import collect

        collect(**window)
    elif flow == "refresh":
        from flows.pipeline import refresh

        refresh(**window)
    else:
        raise SystemExit(f"unknown flow {flow!r}: collect, refresh or build")


def main() -> None:
    spec = json.loads(sys.argv[1])
    if spec["point"] not in POINTS:
        raise SystemExit(f"unknown point {spec['point']!r}; known: {', '.join(POINTS)}")
    if spec["action"] == "pause" and spec["point"] == "torn_partition_write":
        raise SystemExit("a torn write cannot be resumed: kill at torn_partition_write")
    instrument(StopAt(spec["point"], spec["nth"], spec["action"]))
    run(spec["flow"], spec["arguments"])
    print("FINISHED", flush=True)


if __name__ == "__main__":
    main()
