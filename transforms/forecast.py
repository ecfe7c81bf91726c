"""The month in progress: month to date and a projection to the month's end, at a run rate.

A projection is month to date plus the run rate of the last `RUN_RATE_DAYS` days with data (the
average of those days, a day without data counting as 0) times the days of the month left after
the last day with data. It is a run rate, stated as such: no trend, no seasonality, no
knowledge of machines about to start or stop. It is never mixed into complete-month figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

RUN_RATE_DAYS: Final = 7


@dataclass(frozen=True)
class Projection:
    """A daily amount's month to date through `through`, its run rate and month-end figure."""

    through: date  # last day with data counted
    month_to_date: float
    run_rate_per_day: float  # average of the RUN_RATE_DAYS days ending on `through`
    days_left: int  # days of the month after `through`
    projected: float  # month_to_date + run_rate_per_day x days_left


def month_end(day: date) -> date:
    """The last day of `day`'s month."""
    following = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return following - timedelta(days=1)


def project(
    daily: Mapping[date, float], month: date, through: date, days: int = RUN_RATE_DAYS
) -> Projection:
    """`daily` amounts (day -> amount; absent days are 0) of `month` through `through`,
    projected to the month's end at the average of the `days` days ending on `through` (they
    may reach into the month before: a run rate needs a week even on the 2nd; `through` itself
    may be in the month before, when no day of `month` has data yet)."""
    first = month.replace(day=1)
    to_date = sum(amount for day, amount in daily.items() if first <= day <= through)
    window = [through - timedelta(days=offset) for offset in range(days)]
    rate = sum(daily.get(day, 0.0) for day in window) / days
    left = (month_end(first) - max(through, first - timedelta(days=1))).days
    return Projection(through, to_date, rate, left, to_date + rate * left)
