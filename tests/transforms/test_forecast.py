"""The month in progress projected at the run rate of its last 7 days, by hand."""

from __future__ import annotations

from datetime import date, timedelta

from transforms.forecast import Projection, project

NOVEMBER = date(2026, 11, 1)


def daily(first: date, amounts: list[float]) -> dict[date, float]:
    return {first + timedelta(days=k): amount for k, amount in enumerate(amounts)}


def test_a_steady_run_rate():
    # 2.00 a day, November 1..14: 28.00 to date, 7-day rate 2.00, 16 days left: 28 + 32 = 60
    assert project(daily(NOVEMBER, [2.0] * 14), NOVEMBER, date(2026, 11, 14)) == Projection(
        date(2026, 11, 14), 28.0, 2.0, 16, 60.0
    )


def test_the_rate_is_the_last_seven_days_only():
    # 1.00 a day November 1..7, then 1..7 on the 8th..14th: to date 7 + 28 = 35, the rate of
    # the 8th..14th is 28 / 7 = 4.00, 16 days left: 35 + 64 = 99
    amounts = [1.0] * 7 + [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    assert project(daily(NOVEMBER, amounts), NOVEMBER, date(2026, 11, 14)) == Projection(
        date(2026, 11, 14), 35.0, 4.0, 16, 99.0
    )


def test_early_in_the_month_the_week_reaches_into_the_last():
    # 3.00 a day from October 27: on November 2 the week is Oct 27..Nov 2 (21 / 7 = 3.00), to
    # date Nov 1..2 = 6.00, 28 days left: 6 + 84 = 90
    result = project(daily(date(2026, 10, 27), [3.0] * 7), NOVEMBER, date(2026, 11, 2))
    assert result == Projection(date(2026, 11, 2), 6.0, 3.0, 28, 90.0)


def test_no_day_of_the_month_reported_yet():
    # cost data through October 31 (3.50 a day): nothing to date, all 30 days of November at
    # 3.50: 105
    result = project(daily(date(2026, 10, 25), [3.5] * 7), NOVEMBER, date(2026, 10, 31))
    assert result == Projection(date(2026, 10, 31), 0.0, 3.5, 30, 105.0)
