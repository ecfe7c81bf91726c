"""Which subscriptions a run reads, which months it covers, and which failures skip a scope.

A scope is `/subscriptions/{id}`, lower-cased. The collection window is a half-open interval of
UTC dates `[start, end)`; Azure data is requested in whole calendar months (the Cost Management
API charges one query unit per month of data, and the lake is partitioned by month), so a window
is cut into the months it touches.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from azure.core.exceptions import HttpResponseError
from pydantic import ValidationError

from flows.config import AzureSettings

SCOPE_PREFIX = "/subscriptions/"
# Subscription states other than Enabled (Warned, PastDue, Disabled, Deleted) are not discovered:
# a disabled subscription has nothing running to bill and may refuse reads.
ENABLED_STATE = "Enabled"
# Answers that mean "this credential cannot read this scope": reported by name, never retried.
UNREADABLE_STATUSES = frozenset({401, 403, 404})


def validated_scopes(scopes: Iterable[str]) -> list[str]:
    """Scopes checked and lower-cased by the same rule as `[azure] scopes`, in the order given."""
    try:
        checked = AzureSettings.model_validate({"scopes": list(scopes)}).scopes
    except ValidationError as error:
        problem = error.errors()[0]["msg"].removeprefix("Value error, ")
        raise ValueError(f"--scope: {problem}") from None
    return list(dict.fromkeys(checked))


def subscription_id_of(scope: str) -> str:
    """`/subscriptions/{id}` -> `{id}` (lower-cased)."""
    if not scope.lower().startswith(SCOPE_PREFIX):
        raise ValueError(f"{scope!r} is not a scope of the form /subscriptions/<guid>")
    return scope[len(SCOPE_PREFIX) :].strip("/").lower()


def scope_of(subscription_id: str) -> str:
    return f"{SCOPE_PREFIX}{subscription_id.lower()}"


def enabled_subscription_scopes(subscriptions: Iterable[Mapping[str, Any]]) -> list[str]:
    """Sorted scopes of the enabled subscriptions among `GET /subscriptions` items (wire format)."""
    return sorted(
        scope_of(item["subscriptionId"])
        for item in subscriptions
        if item.get("state") == ENABLED_STATE and item.get("subscriptionId")
    )


@dataclass(frozen=True)
class Month:
    """A calendar month, UTC: `[start, end)`."""

    year: int
    month: int

    @classmethod
    def of(cls, day: date) -> Month:
        return cls(day.year, day.month)

    @classmethod
    def parse(cls, label: str) -> Month:
        """`YYYY-MM` -> Month."""
        try:
            parsed = datetime.strptime(label, "%Y-%m")
        except ValueError:
            raise ValueError(f"month {label!r} is not of the form YYYY-MM") from None
        return cls(parsed.year, parsed.month)

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return self.next().start

    def __str__(self) -> str:
        return self.label


def months_between(start: date, end: date) -> list[Month]:
    """Every calendar month that has at least one day in `[start, end)`."""
    if end <= start:
        return []
    months = [Month.of(start)]
    while months[-1].next().first_day < end:
        months.append(months[-1].next())
    return months


def unreadable_reason(error: BaseException) -> str | None:
    """'403 Forbidden: <service message>' when `error` says the scope cannot be read, else None.

    The message comes from the service's error body (code and text); it never carries the
    request's headers, so no credential can leak through it.
    """
    if not isinstance(error, HttpResponseError) or error.status_code not in UNREADABLE_STATUSES:
        return None
    reason = error.reason or ""
    detail = error.message.splitlines()[0] if error.message else ""
    return f"{error.status_code} {reason}: {detail}".strip().rstrip(":")
