"""shared.schedule (PRODUCT §6.3): anchor-based dates, examples and properties."""

from __future__ import annotations

import calendar
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.schedule import INTERVALS, add_months, delayed_start, nth_date, payment_dates


def test_monthly_from_the_31st_follows_the_anchor_not_the_previous_date():
    assert list(payment_dates(date(2027, 1, 31), "monthly", payments=5)) == [
        date(2027, 1, 31),
        date(2027, 2, 28),
        date(2027, 3, 31),
        date(2027, 4, 30),
        date(2027, 5, 31),
    ]
    assert nth_date(date(2028, 1, 31), "monthly", 1) == date(2028, 2, 29)  # leap year


@pytest.mark.parametrize(
    ("interval", "second"),
    [
        ("weekly", date(2027, 2, 7)),
        ("biweekly", date(2027, 2, 14)),
        ("monthly", date(2027, 2, 28)),
        ("quarterly", date(2027, 4, 30)),
        ("semiannually", date(2027, 7, 31)),
        ("annually", date(2028, 1, 31)),
        ("every_2_years", date(2029, 1, 31)),
        ("every_3_years", date(2030, 1, 31)),
        ("every_4_years", date(2031, 1, 31)),
        ("every_5_years", date(2032, 1, 31)),
    ],
)
def test_each_interval(interval, second):
    assert nth_date(date(2027, 1, 31), interval, 1) == second


def test_quarterly_times_eight_spans_24_months_and_ends():
    dates = list(payment_dates(date(2027, 11, 30), "quarterly", payments=8))
    assert dates[0] == date(2027, 11, 30) and dates[1] == date(2028, 2, 29) and dates[-1] == date(2029, 8, 30)
    assert len(dates) == 8


def test_end_date_is_inclusive_and_unbounded_schedules_go_on():
    assert list(payment_dates(date(2027, 1, 1), "monthly", end_date=date(2027, 3, 1))) == [
        date(2027, 1, 1),
        date(2027, 2, 1),
        date(2027, 3, 1),
    ]
    endless = payment_dates(date(2027, 1, 1), "annually")
    assert [next(endless) for _ in range(3)][-1] == date(2029, 1, 1)


def test_delayed_starts():
    day = date(2027, 1, 31)
    assert delayed_start(day, None) == day
    assert delayed_start(day, {"date": "2027-06-01"}) == date(2027, 6, 1)
    assert delayed_start(day, {"delay_days": 30}) == date(2027, 3, 2)
    assert delayed_start(day, {"delay_months": 1}) == date(2027, 2, 28)


def test_refusals():
    with pytest.raises(ValueError):
        list(payment_dates(date(2027, 1, 1), "monthly", payments=0))
    with pytest.raises(ValueError):
        nth_date(date(2027, 1, 1), "daily", 1)


anchors = st.dates(min_value=date(2000, 1, 1), max_value=date(2300, 12, 31))


@settings(deadline=None, max_examples=500)
@given(anchors, st.sampled_from(INTERVALS), st.integers(0, 120))
def test_dates_keep_the_anchor_day_and_strictly_increase(anchor, interval, n):
    this, following = nth_date(anchor, interval, n), nth_date(anchor, interval, n + 1)
    assert following > this
    if interval in ("weekly", "biweekly"):
        assert (following - this) == timedelta(days=7 if interval == "weekly" else 14)
    else:
        assert this.day == min(anchor.day, calendar.monthrange(this.year, this.month)[1])


@settings(deadline=None, max_examples=300)
@given(anchors, st.integers(-2400, 2400))
def test_add_months_lands_in_the_right_month(anchor, months):
    moved = add_months(anchor, months)
    assert (moved.year * 12 + moved.month) - (anchor.year * 12 + anchor.month) == months


@settings(deadline=None, max_examples=200)
@given(anchors, st.sampled_from(INTERVALS), st.integers(1, 60))
def test_a_fixed_term_has_exactly_that_many_payments(anchor, interval, payments):
    assert len(list(payment_dates(anchor, interval, payments=payments))) == payments
