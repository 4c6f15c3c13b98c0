"""services.billing.reminders.policy (PRODUCT §6.4): upcoming-payment reminders —
hand-computed examples and properties."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.billing.reminders.policy import (
    SHORTEST_PERIOD_DAYS,
    InvalidReminderPolicy,
    RemindedSubscription,
    ReminderDue,
    ReminderPolicy,
    interval_has_reminders,
    reminder_at,
    reminders_due,
)
from shared.accounts import SubscriptionSettings
from shared.clock import day_start
from shared.schedule import INTERVALS, UnknownInterval, first_index_on_or_after, nth_date, payment_dates

UTC_TZ = ZoneInfo("UTC")
STOCKHOLM = ZoneInfo("Europe/Stockholm")
ON = ReminderPolicy(enabled=True)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# -- examples -------------------------------------------------------------------------------
def test_fourteen_days_before_each_monthly_charge_at_the_start_of_the_local_day():
    assert ON.lead_days == 14
    # Monthly from 31 January: 28 February, 31 March, 30 April (CET, then CEST from 28 March).
    assert reminder_at(ON, "monthly", date(2027, 2, 28), STOCKHOLM) == utc(2027, 2, 13, 23)
    assert reminder_at(ON, "monthly", date(2027, 3, 31), STOCKHOLM) == utc(2027, 3, 16, 23)
    assert reminder_at(ON, "monthly", date(2027, 4, 30), STOCKHOLM) == utc(2027, 4, 15, 22)
    assert reminder_at(ReminderPolicy(True, 3), "weekly", date(2027, 2, 7), UTC_TZ) == utc(2027, 2, 4)
    assert reminder_at(ReminderPolicy(enabled=False), "monthly", date(2027, 2, 28), UTC_TZ) is None


@pytest.mark.parametrize(
    ("interval", "lead", "expected"),
    [
        ("weekly", 14, False),
        ("weekly", 6, True),
        ("weekly", 7, False),
        ("biweekly", 14, False),  # "longer than the lead time": equal is not longer
        ("biweekly", 13, True),
        ("monthly", 14, True),
        ("monthly", 27, True),
        ("monthly", 28, False),  # February has 28 days
        ("monthly", 30, False),
        ("quarterly", 88, True),
        ("quarterly", 89, False),
        ("semiannually", 180, True),
        ("semiannually", 181, False),
        ("annually", 364, True),
        ("annually", 365, False),
        ("every_5_years", 365, True),
    ],
)
def test_only_intervals_longer_than_the_lead_time(interval, lead, expected):
    assert interval_has_reminders(interval, lead) is expected
    got = reminder_at(ReminderPolicy(True, lead), interval, date(2027, 6, 30), UTC_TZ)
    assert (got is not None) is expected


def test_unknown_interval():
    with pytest.raises(UnknownInterval):
        interval_has_reminders("daily", 1)


def test_charges_due_a_reminder_in_a_window():
    subs = [
        RemindedSubscription("sub_a", date(2027, 1, 31), "monthly", first_charge_automatic=False),
        RemindedSubscription("sub_b", date(2027, 1, 1), "weekly"),  # not longer than 14 days
        RemindedSubscription("sub_c", date(2026, 2, 20), "annually", first_charge_automatic=False),
        # A delayed start 10 days after creation: its first reminder would precede the subscription.
        RemindedSubscription("sub_d", date(2027, 2, 20), "monthly", created_at=utc(2027, 2, 10, 12)),
        RemindedSubscription("sub_e", date(2026, 12, 15), "monthly", payments=2),  # over by February
        RemindedSubscription("sub_f", date(2026, 11, 25), "monthly", end_date=date(2027, 2, 24)),
        RemindedSubscription("sub_g", date(2027, 2, 20), "monthly", created_at=utc(2027, 1, 1)),
        RemindedSubscription("sub_h", date(2026, 11, 30), "quarterly", first_charge_automatic=False),
        RemindedSubscription("sub_i", date(2027, 3, 10), "monthly", created_at=utc(2027, 1, 20)),
        RemindedSubscription("sub_j", date(2027, 3, 15), "monthly"),  # reminder at the window's end
    ]
    due = reminders_due(ON, subs, window_from=utc(2027, 2, 1), window_to=utc(2027, 3, 1), tz=UTC_TZ)
    assert [(r.subscription_id, r.charge_date, r.remind_at) for r in due] == [
        ("sub_c", date(2027, 2, 20), utc(2027, 2, 6)),
        ("sub_g", date(2027, 2, 20), utc(2027, 2, 6)),
        ("sub_a", date(2027, 2, 28), utc(2027, 2, 14)),
        ("sub_h", date(2027, 2, 28), utc(2027, 2, 14)),
        ("sub_i", date(2027, 3, 10), utc(2027, 2, 24)),
    ]
    assert due[0].charge_at == utc(2027, 2, 20)
    assert due[0].key == ("sub_c", date(2027, 2, 20))
    assert due[0].idempotency_key == "reminder:sub_c:2027-02-20"
    later = reminders_due(ON, subs, window_from=utc(2027, 3, 1), window_to=utc(2027, 3, 2), tz=UTC_TZ)
    assert [r.key for r in later] == [("sub_j", date(2027, 3, 15))]
    assert (
        reminders_due(ReminderPolicy(), subs, window_from=utc(2027, 1, 1), window_to=utc(2028, 1, 1), tz=UTC_TZ) == ()
    )
    assert reminders_due(ON, subs, window_from=utc(2027, 2, 1), window_to=utc(2027, 2, 1), tz=UTC_TZ) == ()


def test_the_first_payment_taken_at_checkout_gets_no_reminder_but_a_delayed_first_charge_does():
    window = {"window_from": utc(2027, 1, 1), "window_to": utc(2027, 3, 1), "tz": UTC_TZ}
    at_checkout = RemindedSubscription("sub_x", date(2027, 2, 20), "monthly", first_charge_automatic=False)
    delayed = RemindedSubscription("sub_y", date(2027, 2, 20), "monthly", created_at=utc(2027, 1, 2))
    assert reminders_due(ON, [at_checkout], **window) == ()
    assert [r.charge_date for r in reminders_due(ON, [delayed], **window)] == [date(2027, 2, 20)]


def test_window_refusals():
    with pytest.raises(ValueError, match="time zone"):
        reminders_due(ON, [], window_from=datetime(2027, 1, 1), window_to=utc(2027, 2, 1), tz=UTC_TZ)
    with pytest.raises(ValueError, match="ends before"):
        reminders_due(ON, [], window_from=utc(2027, 2, 1), window_to=utc(2027, 1, 1), tz=UTC_TZ)
    daily = [RemindedSubscription("s", date(2027, 1, 1), "daily")]
    with pytest.raises(UnknownInterval):
        reminders_due(ON, daily, window_from=utc(2027, 1, 1), window_to=utc(2027, 2, 1), tz=UTC_TZ)


def test_settings_shape():
    assert ReminderPolicy.from_settings(SubscriptionSettings().model_dump()) == ReminderPolicy(False, 14)
    got = ReminderPolicy.from_settings({"reminders_enabled": True, "reminder_days": 7, "retry_schedule_days": [1]})
    assert got == ReminderPolicy(True, 7)
    assert got.to_settings() == {"reminders_enabled": True, "reminder_days": 7}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reminder_days": 0}, "reminder_days"),
        ({"reminder_days": 366}, "reminder_days"),
        ({"reminder_days": "14"}, "reminder_days"),
        ({"reminder_days": True}, "reminder_days"),
        ({"reminder_days": None}, "reminder_days"),
        ({"reminders_enabled": "yes"}, "reminders_enabled"),
        ({"reminders_enabled": 1}, "reminders_enabled"),
    ],
)
def test_invalid_settings_name_the_field(body, field):
    with pytest.raises(InvalidReminderPolicy) as exc:
        ReminderPolicy.from_settings(body, field_prefix="subscription_settings.")
    assert exc.value.field == f"subscription_settings.{field}"
    assert exc.value.errors == [{"field": exc.value.field, "message": exc.value.message}]


def test_shortest_periods_are_reached_and_never_undercut():
    assert set(SHORTEST_PERIOD_DAYS) == set(INTERVALS)
    shortest = dict.fromkeys(INTERVALS, 10**6)
    # Every anchor in 2095-2105 (2100 is not a leap year), every period up to the 6th.
    day = date(2095, 1, 1)
    while day < date(2106, 1, 1):
        for interval in INTERVALS:
            dates = [nth_date(day, interval, n) for n in range(7)]
            shortest[interval] = min(shortest[interval], *((b - a).days for a, b in pairwise(dates)))
        day += timedelta(days=1)
    assert shortest == SHORTEST_PERIOD_DAYS


# -- properties -----------------------------------------------------------------------------
ZONES = [ZoneInfo(z) for z in ("UTC", "Europe/Stockholm", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata")]
leads = st.integers(1, 365)
anchors = st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 31))


@settings(max_examples=500, deadline=None)
@given(anchors, st.sampled_from(INTERVALS), st.integers(0, 400))
def test_no_period_is_shorter_than_the_table(anchor, interval, n):
    assert (nth_date(anchor, interval, n + 1) - nth_date(anchor, interval, n)).days >= SHORTEST_PERIOD_DAYS[interval]


@settings(max_examples=500, deadline=None)
@given(anchors, st.sampled_from(INTERVALS), st.integers(1, 120), leads, st.sampled_from(ZONES))
def test_a_reminder_is_before_its_charge_and_after_the_previous_one(anchor, interval, n, lead, tz):
    charge, previous = nth_date(anchor, interval, n), nth_date(anchor, interval, n - 1)
    at = reminder_at(ReminderPolicy(True, lead), interval, charge, tz)
    if SHORTEST_PERIOD_DAYS[interval] <= lead:  # never for intervals not longer than the lead time
        assert at is None
        return
    assert at is not None
    assert at < day_start(charge, tz)
    assert at > day_start(previous, tz)
    assert at.astimezone(tz).date() == charge - timedelta(days=lead)


@settings(max_examples=500, deadline=None)
@given(anchors, st.sampled_from(INTERVALS), st.dates(min_value=date(2015, 1, 1), max_value=date(2040, 12, 31)))
def test_the_first_charge_on_or_after_a_day_is_found_directly(anchor, interval, day):
    n = first_index_on_or_after(anchor, interval, day)
    assert nth_date(anchor, interval, n) >= day
    assert n == 0 or nth_date(anchor, interval, n - 1) < day


subscriptions = st.builds(
    RemindedSubscription,
    subscription_id=st.sampled_from(["sub_1", "sub_2", "sub_3", "sub_4"]),
    anchor=st.dates(min_value=date(2024, 1, 1), max_value=date(2027, 12, 31)),
    interval=st.sampled_from(INTERVALS),
    payments=st.none() | st.integers(1, 40),
    end_date=st.none() | st.dates(min_value=date(2025, 1, 1), max_value=date(2028, 12, 31)),
    first_charge_automatic=st.booleans(),
    created_at=st.none() | st.integers(0, 4 * 365).map(lambda d: utc(2024, 1, 1) + timedelta(days=d, hours=7)),
)
instants = st.integers(0, 3 * 365 * 24).map(lambda h: utc(2025, 1, 1) + timedelta(hours=h))


def brute_force(policy, subs, start, end, tz):
    found = set()
    for sub in subs:
        for n, charge in enumerate(
            payment_dates(sub.anchor, sub.interval, payments=sub.payments, end_date=sub.end_date)
        ):
            if charge > date(2030, 1, 1):
                break
            at = reminder_at(policy, sub.interval, charge, tz)
            if at is None or not start <= at < end or (n == 0 and not sub.first_charge_automatic):
                continue
            if sub.created_at is None or at >= sub.created_at:
                found.add((sub.subscription_id, charge, at))
    return found


@settings(max_examples=300, deadline=None)
@given(st.lists(subscriptions, max_size=4), instants, instants, instants, leads, st.sampled_from(ZONES))
def test_windows_find_exactly_the_brute_force_reminders_and_partition(subs, a, b, c, lead, tz):
    start, middle, end = sorted((a, b, c))
    policy = ReminderPolicy(True, lead)
    whole = reminders_due(policy, subs, window_from=start, window_to=end, tz=tz)
    assert {(r.subscription_id, r.charge_date, r.remind_at) for r in whole} == brute_force(policy, subs, start, end, tz)
    assert all(start <= r.remind_at < end and r.remind_at < r.charge_at for r in whole)
    assert [(r.remind_at, r.subscription_id) for r in whole] == sorted((r.remind_at, r.subscription_id) for r in whole)
    first = reminders_due(policy, subs, window_from=start, window_to=middle, tz=tz)
    second = reminders_due(policy, subs, window_from=middle, window_to=end, tz=tz)
    assert set(first).isdisjoint(second)  # consecutive windows never share a reminder
    assert sorted(first + second, key=_order) == sorted(whole, key=_order)
    assert reminders_due(policy, subs, window_from=start, window_to=end, tz=tz) == whole  # deterministic


def _order(r: ReminderDue):
    return (r.remind_at, r.subscription_id, r.charge_date)
