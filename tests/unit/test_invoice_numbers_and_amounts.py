"""The pure parts of billing's invoices (PRODUCT §6.6, §11; decisions 34–39):
numbers (`numbering`) and what an invoice says (`amounts`: due periods, lines, totals,
due dates, the overdue rule, settings)."""

from __future__ import annotations

import base64
import hashlib
import re
import string
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.billing.invoices.amounts import (
    MAX_PERIODS_PER_PASS,
    PAYABLE,
    PAYMENT_METHODS,
    DuePeriods,
    InvoiceSettings,
    Period,
    Totals,
    due_date,
    due_periods,
    invoice_lines,
    is_overdue,
    lines_for,
    resolve_settings,
)
from services.billing.invoices.numbering import (
    PREFIX_LENGTH,
    Taken,
    assign,
    counts_by_account,
    default_prefix,
    format_number,
    taken_from_next,
)
from shared.pricing import Discount, Item, price_period
from shared.schedule import INTERVALS, nth_date

D = Decimal
JAN31 = date(2027, 1, 31)
BASE32 = set(string.ascii_uppercase + "234567")
PAYMENT_TERMS = (0, 7, 15, 30, 45, 60, 90)  # decision 33


# == numbers =======================================================================================
def test_numbers_are_prefix_dash_sequence_padded_to_four_digits():
    assert format_number("K7QF2M3A", 1) == "K7QF2M3A-0001"
    assert format_number("K7QF2M3A", 42) == "K7QF2M3A-0042"
    assert format_number("K7QF2M3A", 9999) == "K7QF2M3A-9999"
    assert format_number("K7QF2M3A", 10000) == "K7QF2M3A-10000"  # the padding grows
    assert format_number("K7QF2M3A", 1234567) == "K7QF2M3A-1234567"


@pytest.mark.parametrize("sequence", [0, -1])
def test_sequences_start_at_one(sequence):
    with pytest.raises(ValueError):
        format_number("K7QF2M3A", sequence)


def test_the_default_prefix_is_base32_of_the_sha256_of_the_account_id():
    assert default_prefix("acct_1") == "I6AJ4RTM"  # stable across releases: printed on invoices
    expected = base64.b32encode(hashlib.sha256(b"acct_1").digest()).decode()[:8]
    assert default_prefix("acct_1") == expected
    assert default_prefix("acct_1") != default_prefix("acct_2")


@settings(deadline=None, max_examples=300)
@given(st.text(min_size=1, max_size=40))
def test_default_prefixes_are_eight_base32_characters(account_id):
    prefix = default_prefix(account_id)
    assert len(prefix) == PREFIX_LENGTH == 8 and set(prefix) <= BASE32
    assert default_prefix(account_id) == prefix
    assert re.fullmatch(r"[A-Z2-7]{8}-\d{4,}", format_number(prefix, 1))


def test_default_prefixes_differ_between_accounts_in_practice():
    ids = [f"acct_{i:06d}" for i in range(5000)]
    assert len({default_prefix(a) for a in ids}) == len(ids)


@settings(deadline=None, max_examples=300)
@given(st.integers(1, 10**9))
def test_the_number_reads_back_as_its_sequence(sequence):
    number = format_number("ABCDEFGH", sequence)
    prefix, _, digits = number.partition("-")
    assert prefix == "ABCDEFGH" and int(digits) == sequence and len(digits) == max(4, len(str(sequence)))


def test_taken_from_next():
    # a fresh sequence (next = 1) taking 57 numbers returns next = 58: numbers 1..57
    assert taken_from_next("P", 58, 57) == Taken("P", 1, 57)
    assert taken_from_next("P", 61, 3) == Taken("P", 58, 3)
    for next_after, count in ((1, 1), (5, 5), (5, 0), (5, -1)):
        with pytest.raises(ValueError):
            taken_from_next("P", next_after, count)


@settings(deadline=None, max_examples=200)
@given(st.lists(st.integers(1, 60), min_size=1, max_size=20))
def test_successive_takes_are_gapless(counts):
    """UPDATE … SET next = next + k RETURNING next, again and again: ranges 1.. without gaps."""
    nxt, numbers = 1, []
    for k in counts:
        nxt += k
        t = taken_from_next("P", nxt, k)
        numbers += range(t.first, t.first + t.count)
    assert numbers == list(range(1, sum(counts) + 1))


def test_counts_by_account():
    assert counts_by_account([]) == {}
    assert counts_by_account(["b", "a", "b", "b"]) == {"b": 3, "a": 1}


def test_assign_hands_each_accounts_range_out_in_issue_order():
    taken = {"a": Taken("AAAAAAAA", 10, 2), "b": Taken("BBBBBBBB", 1, 3)}
    assert assign(["b", "a", "b", "a", "b"], taken) == [
        (1, "BBBBBBBB-0001"),
        (10, "AAAAAAAA-0010"),
        (2, "BBBBBBBB-0002"),
        (11, "AAAAAAAA-0011"),
        (3, "BBBBBBBB-0003"),
    ]
    assert assign([], {}) == []


def test_assign_refuses_too_few_or_unused_numbers():
    with pytest.raises(ValueError):
        assign(["a", "a", "a"], {"a": Taken("A", 1, 2)})
    with pytest.raises(ValueError):  # a gap: a number taken but not used
        assign(["a"], {"a": Taken("A", 1, 2)})
    with pytest.raises(ValueError):  # an account that took numbers and issues none
        assign(["a"], {"a": Taken("A", 1, 1), "b": Taken("B", 1, 1)})


@settings(deadline=None, max_examples=300)
@given(st.lists(st.sampled_from("abcd"), max_size=40), st.data())
def test_assign_is_gapless_per_account_and_follows_the_order(issuers, data):
    counts = counts_by_account(issuers)
    taken = {a: taken_from_next(default_prefix(a), data.draw(st.integers(1, 10_000)) + n, n) for a, n in counts.items()}
    out = assign(issuers, taken)
    assert len(out) == len(issuers)
    assert len({number for _, number in out}) == len(out)
    for account, t in taken.items():
        mine = [entry for entry, who in zip(out, issuers, strict=True) if who == account]
        assert [seq for seq, _ in mine] == list(range(t.first, t.first + t.count))
        assert [number for _, number in mine] == [format_number(t.prefix, seq) for seq, _ in mine]


# == due periods ===================================================================================
def test_a_period_runs_from_its_payment_date_to_the_day_before_the_next():
    due = due_periods(anchor=JAN31, interval="monthly", next_index=0, today=JAN31, payments_total=None, end_date=None)
    assert due == DuePeriods((Period(0, JAN31, date(2027, 2, 27)),), 1, date(2027, 2, 28))


def test_a_jump_over_several_periods_issues_each_of_them():
    due = due_periods(
        anchor=JAN31, interval="monthly", next_index=1, today=date(2027, 4, 15), payments_total=None, end_date=None
    )
    assert due.periods == (
        Period(1, date(2027, 2, 28), date(2027, 3, 30)),
        Period(2, date(2027, 3, 31), date(2027, 4, 29)),
    )
    assert (due.next_index, due.next_payment_date) == (3, date(2027, 4, 30))


def test_nothing_is_due_before_the_next_date():
    due = due_periods(
        anchor=JAN31, interval="monthly", next_index=1, today=date(2027, 2, 27), payments_total=None, end_date=None
    )
    assert due == DuePeriods((), 1, date(2027, 2, 28))


def test_a_fixed_term_is_invoiced_n_times():
    far = date(2030, 1, 1)
    due = due_periods(anchor=JAN31, interval="monthly", next_index=0, today=far, payments_total=3, end_date=None)
    assert [p.index for p in due.periods] == [0, 1, 2]
    assert (due.next_index, due.next_payment_date) == (3, None)
    again = due_periods(anchor=JAN31, interval="monthly", next_index=3, today=far, payments_total=3, end_date=None)
    assert again == DuePeriods((), 3, None)


def test_an_end_date_is_inclusive():
    kw = dict(anchor=JAN31, interval="monthly", next_index=0, today=date(2030, 1, 1), payments_total=None)
    due = due_periods(**kw, end_date=date(2027, 3, 31))
    assert [p.start for p in due.periods] == [JAN31, date(2027, 2, 28), date(2027, 3, 31)]
    assert due.next_payment_date is None
    due = due_periods(**kw, end_date=date(2027, 3, 30))
    assert [p.index for p in due.periods] == [0, 1] and due.next_payment_date is None


def test_a_pass_issues_at_most_its_limit_and_says_where_it_stopped():
    due = due_periods(
        anchor=JAN31,
        interval="monthly",
        next_index=0,
        today=date(2027, 12, 31),
        payments_total=None,
        end_date=None,
        limit=2,
    )
    assert [p.index for p in due.periods] == [0, 1]
    assert (due.next_index, due.next_payment_date) == (2, date(2027, 3, 31))  # already due: the next pass
    assert MAX_PERIODS_PER_PASS == 120


def test_weekly_periods_are_seven_days():
    due = due_periods(
        anchor=date(2027, 1, 4),
        interval="weekly",
        next_index=0,
        today=date(2027, 1, 11),
        payments_total=None,
        end_date=None,
    )
    assert due.periods == (
        Period(0, date(2027, 1, 4), date(2027, 1, 10)),
        Period(1, date(2027, 1, 11), date(2027, 1, 17)),
    )


anchors = st.dates(min_value=date(2000, 1, 1), max_value=date(2200, 12, 31))


@st.composite
def schedules(draw):
    anchor = draw(anchors)
    interval = draw(st.sampled_from(INTERVALS))
    kind = draw(st.sampled_from(["renews", "fixed", "until"]))
    payments_total = draw(st.integers(1, 40)) if kind == "fixed" else None
    end_date = anchor + timedelta(days=draw(st.integers(0, 2000))) if kind == "until" else None
    return anchor, interval, payments_total, end_date


def within(index, anchor, interval, payments_total, end_date):
    when = nth_date(anchor, interval, index)
    return (payments_total is None or index < payments_total) and (end_date is None or when <= end_date)


@settings(deadline=None, max_examples=400)
@given(schedules(), st.integers(0, 45), st.integers(-30, 3000), st.integers(1, 130))
def test_due_periods_properties(schedule, next_index, days, limit):
    anchor, interval, payments_total, end_date = schedule
    today = anchor + timedelta(days=days)
    due = due_periods(
        anchor=anchor,
        interval=interval,
        next_index=next_index,
        today=today,
        payments_total=payments_total,
        end_date=end_date,
        limit=limit,
    )
    assert len(due.periods) <= limit
    assert [p.index for p in due.periods] == list(range(next_index, due.next_index))
    for p in due.periods:
        assert p.start == nth_date(anchor, interval, p.index) <= today
        assert p.end == nth_date(anchor, interval, p.index + 1) - timedelta(days=1) >= p.start
        assert within(p.index, anchor, interval, payments_total, end_date)
    for earlier, later in zip(due.periods, due.periods[1:]):
        assert earlier.end + timedelta(days=1) == later.start  # contiguous, no day twice
    following = nth_date(anchor, interval, due.next_index)
    if within(due.next_index, anchor, interval, payments_total, end_date):
        assert due.next_payment_date == following
        assert following > today or len(due.periods) == limit  # due but left for the next pass
    else:
        assert due.next_payment_date is None


@settings(deadline=None, max_examples=200)
@given(schedules(), st.integers(0, 3000), st.integers(1, 7))
def test_several_small_passes_issue_what_one_pass_does(schedule, days, limit):
    anchor, interval, payments_total, end_date = schedule
    kw = dict(anchor=anchor, interval=interval, today=anchor + timedelta(days=days), payments_total=payments_total)
    whole = due_periods(**kw, end_date=end_date, next_index=0, limit=10_000)
    periods, index = [], 0
    while True:
        part = due_periods(**kw, end_date=end_date, next_index=index, limit=limit)
        periods += part.periods
        index = part.next_index
        if len(part.periods) < limit:
            break
    assert tuple(periods) == whole.periods
    assert (index, part.next_payment_date) == (whole.next_index, whole.next_payment_date)


# == lines and totals ==============================================================================
PERIOD = Period(3, date(2027, 4, 30), date(2027, 5, 30))


def test_lines_for_takes_a_replacement_from_its_index_on():
    sub = {"line_items": [{"name": "old"}], "pending_line_items": [{"name": "new"}], "pending_from_index": 4}
    assert lines_for(sub, 3) == [{"name": "old"}]
    assert lines_for(sub, 4) == lines_for(sub, 9) == [{"name": "new"}]
    assert lines_for({**sub, "pending_line_items": None}, 9) == [{"name": "old"}]
    assert lines_for({**sub, "pending_from_index": None}, 9) == [{"name": "old"}]
    assert lines_for(sub, 3) is not sub["line_items"]  # a copy


def test_invoice_lines_and_totals():
    items = [
        {
            "name": "Seat",
            "description": "Per seat",
            "quantity": 3,
            "unit_amount": 999,
            "unit_discount": 150,
            "amount": 2547,
            "tax": 637,
            "tax_rate": {"id": "txr_1", "name": "VAT", "percentage": "25"},
        },
        {"name": "Support", "quantity": 1, "unit_amount": 5000, "unit_discount": 0, "amount": 5000, "tax": 0},
    ]
    lines, totals = invoice_lines(items, PERIOD)
    assert totals == Totals(subtotal=2997 + 5000, discount=450, tax=637)
    assert totals.total == 7997 - 450 + 637 == 2547 + 637 + 5000
    assert lines[0] == {
        "name": "Seat",
        "description": "Per seat",
        "quantity": 3,
        "unit_amount": 999,
        "unit_discount": 150,
        "amount": 2547,
        "tax": 637,
        "tax_rate": {"id": "txr_1", "name": "VAT", "percentage": "25"},
        "period_start": "2027-04-30",
        "period_end": "2027-05-30",
    }
    assert lines[1]["description"] is None and lines[1]["tax_rate"] is None


def test_invoice_lines_fill_in_what_older_rows_lack():
    lines, totals = invoice_lines(
        [{"name": "X", "quantity": "2", "unit_amount": "700", "unit_discount": None, "tax": None, "tax_rate": {}}],
        PERIOD,
    )
    assert (lines[0]["quantity"], lines[0]["unit_amount"], lines[0]["unit_discount"]) == (2, 700, 0)
    assert (lines[0]["amount"], lines[0]["tax"], lines[0]["tax_rate"]) == (1400, 0, None)
    assert totals == Totals(1400, 0, 0)
    lines, totals = invoice_lines([{"name": "Y", "quantity": 4, "unit_amount": 250, "unit_discount": 50}], PERIOD)
    assert lines[0]["amount"] == 800 and totals == Totals(1000, 200, 0) and totals.total == 800


def test_a_tax_rate_is_normalised():
    (line,), _ = invoice_lines(
        [{"name": "Z", "quantity": 1, "unit_amount": 100, "tax": 7, "tax_rate": {"percentage": D("7.25")}}], PERIOD
    )
    assert line["tax_rate"] == {"id": "", "name": "", "percentage": "7.25"}


def test_no_lines_is_a_zero_invoice():
    assert invoice_lines([], PERIOD) == ([], Totals(0, 0, 0))


def test_totals():
    assert Totals(10_000, 2_500, 1_875).total == 9_375
    assert Totals(0, 0, 0).total == 0


# the lines a subscription stores (as `subscriptions.admin` builds them from `price_period`)
percents = st.decimals(min_value=D("0.01"), max_value=D("100"), places=2)
tax_rates = st.one_of(st.none(), st.decimals(min_value=D("0"), max_value=D("50"), places=4))
discounts = st.one_of(
    st.none(), st.builds(Discount, percent_off=percents), st.builds(Discount, amount_off=st.integers(1, 300_000))
)
period_items = st.lists(
    st.builds(
        lambda q, u, d, t: Item("li", "Item", q, u, unit_discount=d, tax_percent=t),
        st.integers(1, 50),
        st.integers(0, 200_000),
        discounts,
        tax_rates,
    ),
    min_size=1,
    max_size=6,
)


def stored(items: list[Item]) -> tuple[list[dict], object]:
    charge = price_period(items)
    return [
        {
            "name": it.name,
            "quantity": line.quantity,
            "unit_amount": line.unit_amount,
            "unit_discount": line.unit_discount,
            "amount": line.amount,
            "tax": line.tax,
            "tax_rate": None
            if it.tax_percent is None
            else {"id": "", "name": "Tax", "percentage": str(it.tax_percent)},
        }
        for it, line in zip(items, charge.lines, strict=True)
    ], charge


@settings(deadline=None, max_examples=300)
@given(period_items)
def test_an_invoice_says_exactly_what_one_payment_of_the_subscription_charges(items):
    rows, charge = stored(items)
    lines, totals = invoice_lines(rows, PERIOD)
    assert totals.subtotal == sum(r["unit_amount"] * r["quantity"] for r in rows)
    assert totals.discount == sum(r["unit_discount"] * r["quantity"] for r in rows)
    assert totals.tax == sum(line["tax"] for line in lines) == charge.tax
    assert totals.subtotal - totals.discount == charge.subtotal == sum(line["amount"] for line in lines)
    assert totals.total == totals.subtotal - totals.discount + totals.tax == charge.total
    assert 0 <= totals.discount <= totals.subtotal and totals.tax >= 0
    assert all(line["period_start"] == "2027-04-30" and line["period_end"] == "2027-05-30" for line in lines)


# == due dates and overdue ========================================================================
@pytest.mark.parametrize(
    ("terms", "due"),
    [
        (None, date(2027, 3, 10)),
        (0, date(2027, 3, 10)),
        (7, date(2027, 3, 17)),
        (15, date(2027, 3, 25)),
        (30, date(2027, 4, 9)),  # decision 35: net 30 from 10 March is 9 April
        (45, date(2027, 4, 24)),
        (60, date(2027, 5, 9)),
        (90, date(2027, 6, 8)),
    ],
)
def test_due_date_for_each_payment_term(terms, due):
    assert due_date(date(2027, 3, 10), terms) == due


@settings(deadline=None, max_examples=200)
@given(anchors, st.sampled_from(PAYMENT_TERMS))
def test_due_date_is_n_days_after_issue(issue, terms):
    assert (due_date(issue, terms) - issue).days == terms


def test_overdue_only_after_the_due_date_and_only_while_open():
    due = date(2027, 4, 9)
    assert not is_overdue("open", due, date(2027, 4, 8))
    assert not is_overdue("open", due, due)  # the due date itself is on time
    assert is_overdue("open", due, date(2027, 4, 10))
    for status in ("paid", "void", "uncollectible", "draft"):
        assert not is_overdue(status, due, date(2030, 1, 1))
    assert set(PAYABLE) == {"open", "uncollectible"}


@settings(deadline=None, max_examples=200)
@given(
    st.sampled_from(["open", "paid", "void", "uncollectible", "draft"]),
    anchors,
    st.sampled_from(PAYMENT_TERMS),
    st.integers(-100, 100),
)
def test_overdue_rule(status, issue, terms, days):
    due = due_date(issue, terms)
    assert is_overdue(status, due, due + timedelta(days=days)) == (status == "open" and days > 0)


# == settings ======================================================================================
def test_settings_defaults():
    assert resolve_settings(None, None) == InvoiceSettings(
        language="en",
        locale="en_US",
        comments=None,
        tax_ids=[],
        online_payment=True,
        payment_methods=["card"],
        collect_billing_address=False,
        collect_shipping_address=False,
    )


def test_settings_take_the_accounts_language_and_its_locale():
    chosen = resolve_settings({}, {"language": "sv"})
    assert (chosen.language, chosen.locale) == ("sv", "sv_SE")
    chosen = resolve_settings({"language": "en", "locale": "en-GB"}, {"language": "sv"})
    assert (chosen.language, chosen.locale) == ("en", "en_GB")
    chosen = resolve_settings({"language": "de"}, None)  # unsupported: English
    assert (chosen.language, chosen.locale) == ("en", "en_US")
    assert resolve_settings({"language": "sv", "locale": "not a locale"}, None).locale == "sv_SE"


def test_settings_given():
    chosen = resolve_settings(
        {
            "comments": "Thanks!",
            "tax_ids": ["SE556677889901"],
            "online_payment": False,
            "payment_methods": ["sepa_debit", "cheque", "card"],
            "collect_billing_address": True,
            "collect_shipping_address": 1,
        },
        None,
    )
    assert chosen.comments == "Thanks!" and chosen.tax_ids == ["SE556677889901"]
    assert chosen.payment_methods == ["sepa_debit", "card"]  # unknown methods dropped
    assert chosen.payment_settings() == {
        "online_payment": False,
        "payment_methods": ["sepa_debit", "card"],
        "collect_billing_address": True,
        "collect_shipping_address": True,
    }


def test_settings_aliases_and_odd_values():
    assert resolve_settings({"memo": "Hi"}, None).comments == "Hi"
    assert resolve_settings({"comments": "", "memo": None}, None).comments is None
    assert resolve_settings({"accept_online_payment": False}, None).online_payment is False
    assert resolve_settings({"online_payment": None}, None).online_payment is True  # only False turns it off
    assert resolve_settings({"tax_ids": "SE1"}, None).tax_ids == ["SE1"]
    assert resolve_settings({"payment_methods": ["cheque"]}, None).payment_methods == ["card"]
    assert resolve_settings({"payment_methods": []}, None).payment_methods == ["card"]
    assert set(PAYMENT_METHODS) == {"card", "us_bank_account", "sepa_debit", "bacs_debit"}


def test_a_pause_does_not_use_up_a_fixed_term_of_invoices():
    """Monthly, 3 payments, invoiced from 2027-01-31; period 0 invoiced, then paused and
    resumed on 2027-04-15 (position 3, 30 April): two invoices are still to come."""
    from datetime import date as _date

    from services.billing.invoices.amounts import due_periods

    due = due_periods(
        anchor=_date(2027, 1, 31),
        interval="monthly",
        next_index=3,
        today=_date(2027, 4, 30),
        payments_total=3,
        end_date=None,
        issued=1,
    )
    assert [p.index for p in due.periods] == [3]
    assert due.next_index == 4 and due.next_payment_date == _date(2027, 5, 31)
    after = due_periods(
        anchor=_date(2027, 1, 31),
        interval="monthly",
        next_index=4,
        today=_date(2027, 5, 31),
        payments_total=3,
        end_date=None,
        issued=2,
    )
    assert [p.index for p in after.periods] == [4] and after.next_payment_date is None
