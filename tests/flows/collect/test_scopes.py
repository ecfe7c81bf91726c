"""Scopes, months and which failures mean "this scope cannot be read"."""

from datetime import date

import pytest
from azure.core.exceptions import HttpResponseError

from flows.collect.scopes import (
    Month,
    enabled_subscription_scopes,
    months_between,
    subscription_id_of,
    unreadable_reason,
    validated_scopes,
)

SUB = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"


def test_months_between_covers_every_month_touched_by_a_half_open_window():
    assert [m.label for m in months_between(date(2026, 10, 1), date(2026, 11, 1))] == ["2026-10"]
    assert [m.label for m in months_between(date(2026, 11, 20), date(2027, 2, 2))] == [
        "2026-11",
        "2026-12",
        "2027-01",
        "2027-02",
    ]
    assert months_between(date(2026, 10, 1), date(2026, 10, 1)) == []


def test_month_bounds_and_parsing():
    december = Month.parse("2026-12")
    assert (december.start.isoformat(), december.end.isoformat()) == (
        "2026-12-01T00:00:00+00:00",
        "2027-01-01T00:00:00+00:00",
    )
    with pytest.raises(ValueError, match="'2026-13' is not of the form YYYY-MM"):
        Month.parse("2026-13")


def test_scopes_are_checked_lower_cased_and_deduplicated():
    given = [f"/subscriptions/{SUB.upper()}", f"/subscriptions/{SUB}"]
    assert validated_scopes(given) == [f"/subscriptions/{SUB}"]
    assert subscription_id_of(f"/subscriptions/{SUB.upper()}") == SUB
    with pytest.raises(ValueError, match="--scope: '/subscriptions/nope' is not a scope"):
        validated_scopes(["/subscriptions/nope"])


def test_only_enabled_subscriptions_are_discovered():
    listed = [
        {"subscriptionId": "b" * 8 + SUB[8:], "state": "Enabled"},
        {"subscriptionId": SUB, "state": "Enabled"},
        {"subscriptionId": "c" * 8 + SUB[8:], "state": "Disabled"},
        {"subscriptionId": "d" * 8 + SUB[8:], "state": "Warned"},
    ]
    assert enabled_subscription_scopes(listed) == [
        f"/subscriptions/{SUB}",
        f"/subscriptions/{'b' * 8 + SUB[8:]}",
    ]


class _Response:
    def __init__(self, status):
        self.status_code = status
        self.reason = {403: "Forbidden", 404: "Not Found", 500: "Internal Server Error"}[status]
        self.headers = {}
        self.request = None

    def text(self, encoding=None):
        return '{"error": {"code": "AuthorizationFailed", "message": "no read access"}}'


def test_403_and_404_are_unreadable_scopes_other_errors_are_not():
    forbidden = HttpResponseError(response=_Response(403))
    assert unreadable_reason(forbidden).startswith("403 Forbidden: ")
    assert "AuthorizationFailed" in unreadable_reason(forbidden)
    assert unreadable_reason(HttpResponseError(response=_Response(404))).startswith("404 Not Found")
    assert unreadable_reason(HttpResponseError(response=_Response(500))) is None
    assert unreadable_reason(ValueError("x")) is None
