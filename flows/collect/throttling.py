"""Answering Cost Management throttling and server errors: one retry loop, bounded and counted.

Cost Management throttles per tenant (BILLING-FACTS "Cost Management Query API"): a 429 carries
`x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after` and its `-entity-`, `-tenant-` and
`-clienttype-` siblings, and sometimes a plain `Retry-After`. Every bucket must have recovered
before the next try succeeds, so the wait is the LARGEST of them, bounded by
`[collect] max_retry_wait_seconds`. azure-core's own RetryPolicy does not retry a POST 429 that
lacks a standard `Retry-After`, and would retry other answers behind our back and our count, so
the caller sends with azure-core retries switched off (`retry_total=0`) and this loop owns them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from azure.core.exceptions import (
    DecodeError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.rest import HttpResponse

from flows.azure_clients import UnreadableResponseBody

T = TypeVar("T")

THROTTLED = 429
# First back-off step for answers without any retry-after header; doubled on each attempt.
BACKOFF_BASE_SECONDS = 1.0


@dataclass
class ThrottleStats:
    """What one chunk's requests met: 429s answered, seconds waited, server errors retried, and
    for Cost Management queries the QPU they cost and the seconds spent pacing to the quota."""

    throttled: int = 0
    server_errors: int = 0
    waited_seconds: float = 0.0
    qpu: float = 0.0
    paced_seconds: float = 0.0


@dataclass(frozen=True)
class RetryLimits:
    max_retries: int
    max_wait_seconds: float


class RetriesExhausted(RuntimeError):
    """The service kept refusing a request after every retry allowed."""


def _seconds(value: str, now: datetime) -> float | None:
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - now).total_seconds()


def retry_after_seconds(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """The largest wait any `*retry-after` (seconds or HTTP date) or `*retry-after-ms` header asks.

    None when no such header is present or readable. Header names are compared without case.
    """
    now = now or datetime.now(UTC)
    waits: list[float] = []
    for name, value in headers.items():
        lowered = name.lower()
        if lowered.endswith("retry-after-ms"):
            seconds = _seconds(value, now)
            if seconds is not None:
                waits.append(seconds / 1000)
        elif lowered.endswith("retry-after"):
            seconds = _seconds(value, now)
            if seconds is not None:
                waits.append(seconds)
    return max(waits) if waits else None


def backoff_seconds(attempt: int) -> float:
    return BACKOFF_BASE_SECONDS * 2**attempt


def send_with_retries(
    send: Callable[[], HttpResponse],
    parse: Callable[[HttpResponse], T],
    *,
    limits: RetryLimits,
    stats: ThrottleStats,
    what: str,
    log: logging.Logger | logging.LoggerAdapter,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Send until a non-retryable answer, then `parse` it; 429, 5xx and lost connections retried.

    A 429 waits for the largest retry-after header (exponential back-off when there is none), a
    5xx or an unreadable body waits for its retry-after or backs off exponentially; each wait is
    capped at `limits.max_wait_seconds`, logged and counted in `stats`. A 4xx other than 429 is
    raised at once as HttpResponseError. After `limits.max_retries` retries: RetriesExhausted
    naming `what`.
    """
    attempt = 0
    while True:
        headers: Mapping[str, str] = {}
        try:
            response = send()
            headers = response.headers
            if response.status_code == THROTTLED:
                stats.throttled += 1
                problem = "429 throttled"
            elif response.status_code >= 500:
                stats.server_errors += 1
                problem = f"{response.status_code} server error"
            elif response.status_code >= 400:
                raise HttpResponseError(response=response)
            else:
                return parse(response)
        except ServiceResponseTimeoutError:
            stats.server_errors += 1
            problem = "no answer within [collect] read_timeout_seconds"
        except (ServiceRequestError, ServiceResponseError) as error:
            stats.server_errors += 1
            if isinstance(error, UnreadableResponseBody):
                problem = "unreadable response body"
            else:
                problem = f"connection failed ({type(error).__name__})"
        except (json.JSONDecodeError, DecodeError):
            stats.server_errors += 1
            problem = "unreadable response body"
        if attempt >= limits.max_retries:
            raise RetriesExhausted(
                f"{what}: still {problem} after {limits.max_retries} retries; run again later, "
                "or raise [collect] max_retries / lower [collect] cost_query_concurrency"
            )
        wait_before_retry(
            headers, attempt, limits=limits, stats=stats, what=f"{what}: {problem}", log=log,
            sleep=sleep,
        )  # fmt: skip
        attempt += 1


def wait_before_retry(
    headers: Mapping[str, str],
    attempt: int,
    *,
    limits: RetryLimits,
    stats: ThrottleStats,
    what: str,
    log: logging.Logger | logging.LoggerAdapter,
    sleep: Callable[[float], None],
) -> None:
    """Wait before retry `attempt + 1`: the largest retry-after header, else exponential
    back-off, capped at `limits.max_wait_seconds`; logged and counted in `stats`."""
    asked = retry_after_seconds(headers)
    wanted = asked if asked is not None else backoff_seconds(attempt)
    wait = max(0.0, min(limits.max_wait_seconds, wanted))
    log.warning("%s, waiting %.1f s (retry %d of %d)", what, wait, attempt + 1, limits.max_retries)
    sleep(wait)
    stats.waited_seconds += wait
