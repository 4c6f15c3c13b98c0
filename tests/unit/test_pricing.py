"""shared.pricing (PRODUCT §4.3): hand-computed examples and property-based invariants."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.pricing import (
    MAX_AMOUNT,
    Discount,
    Item,
    PricingError,
    Recurring,
    allocate,
    percent_of,
    price,
)

D = Decimal
JAN31 = date(2027, 1, 31)


# -- hand-computed examples -----------------------------------------------------------------
def test_one_time_items_add_up():
    s = price([Item("a", "Coffee", 2, 1250), Item("b", "Mug", 1, 800)], "USD")
    assert [line.amount for line in s.lines] == [2500, 800]
    assert (s.subtotal_due_now, s.discount_due_now, s.tax_due_now, s.total_due_now, s.total) == (3300, 0, 0, 3300, 3300)
    assert s.future_payments == () and s.groups == ()


def test_a_percentage_unit_discount_is_rounded_per_unit_before_multiplying():
    # 15 % of 999 = 149.85 -> 150 per unit; (999 - 150) x 3 = 2547 (not 2547.45 rounded once)
    s = price([Item("a", "Item", 3, 999, unit_discount=Discount(percent_off=D("15")))], "USD")
    (line,) = s.lines
    assert (line.unit_discount, line.amount) == (150, 2547)


def test_a_fixed_unit_discount_never_exceeds_the_unit_price():
    s = price([Item("a", "Item", 2, 500, unit_discount=Discount(amount_off=700)), Item("b", "B", 1, 100)], "USD")
    assert [line.amount for line in s.lines] == [0, 100]


def test_half_up_rounding_at_exactly_half():
    assert percent_of(1000, D("12.25")) == 123  # 122.5 -> 123
    assert percent_of(1000, D("12.24")) == 122  # 122.4 -> 122
    assert percent_of(5, D("50")) == 3  # 2.5 -> 3
    assert percent_of(0, D("25")) == 0


def test_order_discount_is_spread_in_proportion():
    items = [Item("a", "A", 1, 1000), Item("b", "B", 1, 2000), Item("c", "C", 1, 3000)]
    s = price(items, "USD", order_discounts=(Discount(percent_off=D("10"), name="Spring"),))
    assert [line.discount for line in s.lines] == [100, 200, 300]
    assert s.discounts_due_now == (("Spring", 600),)
    assert s.total_due_now == 5400


def test_largest_remainder_goes_to_the_biggest_fraction_then_the_earlier_line():
    assert allocate(100, [333, 333, 334]) == [33, 33, 34]
    assert allocate(2, [1, 1, 1]) == [1, 1, 0]  # equal remainders: earlier lines first
    assert allocate(0, [5, 5]) == [0, 0]
    assert allocate(7, [0, 10]) == [0, 7]


def test_two_order_discounts_apply_each_to_what_remains():
    items = [Item("a", "A", 1, 4000), Item("b", "B", 1, 6000)]
    discounts = (Discount(percent_off=D("10"), name="Link"), Discount(amount_off=500, name="CODE5"))
    s = price(items, "USD", order_discounts=discounts)
    # 10 % of 10000 = 1000 -> [400, 600]; 500 of the remaining 9000 -> [200, 300]
    assert [line.discount for line in s.lines] == [600, 900]
    assert s.discounts_due_now == (("Link", 1000), ("CODE5", 500))
    assert s.total_due_now == 8500


def test_a_fixed_order_discount_never_exceeds_what_remains():
    s = price([Item("a", "A", 1, 300)], "USD", order_discounts=(Discount(amount_off=1000, name="Big"),))
    assert s.discounts_due_now == (("Big", 300),) and s.total_due_now == 0


def test_tax_per_line_on_the_discounted_amount_rounded_half_up():
    items = [
        Item("a", "A", 1, 1000, tax_percent=D("8.875")),
        Item("b", "B", 1, 1000, tax_percent=D("25")),
        Item("c", "C", 1, 1000),
    ]
    s = price(items, "USD", order_discounts=(Discount(amount_off=300, name="Off"),))
    assert [line.discount for line in s.lines] == [100, 100, 100]
    # 900 x 8.875 % = 79.875 -> 80; 900 x 25 % = 225
    assert [line.tax for line in s.lines] == [80, 225, 0]
    assert s.total_due_now == 3000 - 300 + 305


def test_recurring_from_checkout_charges_now_and_lists_later_payments_by_anchor():
    item = Item("m", "Monthly", 1, 1000, tax_percent=D("10"), recurring=Recurring("monthly", payments=4))
    s = price([item], "USD", checkout_day=JAN31)
    assert s.total_due_now == 1100  # tax on the first payment too
    assert [(p.date, p.amount) for p in s.future_payments] == [
        (date(2027, 2, 28), 1100),
        (date(2027, 3, 31), 1100),
        (date(2027, 4, 30), 1100),
    ]
    assert s.total == 4400
    (group,) = s.groups
    assert (group.payments, group.amount, group.tax, group.starts_now) == (4, 1100, 100, True)


def test_order_discounts_do_not_reach_future_payments():
    item = Item("m", "Monthly", 1, 1000, tax_percent=D("10"), recurring=Recurring("monthly", payments=2))
    s = price([item], "USD", checkout_day=JAN31, order_discounts=(Discount(percent_off=D("50"), name="Half"),))
    assert s.total_due_now == 500 + 50
    assert [p.amount for p in s.future_payments] == [1100]


def test_a_unit_discount_applies_to_every_payment():
    item = Item("m", "M", 1, 1000, unit_discount=Discount(amount_off=250), recurring=Recurring("monthly", payments=2))
    s = price([item], "USD", checkout_day=JAN31)
    assert s.total_due_now == 750 and [p.amount for p in s.future_payments] == [750]


@pytest.mark.parametrize(
    ("start", "first"),
    [
        ({"date": "2027-03-15"}, date(2027, 3, 15)),
        ({"delay_days": 10}, date(2027, 2, 10)),
        ({"delay_months": 1}, date(2027, 2, 28)),
    ],
)
def test_a_delayed_start_charges_nothing_now(start, first):
    items = [
        Item("fee", "Setup fee", 1, 5000),
        Item("m", "Monthly", 1, 1000, recurring=Recurring("monthly", payments=2, start=start)),
    ]
    s = price(items, "USD", checkout_day=JAN31)
    assert s.subtotal_due_now == 5000 and s.total_due_now == 5000
    assert s.future_payments[0].date == first
    assert len(s.future_payments) == 2 and s.total == 7000
    assert [line.due_now for line in s.lines] == [True, False]


def test_a_start_date_that_has_passed_bills_from_the_checkout_day():
    item = Item("w", "Weekly", 1, 1000, recurring=Recurring("weekly", payments=3, start={"date": "2027-01-02"}))
    s = price([item], "USD", checkout_day=JAN31)
    assert s.total_due_now == 1000 and s.groups[0].start_date == JAN31 and s.groups[0].starts_now
    assert [p.date for p in s.future_payments] == [date(2027, 2, 7), date(2027, 2, 14)]


def test_items_sharing_terms_form_one_group_and_others_separate_groups():
    monthly = Recurring("monthly")
    items = [
        Item("m1", "Monthly A", 1, 1000, recurring=monthly),
        Item("y", "Yearly", 1, 10000, recurring=Recurring("annually")),
        Item("m2", "Monthly B", 2, 500, recurring=monthly),
    ]
    s = price(items, "USD", checkout_day=JAN31)
    assert [g.line_item_ids for g in s.groups] == [("m1", "m2"), ("y",)]
    assert [g.amount for g in s.groups] == [2000, 10000]
    assert s.total is None and s.renews_until_cancelled  # renews until cancelled
    # only the next payment of each renewing group is listed
    assert [(p.date, p.subscription_group) for p in s.future_payments] == [
        (date(2027, 2, 28), "group_1"),
        (date(2028, 1, 31), "group_2"),
    ]


def test_an_end_date_makes_a_renewing_group_finite():
    item = Item("w", "Weekly", 1, 300, recurring=Recurring("weekly", end_date=date(2027, 2, 21)))
    s = price([item], "USD", checkout_day=JAN31)
    assert [p.date for p in s.future_payments] == [date(2027, 2, 7), date(2027, 2, 14), date(2027, 2, 21)]
    assert s.total == 1200


def test_an_item_whose_end_date_has_passed_by_checkout_is_refused():
    ended = Item("w", "Weekly box", 1, 300, recurring=Recurring("weekly", end_date=date(2027, 1, 30)))
    with pytest.raises(PricingError) as refused:
        price([ended], "USD", checkout_day=JAN31)
    assert refused.value.field == "line_items" and "Weekly box was sold until 2027-01-30" in refused.value.message
    # the last day itself is still sold (one payment, at checkout)
    last_day = Item("w", "Weekly box", 1, 300, recurring=Recurring("weekly", end_date=JAN31))
    s = price([last_day], "USD", checkout_day=JAN31)
    assert s.total_due_now == 300 and s.future_payments == () and s.total == 300


def test_deselected_optional_items_are_not_priced():
    s = price([Item("a", "A", 1, 1000), Item("b", "B", 1, 500, selected=False)], "USD")
    assert [line.line_item_id for line in s.lines] == ["a"] and s.total_due_now == 1000


def test_refusals():
    with pytest.raises(PricingError):
        price([Item("a", "A", 1, 0)], "USD")
    with pytest.raises(PricingError):
        price([Item("a", "A", 2, MAX_AMOUNT)], "USD")
    with pytest.raises(ValueError):
        price([Item("m", "M", 1, 100, recurring=Recurring("monthly"))], "USD")  # no checkout day
    with pytest.raises(ValueError):
        Discount()


def test_the_api_view():
    s = price(
        [Item("a", "A", 1, 1000, tax_percent=D("10"))], "EUR", order_discounts=(Discount(amount_off=100, name="X"),)
    )
    api = s.as_api()
    assert api["subtotal_due_now"] == 1000 and api["discounts_due_now"] == [{"name": "X", "amount": 100}]
    assert api["tax_due_now"] == 90 and api["total_due_now"] == 990 and api["total"] == 990
    assert api["lines"][0]["discount"] == 100 and api["future_payments"] == [] and api["subscriptions"] == []


# -- properties -----------------------------------------------------------------------------
percents = st.decimals(min_value=D("0.01"), max_value=D("100"), places=2)
tax_rates = st.one_of(st.none(), st.decimals(min_value=D("0"), max_value=D("50"), places=4))
discounts = st.one_of(
    st.builds(Discount, percent_off=percents, name=st.just("p")),
    st.builds(Discount, amount_off=st.integers(1, 100_000), name=st.just("a")),
)
recurrings = st.one_of(
    st.none(),
    st.builds(
        Recurring,
        interval=st.sampled_from(["weekly", "monthly", "quarterly", "annually", "every_2_years"]),
        payments=st.one_of(st.none(), st.integers(1, 24)),
        start=st.one_of(st.none(), st.builds(lambda d: {"delay_days": d}, st.integers(1, 90))),
    ),
)


@st.composite
def baskets(draw):
    n = draw(st.integers(1, 6))
    return [
        Item(
            f"li_{i}",
            f"Item {i}",
            draw(st.integers(1, 20)),
            draw(st.integers(1, 200_000)),
            selected=draw(st.booleans()) if i else True,
            unit_discount=draw(st.one_of(st.none(), discounts)),
            tax_percent=draw(tax_rates),
            recurring=draw(recurrings),
        )
        for i in range(n)
    ]


@settings(deadline=None, max_examples=300)
@given(baskets(), st.lists(discounts, max_size=2))
def test_parts_add_up_and_nothing_is_negative(items, order_discounts):
    s = price(items, "USD", checkout_day=JAN31, order_discounts=tuple(order_discounts))
    due = [line for line in s.lines if line.due_now]
    assert s.subtotal_due_now == sum(line.amount for line in due)
    assert sum(line.discount for line in s.lines) == s.discount_due_now
    assert all(line.discount == 0 for line in s.lines if not line.due_now)
    assert s.tax_due_now == sum(line.tax for line in s.lines)
    assert s.total_due_now == sum(line.amount - line.discount + line.tax for line in due)
    for line in s.lines:
        assert line.amount >= 0 and line.tax >= 0 and 0 <= line.discount <= line.amount
        assert 0 <= line.unit_discount <= line.unit_amount
    assert s.total_due_now >= 0
    if s.total is not None:
        assert s.total == s.total_due_now + sum(p.amount for p in s.future_payments)
    for group in s.groups:
        members = [line for line in s.lines if line.subscription_group == group.key]
        assert group.amount == sum(m.amount + m.recurring_tax for m in members)


@settings(deadline=None, max_examples=200)
@given(baskets(), st.lists(discounts, max_size=2))
def test_recomputation_is_idempotent(items, order_discounts):
    first = price(items, "USD", checkout_day=JAN31, order_discounts=tuple(order_discounts))
    again = price(list(items), "USD", checkout_day=JAN31, order_discounts=tuple(order_discounts))
    assert first == again and first.as_api() == again.as_api()


@settings(deadline=None, max_examples=200)
@given(baskets(), discounts)
def test_a_discount_never_raises_what_is_due(items, discount):
    without = price(items, "USD", checkout_day=JAN31)
    with_it = price(items, "USD", checkout_day=JAN31, order_discounts=(discount,))
    assert with_it.subtotal_due_now - with_it.discount_due_now <= without.subtotal_due_now


@settings(deadline=None, max_examples=500)
@given(st.lists(st.integers(0, 10**9), min_size=1, max_size=12), st.data())
def test_allocation_is_exact_bounded_and_proportional(weights, data):
    total = data.draw(st.integers(0, sum(weights)))
    shares = allocate(total, weights)
    assert sum(shares) == total
    whole = sum(weights)
    for share, weight in zip(shares, weights, strict=True):
        assert 0 <= share <= weight
        if whole:
            assert abs(share * whole - total * weight) < whole  # within one minor unit
