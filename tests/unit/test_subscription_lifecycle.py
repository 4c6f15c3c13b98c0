"""services.billing.subscriptions.lifecycle (PRODUCT §6.3, §6.4; decisions 28, 33): where a
subscription's schedule stands after its birth, each payment and a resume — hand-computed
examples, then properties over whole simulated lives (payments, pauses, resumes)."""

from __future__ import annotations

from datetime import date, timedelta
from itertools import islice

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.billing.subscriptions.lifecycle import (
    CHARGEABLE,
    ENDED,
    Position,
    after_payment,
    at_birth,
    on_resume,
    period_end,
)
from shared.schedule import INTERVALS, UnknownInterval, nth_date, payment_dates

JAN31 = date(2027, 1, 31)


def born(anchor=JAN31, interval="monthly", payments_total=None, end_date=None, charged=True, today=None):
    return at_birth(
        anchor=anchor,
        interval=interval,
        payments_total=payments_total,
        end_date=end_date,
        first_payment_charged=charged,
        today=today or anchor,
    )


def pay(pos, anchor=JAN31, interval="monthly", payments_total=None, end_date=None, paid_index=None):
    return after_payment(
        pos,
        anchor=anchor,
        interval=interval,
        payments_total=payments_total,
        end_date=end_date,
        paid_index=pos.next_index if paid_index is None else paid_index,
    )


def resume(pos, today, anchor=JAN31, interval="monthly", end_date=None):
    paused = Position("paused", pos.payments_made, pos.next_index, None)  # pausing clears the date
    return on_resume(paused, anchor=anchor, interval=interval, end_date=end_date, today=today)


# -- hand-computed examples ---------------------------------------------------------------------
def test_status_sets():
    assert set(CHARGEABLE) == {"scheduled", "active"}
    assert set(ENDED) == {"canceled", "completed"}
    assert not set(CHARGEABLE) & set(ENDED)


def test_the_checkout_charge_is_payment_one_and_the_next_date_follows_the_anchor():
    pos = born()
    assert pos == Position("active", 1, 1, date(2027, 2, 28))
    pos = pay(pos)
    assert pos == Position("active", 2, 2, date(2027, 3, 31))
    pos = pay(pos)
    assert pos == Position("active", 3, 3, date(2027, 4, 30))  # 30 April, not 28 (anchor-based)
    pos = pay(pos)
    assert pos == Position("active", 4, 4, date(2027, 5, 31))


def test_monthly_from_the_31st_in_a_leap_year():
    pos = born(anchor=date(2028, 1, 31))
    assert pos.next_payment_date == date(2028, 2, 29)
    assert pay(pos, anchor=date(2028, 1, 31)).next_payment_date == date(2028, 3, 31)


@pytest.mark.parametrize(
    ("interval", "second", "third"),
    [
        ("weekly", date(2027, 2, 7), date(2027, 2, 14)),
        ("biweekly", date(2027, 2, 14), date(2027, 2, 28)),
        ("monthly", date(2027, 2, 28), date(2027, 3, 31)),
        ("quarterly", date(2027, 4, 30), date(2027, 7, 31)),
        ("semiannually", date(2027, 7, 31), date(2028, 1, 31)),
        ("annually", date(2028, 1, 31), date(2029, 1, 31)),
        ("every_2_years", date(2029, 1, 31), date(2031, 1, 31)),
        ("every_5_years", date(2032, 1, 31), date(2037, 1, 31)),
    ],
)
def test_each_interval_from_birth(interval, second, third):
    pos = born(interval=interval)
    assert pos.next_payment_date == second
    assert pay(pos, interval=interval).next_payment_date == third


def test_a_fixed_term_of_three_completes_with_its_third_payment():
    pos = born(payments_total=3)
    assert pos == Position("active", 1, 1, date(2027, 2, 28))
    pos = pay(pos, payments_total=3)
    assert pos == Position("active", 2, 2, date(2027, 3, 31))
    pos = pay(pos, payments_total=3)
    assert pos == Position("completed", 3, 3, None)


def test_a_fixed_term_of_one_is_complete_at_checkout():
    assert born(payments_total=1) == Position("completed", 1, 1, None)


def test_an_end_date_is_inclusive_and_never_exceeded():
    # end on 30 April: the 30 April date is still charged, then nothing
    end = date(2027, 4, 30)
    pos = born(end_date=end)
    for expected in (date(2027, 2, 28), date(2027, 3, 31), date(2027, 4, 30)):
        assert pos.status == "active" and pos.next_payment_date == expected
        pos = pay(pos, end_date=end)
    assert pos == Position("completed", 4, 4, None)
    # end on 29 April: 31 March is the last payment
    end = date(2027, 4, 29)
    pos = pay(pay(born(end_date=end), end_date=end), end_date=end)
    assert pos == Position("completed", 3, 3, None)


def test_an_end_date_on_the_anchor_completes_at_checkout():
    assert born(end_date=JAN31) == Position("completed", 1, 1, None)


def test_a_delayed_start_is_scheduled_and_charged_on_its_start_date():
    start = date(2027, 3, 1)
    pos = born(anchor=start, charged=False, today=JAN31)
    assert pos == Position("scheduled", 0, 0, start)
    pos = pay(pos, anchor=start)  # the scheduler charges 1 March
    assert pos == Position("active", 1, 1, date(2027, 4, 1))


def test_an_uncharged_start_today_is_active_and_due_today():
    # e.g. an API subscription without a payment method yet: payments_made stays 0
    assert born(charged=False, today=JAN31) == Position("active", 0, 0, JAN31)
    # (a start in the past — not allowed by the API — would be due at once as well)
    assert born(charged=False, today=date(2027, 2, 5)) == Position("active", 0, 0, JAN31)


def test_a_delayed_fixed_term_counts_its_payments_from_the_start_date():
    start = date(2027, 3, 31)
    pos = born(anchor=start, payments_total=2, charged=False, today=JAN31)
    assert pos == Position("scheduled", 0, 0, start)
    pos = pay(pos, anchor=start, payments_total=2)
    assert pos == Position("active", 1, 1, date(2027, 4, 30))
    assert pay(pos, anchor=start, payments_total=2) == Position("completed", 2, 2, None)


def test_a_late_payment_of_an_earlier_date_does_not_move_the_schedule_back():
    pos = Position("past_due", 3, 5, nth_date(JAN31, "monthly", 5))
    after = pay(pos, paid_index=2)
    assert after == Position("active", 4, 5, date(2027, 6, 30))


def test_a_payment_of_a_later_date_moves_the_schedule_past_it():
    pos = Position("active", 1, 1, date(2027, 2, 28))
    assert pay(pos, paid_index=3) == Position("active", 2, 4, date(2027, 5, 31))


def test_resume_keeps_the_anchor_and_skips_the_paused_dates():
    pos = born()  # paid 31 January, next 28 February; paused
    # resumed 15 April: 28 February and 31 March are skipped, 30 April is next (anchor day 31)
    after = resume(pos, date(2027, 4, 15))
    assert after == Position("active", 1, 3, date(2027, 4, 30))
    # and the dates after it still follow the anchor
    assert pay(after) == Position("active", 2, 4, date(2027, 5, 31))


def test_resume_on_a_payment_date_makes_that_date_due():
    assert resume(born(), date(2027, 3, 31)) == Position("active", 1, 2, date(2027, 3, 31))


def test_resume_before_the_next_date_changes_nothing_but_the_status():
    pos = pay(born())  # next 31 March
    assert resume(pos, date(2027, 3, 2)) == Position("active", 2, 2, date(2027, 3, 31))


def test_resume_of_a_subscription_that_never_paid():
    start = date(2027, 6, 15)
    pos = born(anchor=start, charged=False, today=JAN31)  # scheduled, paused before its start
    assert resume(pos, date(2027, 3, 1), anchor=start) == Position("scheduled", 0, 0, start)
    assert resume(pos, start, anchor=start) == Position("active", 0, 0, start)
    # after its start date too: a subscription stays `scheduled` until its first payment
    # (decision 33; tests/e2e/test_subscriptions_api.py expects this after a resume)
    assert resume(pos, date(2027, 7, 1), anchor=start) == Position("scheduled", 0, 1, date(2027, 7, 15))


def test_resume_after_the_end_date_completes():
    end = date(2027, 5, 15)
    pos = born(end_date=end)
    assert resume(pos, date(2027, 4, 30), end_date=end) == Position("active", 1, 3, date(2027, 4, 30))
    assert resume(pos, date(2027, 5, 1), end_date=end) == Position("completed", 1, 4, None)
    assert resume(pos, date(2030, 1, 1), end_date=end).status == "completed"


def test_a_paused_fixed_term_still_takes_all_its_payments():
    # 3 payments; paused after the first for two periods: the term runs longer, not shorter
    pos = born(payments_total=3)
    pos = resume(pos, date(2027, 4, 1))
    assert pos == Position("active", 1, 3, date(2027, 4, 30))
    pos = pay(pos, payments_total=3)
    assert pos == Position("active", 2, 4, date(2027, 5, 31))
    assert pay(pos, payments_total=3) == Position("completed", 3, 5, None)


def test_weekly_resume():
    anchor = date(2027, 1, 4)  # a Monday
    pos = born(anchor=anchor, interval="weekly")
    # resumed on Wednesday 20 January: next Monday 25 January (index 3)
    assert resume(pos, date(2027, 1, 20), anchor=anchor, interval="weekly") == Position(
        "active", 1, 3, date(2027, 1, 25)
    )


def test_period_end_is_the_next_payment_date():
    assert period_end(JAN31, "monthly", 0) == date(2027, 2, 28)
    assert period_end(JAN31, "monthly", 1) == date(2027, 3, 31)
    assert period_end(JAN31, "weekly", 0) == date(2027, 2, 7)
    assert period_end(JAN31, "annually", 1) == date(2029, 1, 31)
    assert period_end(date(2027, 2, 28), "quarterly", 0) == date(2027, 5, 28)


def test_unknown_intervals_are_refused():
    with pytest.raises(UnknownInterval):
        born(interval="daily")
    with pytest.raises(UnknownInterval):
        period_end(JAN31, "fortnightly", 0)


# -- properties -----------------------------------------------------------------------------------
anchors = st.dates(min_value=date(2000, 1, 1), max_value=date(2200, 12, 31))
CAP = 60  # payments simulated per life at most


@st.composite
def terms(draw):
    """(anchor, interval, payments_total, end_date): renewing, a fixed term, or until an end
    date (on a payment date, or any day after the anchor)."""
    anchor = draw(anchors)
    interval = draw(st.sampled_from(INTERVALS))
    kind = draw(st.sampled_from(["renews", "fixed", "until_date", "until_day"]))
    payments_total = draw(st.integers(1, 30)) if kind == "fixed" else None
    end_date = None
    if kind == "until_date":
        end_date = nth_date(anchor, interval, draw(st.integers(0, 30)))
    elif kind == "until_day":
        end_date = anchor + timedelta(days=draw(st.integers(0, 400)))
    return anchor, interval, payments_total, end_date


def check_position(pos, anchor, interval, end_date):
    """What holds for every position: the date is the anchor's date of ``next_index``,
    never past the end, and only an ended subscription has none."""
    assert pos.payments_made >= 0 and pos.next_index >= 0
    if pos.next_payment_date is None:
        assert pos.status == "completed"
    else:
        assert pos.status in ("scheduled", "active")
        assert pos.next_payment_date == nth_date(anchor, interval, pos.next_index)
        assert end_date is None or pos.next_payment_date <= end_date


@settings(deadline=None, max_examples=400)
@given(terms(), st.booleans(), st.integers(0, 400))
def test_a_life_without_pauses_pays_exactly_the_schedule(term, charged, days_before):
    anchor, interval, payments_total, end_date = term
    today = anchor if charged else anchor - timedelta(days=days_before)
    pos = at_birth(
        anchor=anchor,
        interval=interval,
        payments_total=payments_total,
        end_date=end_date,
        first_payment_charged=charged,
        today=today,
    )
    check_position(pos, anchor, interval, end_date)
    paid = [anchor] if charged else []
    if not charged:
        assert pos == Position("scheduled" if days_before else "active", 0, 0, anchor)
    while pos.next_payment_date is not None and len(paid) < CAP:
        paid.append(pos.next_payment_date)
        after = after_payment(
            pos,
            anchor=anchor,
            interval=interval,
            payments_total=payments_total,
            end_date=end_date,
            paid_index=pos.next_index,
        )
        check_position(after, anchor, interval, end_date)
        assert after.payments_made == pos.payments_made + 1
        assert after.next_index == pos.next_index + 1
        assert after.status in ("active", "completed")
        pos = after
    assert pos.payments_made == len(paid)
    expected = list(islice(payment_dates(anchor, interval, payments=payments_total, end_date=end_date), CAP))
    assert paid == expected[: len(paid)]
    if pos.status == "completed":
        assert paid == expected  # every date of the terms, none more
        if payments_total is not None:
            assert pos.payments_made == payments_total
        if end_date is not None:
            assert nth_date(anchor, interval, pos.next_index) > end_date
    else:
        assert len(paid) == CAP  # only the cap stopped it
    if payments_total is not None:
        assert pos.payments_made <= payments_total


@settings(deadline=None, max_examples=300)
@given(anchors, st.sampled_from(INTERVALS), st.integers(1, 40))
def test_a_fixed_term_of_n_completes_exactly_after_n_payments(anchor, interval, n):
    pos = at_birth(
        anchor=anchor, interval=interval, payments_total=n, end_date=None, first_payment_charged=True, today=anchor
    )
    for made in range(1, n):
        assert pos.status == "active" and pos.payments_made == made
        assert pos.next_payment_date == nth_date(anchor, interval, made)
        pos = after_payment(
            pos, anchor=anchor, interval=interval, payments_total=n, end_date=None, paid_index=pos.next_index
        )
    assert pos == Position("completed", n, n, None)


events = st.lists(
    st.one_of(st.just(("pay", 0)), st.tuples(st.just("pause"), st.integers(0, 800))), min_size=1, max_size=25
)


@settings(deadline=None, max_examples=400)
@given(terms(), st.booleans(), events)
def test_a_life_with_pauses_keeps_the_anchor_and_never_charges_a_paused_date(term, charged, steps):
    anchor, interval, payments_total, end_date = term
    today = anchor
    pos = at_birth(
        anchor=anchor,
        interval=interval,
        payments_total=payments_total,
        end_date=end_date,
        first_payment_charged=charged,
        today=today,
    )
    paid = [0] if charged else []
    for kind, gap in steps:
        if pos.status == "completed":
            break
        if kind == "pay":
            today = max(today, pos.next_payment_date)  # charged on (or, after a delay, after) its date
            paid.append(pos.next_index)
            after = after_payment(
                pos,
                anchor=anchor,
                interval=interval,
                payments_total=payments_total,
                end_date=end_date,
                paid_index=pos.next_index,
            )
            assert after.payments_made == pos.payments_made + 1
            assert after.next_index == pos.next_index + 1
        else:
            today += timedelta(days=gap)  # paused now, resumed ``gap`` days later
            after = on_resume(
                Position("paused", pos.payments_made, pos.next_index, None),
                anchor=anchor,
                interval=interval,
                end_date=end_date,
                today=today,
            )
            assert after.payments_made == pos.payments_made
            assert after.next_index >= pos.next_index
            # the first date of the anchor's schedule on or after the resume day (or the
            # date that was next already, when it had not come yet)
            assert nth_date(anchor, interval, after.next_index) >= today
            if after.next_index > pos.next_index:
                assert nth_date(anchor, interval, after.next_index - 1) < today
            if after.status == "completed":
                assert end_date is not None and nth_date(anchor, interval, after.next_index) > end_date
            elif after.payments_made > 0:
                assert after.status == "active"
            else:
                assert after.status == ("scheduled" if after.next_payment_date > today else "active")
        check_position(after, anchor, interval, end_date)
        pos = after
    # payments are on distinct dates of the schedule, in order; fixed terms count payments
    assert paid == sorted(set(paid)) and pos.payments_made == len(paid)
    if payments_total is not None:
        assert pos.payments_made <= payments_total
        assert (pos.status == "completed") == (pos.payments_made == payments_total)
    if end_date is not None:
        assert all(nth_date(anchor, interval, i) <= end_date for i in paid)


@settings(deadline=None, max_examples=300)
@given(anchors, st.sampled_from(INTERVALS), st.integers(0, 30), st.integers(0, 3000))
def test_resume_gives_the_first_date_on_or_after_the_resume_day(anchor, interval, next_index, days):
    today = anchor + timedelta(days=days)
    pos = on_resume(
        Position("paused", 1, next_index, None), anchor=anchor, interval=interval, end_date=None, today=today
    )
    dates = list(islice(payment_dates(anchor, interval), pos.next_index + 2))
    candidates = [i for i, d in enumerate(dates) if d >= today and i >= next_index]
    assert pos == Position("active", 1, candidates[0], dates[candidates[0]])


@settings(deadline=None, max_examples=300)
@given(anchors, st.sampled_from(INTERVALS), st.integers(0, 120))
def test_period_end_is_the_following_payment_date(anchor, interval, index):
    end = period_end(anchor, interval, index)
    assert end == nth_date(anchor, interval, index + 1) > nth_date(anchor, interval, index)
