"""services.billing.analytics.metrics (decision 33, *Analytics*): MRR normalised per interval
in exact 720ths of a month, summed exactly and rounded once, half-up; ARR rounded from the
same exact sum × 12; recovery rate as a two-decimal percentage."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.billing.analytics.metrics import (
    DENOMINATOR,
    MONTHLY_WEIGHT,
    arr,
    exact_monthly,
    mrr,
    rate_percent,
)
from shared.schedule import DAY_STEPS, INTERVALS, MONTH_STEPS

#: Payments per year of each interval (weekly 52, two-weekly 26, as documented).
PER_YEAR = {"weekly": Fraction(52), "biweekly": Fraction(26), **{k: Fraction(12, v) for k, v in MONTH_STEPS.items()}}


def half_up(value: Fraction) -> int:
    return int((value * 2 + 1) // 2)


def mrr_of(subs):
    return mrr(exact_monthly(subs))


def arr_of(subs):
    return arr(exact_monthly(subs))


# -- the weights ---------------------------------------------------------------------------------
def test_every_billing_interval_has_a_weight():
    assert set(MONTHLY_WEIGHT) == set(INTERVALS)


def test_the_weights_are_the_documented_fractions_of_a_month():
    assert DENOMINATOR == 720
    assert MONTHLY_WEIGHT["weekly"] * 12 == 52 * DENOMINATOR  # 52/12 of a month
    assert MONTHLY_WEIGHT["biweekly"] * 12 == 26 * DENOMINATOR  # 26/12
    for interval, months in MONTH_STEPS.items():  # 1/months
        assert MONTHLY_WEIGHT[interval] * months == DENOMINATOR
    for interval in INTERVALS:
        assert Fraction(MONTHLY_WEIGHT[interval], DENOMINATOR) == PER_YEAR[interval] / 12
    assert set(DAY_STEPS) == {"weekly", "biweekly"}


# -- hand-computed examples ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("interval", "amount", "monthly", "yearly"),
    [
        ("monthly", 1000, 1000, 12_000),
        ("weekly", 1000, 4333, 52_000),  # 4 333.33
        ("biweekly", 1000, 2167, 26_000),  # 2 166.67
        ("quarterly", 999, 333, 3_996),
        ("semiannually", 1000, 167, 2_000),  # 166.67
        ("annually", 1200, 100, 1_200),
        ("every_2_years", 2400, 100, 1_200),
        ("every_3_years", 3600, 100, 1_200),
        ("every_4_years", 4800, 100, 1_200),
        ("every_5_years", 6000, 100, 1_200),
        ("every_5_years", 1, 0, 0),  # 1/60 and 1/5 of a minor unit
    ],
)
def test_one_subscription(interval, amount, monthly, yearly):
    assert (mrr_of([(interval, amount)]), arr_of([(interval, amount)])) == (monthly, yearly)


def test_half_up_at_exactly_half():
    assert mrr_of([("annually", 6)]) == 1  # 0.5 -> 1
    assert mrr_of([("annually", 18)]) == 2  # 1.5 -> 2
    assert mrr_of([("annually", 5)]) == 0  # 0.4167 -> 0
    assert mrr_of([("every_2_years", 12)]) == 1  # 0.5 -> 1
    assert arr_of([("every_2_years", 1)]) == 1  # 0.5 -> 1


def test_the_sum_is_rounded_once_not_per_subscription():
    assert mrr_of([("annually", 6), ("annually", 6)]) == 1  # 0.5 + 0.5 = 1, not 1 + 1
    assert mrr_of([("quarterly", 1)] * 3) == 1  # 1/3 × 3 = 1, not 0 + 0 + 0
    assert mrr_of([("weekly", 3), ("monthly", 1000)]) == 1013  # 13 + 1000
    assert mrr_of([("every_5_years", 1)] * 59) == 1  # 59/60


def test_arr_is_rounded_from_the_exact_sum_not_from_mrr():
    assert (mrr_of([("weekly", 1)]), arr_of([("weekly", 1)])) == (4, 52)  # not 12 × 4 = 48
    # exact 359/720 of a minor unit a month: MRR 0, ARR 5.98 -> 6 — the documented worst case
    subs = [("every_4_years", 1), ("every_3_years", 10), ("every_5_years", 12)]
    assert exact_monthly(subs) == 359
    assert (mrr_of(subs), arr_of(subs)) == (0, 6)


def test_nothing_is_zero():
    assert exact_monthly([]) == 0 and mrr(0) == 0 and arr(0) == 0


def test_refusals():
    with pytest.raises(ValueError):
        mrr_of([("monthly", -1)])
    with pytest.raises(ValueError):
        arr(-1)
    with pytest.raises(KeyError):
        exact_monthly([("daily", 100)])


# -- properties ------------------------------------------------------------------------------------
subscriptions = st.lists(st.tuples(st.sampled_from(INTERVALS), st.integers(0, 10**9)), max_size=30)


@settings(deadline=None, max_examples=500)
@given(subscriptions)
def test_mrr_and_arr_are_the_exact_sums_rounded_once(subs):
    monthly = sum((amount * PER_YEAR[interval] / 12 for interval, amount in subs), Fraction(0))
    exact = exact_monthly(subs)
    assert type(exact) is int and Fraction(exact, DENOMINATOR) == monthly
    assert mrr(exact) == half_up(monthly)
    assert arr(exact) == half_up(monthly * 12)
    assert abs(arr(exact) - 12 * mrr(exact)) <= 6
    assert type(mrr(exact)) is int and type(arr(exact)) is int


@settings(deadline=None, max_examples=300)
@given(subscriptions, subscriptions)
def test_the_exact_sum_is_additive_and_order_free(a, b):
    assert exact_monthly(a + b) == exact_monthly(a) + exact_monthly(b) == exact_monthly(b + a)
    # rounding once: the rounded total is within half a unit per part of the sum of rounded parts
    assert abs(mrr(exact_monthly(a + b)) - (mrr(exact_monthly(a)) + mrr(exact_monthly(b)))) <= 1


@settings(deadline=None, max_examples=300)
@given(st.sampled_from(INTERVALS), st.integers(0, 10**9), st.integers(1, 50))
def test_more_of_the_same_never_lowers_it(interval, amount, extra):
    assert mrr_of([(interval, amount + extra)]) >= mrr_of([(interval, amount)])
    assert arr_of([(interval, amount + extra)]) >= arr_of([(interval, amount)])


@settings(deadline=None, max_examples=300)
@given(st.integers(0, 10**9))
def test_a_monthly_amount_is_its_own_mrr(amount):
    assert mrr_of([("monthly", amount)]) == amount and arr_of([("monthly", amount)]) == 12 * amount
    assert arr_of([("annually", amount)]) == amount


# -- recovery rate ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("part", "whole", "text"),
    [
        (2, 3, "66.67"),
        (1, 3, "33.33"),
        (1, 6, "16.67"),
        (1, 8, "12.50"),
        (1, 16, "6.25"),
        (0, 5, "0.00"),
        (5, 5, "100.00"),
        (1, 20_000, "0.01"),  # 0.005 -> 0.01 (half-up)
        (1, 80_000, "0.00"),  # 0.00125
        (7, 4, "175.00"),
    ],
)
def test_rate_percent(part, whole, text):
    assert rate_percent(part, whole) == text


def test_rate_percent_without_a_whole():
    assert rate_percent(0, 0) is None
    assert rate_percent(3, 0) is None
    assert rate_percent(3, -1) is None


@settings(deadline=None, max_examples=500)
@given(st.integers(1, 10**7), st.data())
def test_rate_percent_is_the_ratio_rounded_half_up_to_two_decimals(whole, data):
    part = data.draw(st.integers(0, whole))
    expected = (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    text = rate_percent(part, whole)
    # (Decimal's 28 digits decide the half-up exactly here: a quotient is either a
    # terminating decimal or at least 1/(2 × whole) away from any half)
    assert text == f"{expected:.2f}"
    assert Fraction(text) == Fraction(half_up(Fraction(part * 10_000, whole)), 100)
    assert re.fullmatch(r"\d{1,3}\.\d\d", text) and 0 <= Fraction(text) <= 100
