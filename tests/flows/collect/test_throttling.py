"""The Cost Management retry loop: largest retry-after wins, bounded, counted, then gives up."""

import json
import logging
from datetime import UTC, datetime

import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError

from flows.collect.throttling import (
    RetriesExhausted,
    RetryLimits,
    ThrottleStats,
    retry_after_seconds,
    send_with_retries,
)

LOG = logging.getLogger("test")
NOW = datetime(2026, 11, 15, 12, 0, 0, tzinfo=UTC)


class FakeResponse:
    def __init__(self, status_code, headers=None, body=None, text=None):
        self.status_code = status_code
        self.headers = headers or {}
        self._text = text if text is not None else json.dumps(body or {})
        self.reason = "reason"
        self.content = self._text.encode()
        self.request = None

    def json(self):
        return json.loads(self._text)

    def text(self, encoding=None):
        return self._text


def sequence(*responses):
    answers = iter(responses)

    def send():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return send


def test_the_largest_of_every_retry_after_header_is_taken():
    headers = {
        "x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after": "12",
        "X-MS-RateLimit-Microsoft.CostManagement-Entity-Retry-After": "30",
        "x-ms-ratelimit-microsoft.costmanagement-tenant-retry-after": "7",
        "x-ms-ratelimit-microsoft.costmanagement-clienttype-retry-after": "45",
        "Retry-After": "5",
        "x-ms-ratelimit-remaining-microsoft.costmanagement-qpu-retry-after-unrelated": "x",
    }
    assert retry_after_seconds(headers, NOW) == 45.0


def test_http_date_and_millisecond_retry_after_are_read():
    # Sun, 15 Nov 2026 12:01:30 GMT is 90 s after NOW; 120000 ms is 120 s.
    assert retry_after_seconds({"Retry-After": "Sun, 15 Nov 2026 12:01:30 GMT"}, NOW) == 90.0
    assert retry_after_seconds({"retry-after-ms": "120000", "Retry-After": "3"}, NOW) == 120.0
    assert retry_after_seconds({"Content-Type": "application/json"}, NOW) is None


def test_429s_wait_for_the_largest_header_bounded_and_are_counted():
    waits = []
    stats = ThrottleStats()
    send = sequence(
        FakeResponse(
            429,
            {
                "x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after": "3",
                "x-ms-ratelimit-microsoft.costmanagement-entity-retry-after": "8",
            },
        ),
        FakeResponse(429, {"Retry-After": "500"}),
        FakeResponse(200, body={"ok": 1}),
    )
    result = send_with_retries(
        send,
        lambda r: r.json(),
        limits=RetryLimits(5, 60.0),
        stats=stats,
        what="q",
        log=LOG,
        sleep=waits.append,
    )
    assert result == {"ok": 1}
    # 8 s (largest of 3 and 8), then 500 s capped at the 60 s bound.
    assert waits == [8.0, 60.0]
    assert (stats.throttled, stats.server_errors, stats.waited_seconds) == (2, 0, 68.0)


def test_server_errors_and_lost_connections_back_off_exponentially():
    waits = []
    stats = ThrottleStats()
    send = sequence(
        FakeResponse(503),
        ServiceRequestError("connection reset"),
        FakeResponse(200, text='{"truncated'),
        FakeResponse(200, body={"ok": 2}),
    )
    result = send_with_retries(
        send,
        lambda r: r.json(),
        limits=RetryLimits(5, 60.0),
        stats=stats,
        what="q",
        log=LOG,
        sleep=waits.append,
    )
    assert result == {"ok": 2}
    # 1 s, 2 s, 4 s: BACKOFF_BASE_SECONDS doubled per attempt; an unreadable body is retried.
    assert waits == [1.0, 2.0, 4.0]
    assert (stats.throttled, stats.server_errors) == (0, 3)


def test_giving_up_names_the_request_and_what_to_change():
    stats = ThrottleStats()
    send = sequence(*[FakeResponse(429, {"Retry-After": "1"})] * 3)
    with pytest.raises(
        RetriesExhausted,
        match=r"^cost query X: still 429 throttled after 2 "
        r"retries; .*max_retries",
    ):
        send_with_retries(
            send,
            lambda r: r,
            limits=RetryLimits(2, 10.0),
            stats=stats,
            what="cost query X",
            log=LOG,
            sleep=lambda s: None,
        )
    assert stats.throttled == 3


def test_a_client_error_is_raised_at_once():
    waits = []
    send = sequence(
        FakeResponse(403, body={"error": {"code": "AuthorizationFailed", "message": "no access"}})
    )
    with pytest.raises(HttpResponseError) as raised:
        send_with_retries(
            send,
            lambda r: r,
            limits=RetryLimits(5, 10.0),
            stats=ThrottleStats(),
            what="q",
            log=LOG,
            sleep=waits.append,
        )
    assert raised.value.status_code == 403
    assert waits == []
