"""Billing dates (PRODUCT §6.3) — pure functions over calendar dates.

Dates are computed from the anchor (the billing start date), never by stepping from the
previous date: monthly from 31 January gives 28/29 February, 31 March, 30 April. Weekly
and two-weekly step by 7 and 14 days from the anchor.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from datetime import date, timedelta
from itertools import count

INTERVALS = (
    "weekly",
    "biweekly",
    "monthly",
    "quarterly",
    "semiannually",
    "annually",
    "every_2_years",
    "every_3_years",
    "every_4_years",
    "every_5_years",
)
#: Each interval as a step of days or of calendar months.
DAY_STEPS = {"weekly": 7, "biweekly": 14}
MONTH_STEPS = {
    "monthly": 1,
    "quarterly": 3,
    "semiannually": 6,
    "annually": 12,
    "every_2_years": 24,
    "every_3_years": 36,
    "every_4_years": 48,
    "every_5_years": 60,
}
#: Longest interval in days (for "is the interval longer than the reminder lead time").
APPROXIMATE_DAYS = {**DAY_STEPS, **{k: 30 * v for k, v in MONTH_STEPS.items()}}


class UnknownInterval(ValueError):
    pass


def add_months(anchor: date, months: int) -> date:
    """The anchor's day in the month ``months`` later, clamped to that month's end."""
    index = anchor.year * 12 + (anchor.month - 1) + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(anchor.day, last))


def nth_date(anchor: date, interval: str, n: int) -> date:
    """The date of the ``n``-th payment (0 = the anchor itself)."""
    if n < 0:
        raise ValueError("payment index must be >= 0")
    if interval in DAY_STEPS:
        return anchor + timedelta(days=DAY_STEPS[interval] * n)
    if interval in MONTH_STEPS:
        return add_months(anchor, MONTH_STEPS[interval] * n)
    raise UnknownInterval(interval)


def payment_dates(
    anchor: date, interval: str, *, payments: int | None = None, end_date: date | None = None
) -> Iterator[date]:
    """Every payment date from the anchor: ``payments`` of them, or until ``end_date``
    (inclusive), or without end."""
    if payments is not None and payments < 1:
        raise ValueError("a fixed term has at least one payment")
    for n in count():
        if payments is not None and n >= payments:
            return
        when = nth_date(anchor, interval, n)
        if end_date is not None and when > end_date:
            return
        yield when


def delayed_start(checkout_day: date, start: dict | None) -> date:
    """The first billing date of a recurring item: at checkout, a date, or N days/months later."""
    if not start:
        return checkout_day
    if "date" in start:
        value = start["date"]
        return value if isinstance(value, date) else date.fromisoformat(value)
    if "delay_days" in start:
        return checkout_day + timedelta(days=int(start["delay_days"]))
    if "delay_months" in start:
        return add_months(checkout_day, int(start["delay_months"]))
    raise ValueError(f"unknown billing start {start!r}")


def first_index_on_or_after(anchor: date, interval: str, day: date) -> int:
    """The smallest payment index ``n`` whose date (`nth_date`) is on or after ``day``."""
    if day <= anchor:
        return 0
    if interval in DAY_STEPS:
        return -(-(day - anchor).days // DAY_STEPS[interval])
    if interval not in MONTH_STEPS:
        raise UnknownInterval(interval)
    months = (day.year - anchor.year) * 12 + day.month - anchor.month
    n = max(0, months // MONTH_STEPS[interval] - 1)  # at most a couple of steps short
    while nth_date(anchor, interval, n) < day:
        n += 1
    return n
