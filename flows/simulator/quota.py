"""Cost Management's per-tenant QPU quota, as the simulator serves it.

Every cost query of a tenant is counted in three sliding windows (10 s, 1 min, 1 h; limits
`transforms.billing.QPU_WINDOWS`), one QPU per month of data a query spans. Every answer says
what it cost and what is left in each window (`-qpu-consumed`, `-qpu-remaining`); with
`enforce` on, a query that would take a window past its limit is answered 429 with the seconds
until it fits in `-qpu-retry-after` (and its siblings), as Azure does, and costs nothing.

`scale` shrinks the windows (0.01: an hour lasts 36 s) so a benchmark of a 13-month backfill
runs in seconds; the simulator's mdecost.toml carries the same scale, so the client paces to the
windows the simulator enforces. `accepted` keeps the instant and cost of every query answered,
for tests that check no window was ever exceeded.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from transforms.billing import QPU_CONSUMED_HEADER, QPU_REMAINING_HEADER, QPU_WINDOWS

RETRY_AFTER_HEADERS = (
    "x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after",
    "x-ms-ratelimit-microsoft.costmanagement-entity-retry-after",
    "x-ms-ratelimit-microsoft.costmanagement-tenant-retry-after",
    "x-ms-ratelimit-microsoft.costmanagement-clienttype-retry-after",
)
# The window names in `-qpu-remaining` (the service's own names are undocumented; mdecost matches
# a name by the unit it contains).
WINDOW_NAMES = {
    10.0: "QueryPerTenantPer10Seconds",
    60.0: "QueryPerTenantPer1Min",
    3600.0: "QueryPerTenantPer1Hour",
}


@dataclass
class QpuQuota:
    """The QPU windows of every tenant the simulator serves."""

    enforce: bool = False
    scale: float = 1.0
    clock: Callable[[], float] = time.monotonic
    accepted: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    refused: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def windows(self) -> list[tuple[float, float, int]]:
        """(Azure's window seconds, the simulator's, limit) of each window."""
        return [(seconds, seconds * self.scale, limit) for seconds, limit in QPU_WINDOWS]

    def _used(self, tenant: str, now: float, length: float) -> float:
        return sum(q for at, q in self.accepted.get(tenant, []) if now - length < at <= now)

    def admit(self, tenant: str, cost: float) -> tuple[int, dict[str, str]]:
        """(status, headers) of a query costing `cost` QPU now: 200 and the quota left, or 429
        and how long to wait."""
        with self._lock:
            now = self.clock()
            if self.enforce:
                wait = 0.0
                for _, length, limit in self.windows():
                    inside = sorted(
                        (at, q) for at, q in self.accepted.get(tenant, []) if now - length < at
                    )
                    used = sum(q for _, q in inside)
                    for at, q in inside:
                        if used + cost <= limit:
                            break
                        used -= q
                        wait = max(wait, at + length - now)
                if wait > 0:
                    self.refused += 1
                    seconds = str(max(1, math.ceil(wait)))
                    headers = {name: seconds for name in RETRY_AFTER_HEADERS}
                    headers[QPU_CONSUMED_HEADER] = "0"
                    headers[QPU_REMAINING_HEADER] = self._remaining(tenant, now)
                    return 429, headers
            self.accepted.setdefault(tenant, []).append((now, cost))
            return 200, {
                QPU_CONSUMED_HEADER: f"{cost:g}",
                QPU_REMAINING_HEADER: self._remaining(tenant, now),
            }

    def _remaining(self, tenant: str, now: float) -> str:
        return ",".join(
            f"{WINDOW_NAMES[seconds]}:{max(0.0, limit - self._used(tenant, now, length)):g}"
            for seconds, length, limit in self.windows()
        )

    def busiest(self, tenant: str) -> dict[float, float]:
        """The most QPU any window of each length ever held (Azure's window seconds -> QPU)."""
        with self._lock:
            entries = sorted(self.accepted.get(tenant, []))
        peaks: dict[float, float] = {}
        for seconds, length, _ in self.windows():
            peak, first, used = 0.0, 0, 0.0
            for at, q in entries:
                used += q
                while entries[first][0] <= at - length:
                    used -= entries[first][1]
                    first += 1
                peak = max(peak, used)
            peaks[seconds] = peak
        return peaks

    def used(self, tenant: str) -> float:
        with self._lock:
            return sum(q for _, q in self.accepted.get(tenant, []))
