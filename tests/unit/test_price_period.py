"""shared.pricing.price_period: one period of a subscription (PRODUCT §4.3 rules 1 and 4) —
hand-computed examples, an independent re-computation with exact fractions, and
agreement with `price` for the same items bought at checkout."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.pricing import (
    MAX_AMOUNT,
    Discount,
    Item,
    PeriodCharge,
    PeriodLine,
    PricingError,
    Recurring,
    price,
    price_period,
)

D = Decimal
JAN31 = date(2027, 1, 31)


def item(quantity, unit_amount, *, discount=None, tax=None, name="Item", recurring=None, line_item_id="li"):
    return Item(line_item_id, name, quantity, unit_amount, unit_discount=discount, tax_percent=tax, recurring=recurring)


# -- hand-computed examples ---------------------------------------------------------------------
def test_one_line_with_a_percentage_discount_and_tax():
    # 15 % of 999 = 149.85 -> 150 per unit; (999 - 150) x 3 = 2547; 25 % of 2547 = 636.75 -> 637
    charge = price_period([item(3, 999, discount=Discount(percent_off=D("15")), tax=D("25"), name="Seat")])
    assert charge == PeriodCharge((PeriodLine("Seat", 3, 999, 150, 2547, 637),), 2547, 637)
    assert charge.total == 3184


def test_the_unit_discount_is_rounded_before_multiplying_by_the_quantity():
    # 10 % of 333 = 33.3 -> 33 per unit: (333 - 33) x 3 = 900, not 999 - 99.9 (= 899 once rounded)
    (line,) = price_period([item(3, 333, discount=Discount(percent_off=D("10")))]).lines
    assert (line.unit_discount, line.amount) == (33, 900)
    # 50 % of 5 = 2.5 -> 3 per unit (half-up): (5 - 3) x 4 = 8, not 20 - 10 = 10
    (line,) = price_period([item(4, 5, discount=Discount(percent_off=D("50")))]).lines
    assert (line.unit_discount, line.amount) == (3, 8)


def test_tax_is_rounded_half_up_per_line_not_on_the_sum():
    # 50 % of 1 = 0.5 -> 1 on each line: 2, where rounding the sum (0.5 + 0.5) would give 1
    charge = price_period([item(1, 1, tax=D("50"), name="A"), item(1, 1, tax=D("50"), name="B")])
    assert [line.tax for line in charge.lines] == [1, 1]
    assert (charge.subtotal, charge.tax, charge.total) == (2, 2, 4)


@pytest.mark.parametrize(
    ("amount", "rate", "tax"),
    [
        (1000, D("7.25"), 73),  # 72.5 -> 73
        (1000, D("7.24"), 72),
        (1000, D("12.5"), 125),
        (999, D("25"), 250),  # 249.75 -> 250
        (10, D("0.001"), 0),
        (1, D("49.99"), 0),
        (1, D("50"), 1),
    ],
)
def test_tax_rounding(amount, rate, tax):
    assert price_period([item(1, amount, tax=rate)]).tax == tax


def test_no_tax_rate_or_a_zero_rate_is_no_tax():
    assert price_period([item(2, 500)]).tax == 0
    assert price_period([item(2, 500, tax=D("0"))]).tax == 0


def test_a_fixed_unit_discount_never_exceeds_the_unit_price():
    charge = price_period([item(2, 500, discount=Discount(amount_off=700), tax=D("25")), item(1, 100, name="B")])
    assert [(line.unit_discount, line.amount, line.tax) for line in charge.lines] == [(500, 0, 0), (0, 100, 0)]
    assert charge.total == 100


def test_a_hundred_percent_discount_and_a_free_line_are_zero_not_negative():
    charge = price_period(
        [item(3, 999, discount=Discount(percent_off=D("100")), tax=D("25")), item(5, 0, tax=D("25"), name="Free")]
    )
    assert [(line.unit_discount, line.amount, line.tax) for line in charge.lines] == [(999, 0, 0), (0, 0, 0)]
    assert (charge.subtotal, charge.tax, charge.total) == (0, 0, 0)


def test_several_lines_add_up():
    charge = price_period(
        [
            item(2, 1250, tax=D("12"), name="Coffee"),  # 2500, tax 300
            item(1, 800, discount=Discount(amount_off=100), tax=D("25"), name="Mug"),  # 700, tax 175
            item(10, 99, tax=D("6"), name="Filter"),  # 990, tax 59.4 -> 59
        ]
    )
    assert [(line.amount, line.tax) for line in charge.lines] == [(2500, 300), (700, 175), (990, 59)]
    assert (charge.subtotal, charge.tax, charge.total) == (4190, 534, 4724)


def test_lines_keep_their_order_and_names():
    charge = price_period([item(1, 10, name=n) for n in ("c", "a", "b")])
    assert [line.name for line in charge.lines] == ["c", "a", "b"]


def test_no_lines_is_nothing_to_charge():
    assert price_period([]) == PeriodCharge((), 0, 0)


@pytest.mark.parametrize("quantity", [0, -1, -100])
def test_a_quantity_below_one_is_refused(quantity):
    with pytest.raises(PricingError) as refused:
        price_period([item(quantity, 1000)])
    assert refused.value.field == "line_items"


def test_a_negative_price_is_refused():
    with pytest.raises(PricingError) as refused:
        price_period([item(1, 1000, name="A"), item(1, -1, name="B")])
    assert refused.value.field == "line_items"


def test_the_largest_chargeable_amount():
    assert price_period([item(1, MAX_AMOUNT)]).total == MAX_AMOUNT
    assert price_period([item(MAX_AMOUNT, 1)]).total == MAX_AMOUNT
    for too_much in (
        [item(1, MAX_AMOUNT + 1)],
        [item(1, MAX_AMOUNT - 10, name="A"), item(1, 11, name="B")],  # over by the sum of lines
        [item(1, MAX_AMOUNT - 10, tax=D("0.01"))],  # over by its tax: 0.01 % of 99 999 989 -> 10 000
        [item(2, 50_000_000)],
    ):
        with pytest.raises(PricingError) as refused:
            price_period(too_much)
        assert refused.value.field == "line_items"
    # a discount can bring it back under
    assert price_period([item(2, 50_000_000, discount=Discount(amount_off=1))]).total == 99_999_998


def test_same_items_as_checkout():
    items = [
        item(3, 999, discount=Discount(percent_off=D("15")), tax=D("25"), line_item_id="a", name="A"),
        item(1, 4999, tax=D("7.25"), line_item_id="b", name="B"),
    ]
    recurring = [replace_recurring(i, Recurring("monthly")) for i in items]
    summary = price(recurring, "USD", checkout_day=JAN31)
    charge = price_period(items)
    assert [line.amount for line in summary.lines] == [line.amount for line in charge.lines] == [2547, 4999]
    assert [line.recurring_tax for line in summary.lines] == [line.tax for line in charge.lines] == [637, 362]
    (group,) = summary.groups
    assert (group.amount, group.tax) == (charge.total, charge.tax) == (7546 + 999, 999)


def replace_recurring(it: Item, recurring: Recurring) -> Item:
    return Item(
        it.line_item_id,
        it.name,
        it.quantity,
        it.unit_amount,
        unit_discount=it.unit_discount,
        tax_percent=it.tax_percent,
        recurring=recurring,
    )


# -- an independent re-computation ----------------------------------------------------------------
def half_up(value: Fraction) -> int:
    return int((value * 2 + 1) // 2)


def expected_line(it: Item) -> tuple[int, int, int]:
    """(unit discount, amount, tax) by exact fractions."""
    d = it.unit_discount
    if d is None:
        per_unit = 0
    elif d.percent_off is not None:
        per_unit = min(it.unit_amount, half_up(Fraction(it.unit_amount) * Fraction(d.percent_off) / 100))
    else:
        per_unit = min(it.unit_amount, d.amount_off)
    amount = (it.unit_amount - per_unit) * it.quantity
    tax = half_up(Fraction(amount) * Fraction(it.tax_percent) / 100) if it.tax_percent is not None else 0
    return per_unit, amount, tax


percents = st.decimals(min_value=D("0.01"), max_value=D("100"), places=2)
tax_rates = st.one_of(st.none(), st.decimals(min_value=D("0"), max_value=D("50"), places=4))
discounts = st.one_of(
    st.none(),
    st.builds(Discount, percent_off=percents),
    st.builds(Discount, amount_off=st.integers(1, 300_000)),
)
unit_amounts = st.one_of(st.integers(0, 200_000), st.integers(0, 120_000_000), st.sampled_from([0, 1, 5, 99, 999]))


@st.composite
def period_items(draw, min_unit=0):
    return [
        item(
            draw(st.integers(1, 50)),
            max(min_unit, draw(unit_amounts)),
            discount=draw(discounts),
            tax=draw(tax_rates),
            name=f"Item {i}",
            line_item_id=f"li_{i}",
        )
        for i in range(draw(st.integers(1, 6)))
    ]


@settings(deadline=None, max_examples=500)
@given(period_items())
def test_parts_add_up_and_match_exact_arithmetic(items):
    expected = [expected_line(it) for it in items]
    total = sum(amount + tax for _, amount, tax in expected)
    if total > MAX_AMOUNT:
        with pytest.raises(PricingError):
            price_period(items)
        return
    charge = price_period(items)
    assert len(charge.lines) == len(items)
    for line, it, (per_unit, amount, tax) in zip(charge.lines, items, expected, strict=True):
        assert (line.name, line.quantity, line.unit_amount) == (it.name, it.quantity, it.unit_amount)
        assert (line.unit_discount, line.amount, line.tax) == (per_unit, amount, tax)
        assert 0 <= line.unit_discount <= line.unit_amount
        assert line.amount == (line.unit_amount - line.unit_discount) * line.quantity >= 0
        assert line.tax >= 0
        for value in (line.unit_discount, line.amount, line.tax):
            assert type(value) is int
    assert charge.subtotal == sum(line.amount for line in charge.lines)
    assert charge.tax == sum(line.tax for line in charge.lines)
    assert charge.total == charge.subtotal + charge.tax == total <= MAX_AMOUNT


@settings(deadline=None, max_examples=200)
@given(period_items())
def test_repricing_is_idempotent_and_order_preserving(items):
    try:
        first = price_period(items)
    except PricingError:
        return
    assert price_period(list(items)) == first
    reversed_charge = price_period(items[::-1])
    assert reversed_charge.lines == first.lines[::-1]
    assert (reversed_charge.subtotal, reversed_charge.tax) == (first.subtotal, first.tax)


intervals = st.sampled_from(["weekly", "monthly", "quarterly", "annually", "every_2_years"])
starts = st.one_of(st.none(), st.builds(lambda d: {"delay_days": d}, st.integers(1, 90)))


@settings(deadline=None, max_examples=400)
@given(period_items(min_unit=1), intervals, st.one_of(st.none(), st.integers(2, 12)), starts)
def test_agrees_with_price_for_the_same_items_bought_at_checkout(items, interval, payments, start):
    """Each later payment of a group priced at checkout is exactly one `price_period` of its
    items: same line amounts, same per-line tax, same total — and both refuse the same baskets."""
    terms = Recurring(interval, payments=payments, start=start)
    bought = [replace_recurring(it, terms) for it in items]
    try:
        summary = price(bought, "USD", checkout_day=JAN31)
    except PricingError:
        summary = None
    try:
        charge = price_period(items)
    except PricingError:
        charge = None
    assert (summary is None) == (charge is None)
    if charge is None:
        return
    (group,) = summary.groups
    assert [line.amount for line in summary.lines] == [line.amount for line in charge.lines]
    assert [line.unit_discount for line in summary.lines] == [line.unit_discount for line in charge.lines]
    assert [line.recurring_tax for line in summary.lines] == [line.tax for line in charge.lines]
    assert (group.amount, group.tax) == (charge.total, charge.tax)
    assert all(p.amount == charge.total for p in summary.future_payments)
    if group.starts_now:  # the first payment, at checkout, without order discounts: the same too
        assert summary.total_due_now == charge.total
        assert [line.tax for line in summary.lines] == [line.tax for line in charge.lines]


@settings(deadline=None, max_examples=200)
@given(period_items(min_unit=1))
def test_agrees_with_price_for_one_time_items_without_order_discounts(items):
    try:
        charge = price_period(items)
    except PricingError:
        return
    summary = price(items, "USD")
    assert [(line.amount, line.tax) for line in summary.lines] == [(line.amount, line.tax) for line in charge.lines]
    assert summary.total_due_now == charge.total
