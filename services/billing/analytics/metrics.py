"""Recurring-revenue arithmetic — pure, integers only.

MRR normalises each subscription's per-payment amount (its ``subtotal``: after unit
discounts, before tax) to a month. The factors are exact fractions with the common
denominator 720 (= lcm of 3, 6, 12, 24, 36, 48, 60): weekly is 52/12 of a month = 3120/720,
two-weekly 26/12 = 1560/720, monthly 720/720, quarterly 240/720, ..., every five years
12/720. The sum over all subscriptions is kept exact and rounded **once**, half-up, to the
minor unit; ARR is rounded from the same exact sum (× 12), not from the rounded MRR, so
it may differ from 12 × MRR by up to 6 minor units.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Months per payment as 720ths of a month.
DENOMINATOR = 720
MONTHLY_WEIGHT = {
    "weekly": 3120,
    "biweekly": 1560,
    "monthly": 720,
    "quarterly": 240,
    "semiannually": 120,
    "annually": 60,
    "every_2_years": 30,
    "every_3_years": 20,
    "every_4_years": 15,
    "every_5_years": 12,
}


def _round_half_up(numerator: int, denominator: int) -> int:
    if numerator < 0:
        raise ValueError("recurring amounts are never negative")
    return (2 * numerator + denominator) // (2 * denominator)


def exact_monthly(amounts: Iterable[tuple[str, int]]) -> int:
    """Σ amount × weight over (interval, amount): MRR in 720ths of a minor unit."""
    return sum(amount * MONTHLY_WEIGHT[interval] for interval, amount in amounts)


def mrr(exact: int) -> int:
    return _round_half_up(exact, DENOMINATOR)


def arr(exact: int) -> int:
    return _round_half_up(exact * 12, DENOMINATOR)


def rate_percent(part: int, whole: int) -> str | None:
    """``part / whole`` as a percentage with two decimals (half-up), e.g. "66.67"; None
    when there is nothing to divide by."""
    if whole <= 0:
        return None
    hundredths = _round_half_up(part * 10_000, whole)
    return f"{hundredths // 100}.{hundredths % 100:02d}"
