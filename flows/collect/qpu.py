"""A tenant's Cost Management QPU budget, shared by every task of every run on one lake.

Cost Management counts query processing units (QPU) per tenant in three sliding windows (10 s,
1 min, 1 h; `transforms.billing.QPU_WINDOWS`). Answering 429s after the fact wastes the
quota's time and, in a backfill, loses months; so each query first *reserves* its QPU in a
ledger and waits until every window has room for it, then settles the reservation with what
the answer says it cost (`-qpu-consumed`). The answer's `-qpu-remaining` also says what other
tools of the tenant used: the difference is booked as theirs, so mdecost paces around them.

The ledger is a small JSON file beside the lake (`state/qpu/<tenant>.json`) under an exclusive
`flock`: tasks share it through the file system only (no in-process state), so the threads of
one run, several runs and several worker processes on the machine share one budget. A request
is booked only when it may be sent at once; an answered one is booked at the instant its answer
came back (its request reached the service before then, however long it travelled), one still in
flight as if it reached the service now, so the client's windows never end before Azure's do.

`scale` shrinks every window (the simulator's benchmark runs Azure's hour in seconds); it is 1
against Azure.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transforms.billing import QPU_CONSUMED_HEADER, QPU_REMAINING_HEADER, QPU_WINDOWS

LEDGER_FOLDER = Path("state") / "qpu"
# Requests take different times to reach the service: each window is taken this much longer
# than Azure's, so a request sent on time never arrives inside the window it waited out.
WINDOW_MARGIN = 0.1
OTHERS = "others"
# A window's name in the remaining header -> its length in seconds (by the unit it names).
_WINDOW_UNITS = (("hour", 3600.0), ("min", 60.0), ("sec", 10.0))
_PAIR = re.compile(r"\s*([^:,]+?)\s*:\s*(-?\d+(?:\.\d+)?)\s*")


def ledger_path(lake: Path, tenant: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", tenant) or "default"
    return lake / LEDGER_FOLDER / f"{safe}.json"


def remaining_by_window(value: str | None) -> dict[float, float]:
    """`-qpu-remaining` as {window seconds: QPU left}; pairs naming no known unit are ignored."""
    remaining: dict[float, float] = {}
    for pair in (value or "").split(","):
        match = _PAIR.fullmatch(pair)
        if not match:
            continue
        name = match.group(1).lower()
        for unit, seconds in _WINDOW_UNITS:
            if unit in name:
                remaining[seconds] = float(match.group(2))
                break
    return remaining


def consumed(headers: Mapping[str, str]) -> float | None:
    for name, value in headers.items():
        if name.lower() == QPU_CONSUMED_HEADER:
            try:
                return float(value)
            except ValueError:
                return None
    return None


def remaining(headers: Mapping[str, str]) -> dict[float, float]:
    for name, value in headers.items():
        if name.lower() == QPU_REMAINING_HEADER:
            return remaining_by_window(value)
    return {}


@dataclass
class Reservation:
    key: str
    at: float


class QpuBudget:
    """Reserve, wait, settle: one tenant's QPU windows, kept in `path`."""

    def __init__(
        self,
        path: Path,
        *,
        scale: float = 1.0,
        windows: tuple[tuple[float, int], ...] = QPU_WINDOWS,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.path = path
        self.scale = scale
        self.windows = tuple(
            (seconds * scale * (1 + WINDOW_MARGIN), limit) for seconds, limit in windows
        )
        self._clock = clock
        self._sleep = sleep

    @contextmanager
    def _ledger(self) -> Iterator[list[dict[str, Any]]]:
        """The ledger's entries, locked; written back when the block ends."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_suffix(".lock")
        with open(lock, "a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                try:
                    entries = json.loads(self.path.read_text())["entries"]
                except (FileNotFoundError, ValueError, KeyError, TypeError):
                    entries = []
                horizon = self._clock() - max(seconds for seconds, _ in self.windows)
                entries = [entry for entry in entries if entry["at"] > horizon]
                yield entries
                staging = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}")
                staging.write_text(json.dumps({"entries": entries}))
                os.replace(staging, self.path)
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _earliest(self, entries: list[dict[str, Any]], now: float, cost: float) -> float:
        """The first instant >= `now` when every window ending then has room for `cost`.

        A settled entry stands at the instant its answer came back (its request reached the
        service before that); one still in flight at `now` (it may reach the service as late).
        """
        times = [(max(e["at"], now) if e.get("open") else e["at"], e["qpu"]) for e in entries]
        at = now
        while True:
            later = at
            for seconds, limit in self.windows:
                inside = sorted((t, q) for t, q in times if at - seconds < t)
                used = sum(q for _, q in inside)
                for t, q in inside:
                    if used + cost <= limit:
                        break
                    used -= q
                    later = max(later, t + seconds)
            if later == at:
                return at
            at = later + 1e-6

    def reserve(self, cost: float = 1.0) -> tuple[Reservation, float]:
        """Book `cost` QPU as soon as every window has room for it, sleeping until then.

        Returns the reservation and the seconds waited. Several waiters wake, the first to take
        the ledger's lock books, the others look again.
        """
        waited = 0.0
        key = uuid.uuid4().hex
        while True:
            with self._ledger() as entries:
                now = self._clock()
                at = self._earliest(entries, now, cost)
                if at <= now:
                    entries.append({"at": now, "qpu": cost, "who": key, "open": True})
                    return Reservation(key, now), waited
            self._sleep(at - now)
            waited += at - now

    def settle(self, reservation: Reservation, headers: Mapping[str, str]) -> float:
        """Book what the answer says the query cost, and what others used; the QPU it cost."""
        cost = consumed(headers)
        left = remaining(headers)
        with self._ledger() as entries:
            now = self._clock()
            mine = next((e for e in entries if e["who"] == reservation.key), None)
            if mine is not None:
                mine.update(at=now, open=False)
                if cost is not None:
                    mine["qpu"] = cost
            for seconds, limit in self.windows:
                unscaled = round(seconds / self.scale / (1 + WINDOW_MARGIN), 6)
                if unscaled not in left:
                    continue
                booked = sum(e["qpu"] for e in entries if now - seconds < e["at"] <= now)
                others = (limit - left[unscaled]) - booked
                if others > 0:
                    entries.append({"at": now, "qpu": others, "who": OTHERS})
        return cost if cost is not None else (mine["qpu"] if mine else 0.0)

    def release(self, reservation: Reservation) -> None:
        """Drop a reservation whose request never reached the service (a connection error)."""
        with self._ledger() as entries:
            entries[:] = [e for e in entries if e["who"] != reservation.key]
