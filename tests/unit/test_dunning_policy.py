"""services.billing.dunning.policy (PRODUCT §6.4, §11): retry policy, state machine,
timeline and dry run — hand-computed examples and properties."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.billing.dunning.policy import (
    DEFAULT_RETRY_DAYS,
    HARD_DECLINE_CODES,
    MAX_RETRIES,
    MAX_RETRY_DAY,
    METHOD_TYPES,
    Attempt,
    DunningClosed,
    InvalidAttempt,
    InvalidDryRun,
    InvalidRetryPolicy,
    PastFailure,
    RetryPolicy,
    apply,
    begin,
    day_start,
    decide,
    dry_run,
    is_hard_decline,
    on_new_payment_method,
    replay,
    timeline,
)
from shared.accounts import SubscriptionSettings

UTC_TZ = ZoneInfo("UTC")
STOCKHOLM = ZoneInfo("Europe/Stockholm")
JAN31 = date(2027, 1, 31)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def fail(at: datetime, trigger: str = "retry", method: str = "card", code: str | None = "insufficient_funds"):
    return Attempt(at=at, trigger=trigger, method_type=method, succeeded=False, decline_code=code)


def ok(at: datetime, trigger: str = "retry", method: str = "card"):
    return Attempt(at=at, trigger=trigger, method_type=method, succeeded=True)


# -- hand-computed examples -----------------------------------------------------------------
def test_default_schedule_from_a_31_january_failure_ends_canceled_on_14_february():
    policy = RetryPolicy()
    assert policy.retry_days == (1, 3, 7, 14) and policy.after_final_failure == "canceled"
    assert policy.schedule("card", JAN31, UTC_TZ) == (
        utc(2027, 2, 1),
        utc(2027, 2, 3),
        utc(2027, 2, 7),
        utc(2027, 2, 14),
    )

    run = begin(policy, JAN31, UTC_TZ)
    run, d = apply(run, fail(utc(2027, 1, 31, 0, 0, 5), "due"))
    assert (d.status, d.reason, d.next_retry_at, d.next_retry_number) == (
        "past_due",
        "retry_scheduled",
        utc(2027, 2, 1),
        1,
    )
    assert d.email_buyer_update_link and d.notify_recipients and d.final_outcome is None

    expected_next = [utc(2027, 2, 3), utc(2027, 2, 7), utc(2027, 2, 14)]
    for number, when in enumerate(expected_next, start=2):
        run, d = apply(run, fail(run.next_retry_at))
        assert (d.status, d.next_retry_at, d.next_retry_number) == ("past_due", when, number)
        assert d.email_buyer_update_link and d.notify_recipients

    run, d = apply(run, fail(utc(2027, 2, 14, 0, 0, 3)))
    assert (d.status, d.reason, d.final_outcome, d.next_retry_at) == ("canceled", "retries_exhausted", "canceled", None)
    assert not d.email_buyer_update_link  # the subscription is over: the cancellation notice says so
    assert d.notify_recipients
    assert run.retries_made == 4 and len(run.attempts) == 5 and run.final_at == utc(2027, 2, 14, 0, 0, 3)
    assert run.closed
    with pytest.raises(DunningClosed):
        apply(run, ok(utc(2027, 2, 15), "new_payment_method"))
    assert on_new_payment_method(run).retry_now is False


def test_retries_start_at_the_local_day_even_across_a_dst_change():
    # Stockholm: CET (+1) until 28 March 2027, CEST (+2) afterwards.
    assert RetryPolicy().schedule("card", date(2027, 3, 27), STOCKHOLM) == (
        utc(2027, 3, 27, 23),  # 28 March 00:00 CET
        utc(2027, 3, 29, 22),  # 30 March 00:00 CEST
        utc(2027, 4, 2, 22),
        utc(2027, 4, 9, 22),
    )
    assert day_start(JAN31, STOCKHOLM) == utc(2027, 1, 30, 23)
    # A day that starts in a DST gap starts when the clocks jump (Santiago: 00:00 → 01:00).
    assert day_start(date(2024, 9, 8), ZoneInfo("America/Santiago")) == utc(2024, 9, 8, 4)


def test_unpaid_keeps_the_update_link_and_the_buyer_can_still_recover():
    policy = RetryPolicy(retry_days=(2, 5), after_final_failure="unpaid")
    run = replay(policy, JAN31, UTC_TZ, [fail(utc(2027, 1, 31, 1), "due"), fail(utc(2027, 2, 2))])
    run, d = apply(run, fail(utc(2027, 2, 5)))
    assert (d.status, d.reason, d.final_outcome) == ("unpaid", "retries_exhausted", "unpaid")
    assert d.email_buyer_update_link and d.notify_recipients
    assert not run.closed
    with pytest.raises(InvalidAttempt):  # no more automatic retries
        apply(run, fail(utc(2027, 2, 9)))

    assert on_new_payment_method(run).retry_now is True
    still, d = apply(run, fail(utc(2027, 2, 20), "new_payment_method", code="card_declined"))
    assert (d.status, d.reason, d.email_buyer_update_link, d.notify_recipients) == (
        "unpaid",
        "still_unpaid",
        False,
        False,
    )
    done, d = apply(still, ok(utc(2027, 2, 21), "new_payment_method"))
    assert (d.status, d.reason, d.recovered) == ("active", "recovered", True)
    assert done.recovered_at == utc(2027, 2, 21) and done.closed and done.final_outcome is None


def test_recovery_on_the_second_retry_returns_to_active_and_ends_the_run():
    run = replay(RetryPolicy(), JAN31, UTC_TZ, [fail(utc(2027, 1, 31), "due"), fail(utc(2027, 2, 1, 0, 1))])
    run, d = apply(run, ok(utc(2027, 2, 3, 0, 1)))
    assert (d.status, d.reason, d.next_retry_at, d.final_outcome) == ("active", "recovered", None, None)
    assert not d.email_buyer_update_link and not d.notify_recipients  # the receipt follows as for any payment
    assert run.closed and run.retries_made == 2
    assert on_new_payment_method(run).reason == "nothing_due"
    with pytest.raises(DunningClosed):
        apply(run, fail(utc(2027, 2, 7)))


def test_a_paid_due_charge_is_no_dunning_at_all():
    run, d = apply(begin(RetryPolicy(), JAN31, UTC_TZ), ok(utc(2027, 1, 31, 0, 0, 1), "due"))
    assert (d.status, d.reason, d.recovered) == ("active", "paid", False)
    assert run.closed and timeline(run).final_outcome is None


@pytest.mark.parametrize(
    "code", ["stolen_card", "lost_card", "pickup_card", "fraudulent", "do_not_honor", "INVALID_NUMBER"]
)
def test_a_hard_decline_on_the_due_charge_skips_to_the_final_outcome(code):
    run, d = apply(begin(RetryPolicy(), JAN31, UTC_TZ), fail(utc(2027, 1, 31, 0, 5), "due", code=code))
    assert (d.status, d.reason, d.final_outcome, d.next_retry_at) == ("canceled", "hard_decline", "canceled", None)
    assert run.retries_made == 0 and run.final_at == utc(2027, 1, 31, 0, 5)


def test_a_hard_decline_on_a_retry_ends_the_run_as_unpaid_when_so_set():
    policy = RetryPolicy(after_final_failure="unpaid")
    run = replay(policy, JAN31, UTC_TZ, [fail(utc(2027, 1, 31), "due")])
    run, d = apply(run, fail(utc(2027, 2, 1), code="expired_card"))
    assert (d.status, d.reason, d.email_buyer_update_link, d.notify_recipients) == (
        "unpaid",
        "hard_decline",
        True,
        True,
    )
    assert run.retries_made == 1


@pytest.mark.parametrize(
    "code", [None, "", "insufficient_funds", "generic_decline", "card_declined", "processing_error", "try_again_later"]
)
def test_soft_declines(code):
    assert not is_hard_decline(code)


def test_hard_decline_set_covers_the_mission_classes():
    for code in ("stolen_card", "lost_card", "incorrect_number", "invalid_number", "do_not_honor", "do_not_try_again"):
        assert code in HARD_DECLINE_CODES
    for code in ("account_closed", "no_account", "debit_not_authorized"):  # bank debits
        assert is_hard_decline(code)


def test_schedules_per_method_type():
    policy = RetryPolicy(by_method={"sepa_debit": (3, 10), "us_bank_account": (5,)})
    assert policy.days_for("card") == DEFAULT_RETRY_DAYS
    assert policy.days_for("link") == DEFAULT_RETRY_DAYS  # types without a schedule use the default
    assert policy.schedule("sepa_debit", JAN31, UTC_TZ) == (utc(2027, 2, 3), utc(2027, 2, 10))

    run, d = apply(begin(policy, JAN31, UTC_TZ), fail(utc(2027, 1, 31, 6), "due", "sepa_debit"))
    assert d.next_retry_at == utc(2027, 2, 3)
    run, d = apply(run, fail(utc(2027, 2, 4), method="sepa_debit"))  # reported a day late
    assert d.next_retry_at == utc(2027, 2, 10)
    run, d = apply(run, fail(utc(2027, 2, 12), method="sepa_debit"))
    assert (d.status, d.reason) == ("canceled", "retries_exhausted") and run.retries_made == 2

    run, d = apply(begin(policy, JAN31, UTC_TZ), fail(utc(2027, 1, 31), "due", "us_bank_account"))
    run, d = apply(run, fail(utc(2027, 2, 5), method="us_bank_account"))
    assert d.status == "canceled"


def test_switching_method_type_follows_the_new_types_schedule_counting_retries_made():
    policy = RetryPolicy(by_method={"sepa_debit": (3, 10, 20)})
    run = replay(policy, JAN31, UTC_TZ, [fail(utc(2027, 1, 31), "due"), fail(utc(2027, 2, 1))])
    assert run.next_retry_at == utc(2027, 2, 3) and run.retries_made == 1
    # The buyer gives a bank account; it is tried at once and fails softly.
    run, d = apply(run, fail(utc(2027, 2, 2, 12), "new_payment_method", "sepa_debit", "insufficient_funds"))
    assert (d.status, d.next_retry_at, d.next_retry_number) == ("past_due", utc(2027, 2, 10), 2)
    assert not d.email_buyer_update_link and not d.notify_recipients  # the buyer is on the page
    assert timeline(run).planned_retries == (utc(2027, 2, 10), utc(2027, 2, 20))


def test_a_new_payment_method_is_retried_at_once_and_can_recover():
    run = replay(RetryPolicy(), JAN31, UTC_TZ, [fail(utc(2027, 1, 31), "due"), fail(utc(2027, 2, 1))])
    decision = on_new_payment_method(run)
    assert (decision.retry_now, decision.reason) == (True, "past_due")
    done, d = apply(run, ok(utc(2027, 2, 2, 9, 30), "new_payment_method"))
    assert (d.status, d.reason) == ("active", "recovered") and done.recovered_at == utc(2027, 2, 2, 9, 30)
    # A failed new method leaves the plan as it was; a hard decline on it ends the run.
    same, d = apply(run, fail(utc(2027, 2, 2, 9, 30), "new_payment_method", code="card_declined"))
    assert (d.status, d.next_retry_at) == ("past_due", utc(2027, 2, 3)) and same.retries_made == 1
    ended, d = apply(run, fail(utc(2027, 2, 2, 9, 30), "new_payment_method", code="stolen_card"))
    assert (d.status, d.reason, d.notify_recipients, d.email_buyer_update_link) == (
        "canceled",
        "hard_decline",
        True,
        False,
    )
    assert on_new_payment_method(None).reason == "nothing_due"
    assert on_new_payment_method(ended).reason == "canceled"


def test_a_late_retry_catches_up_without_skipping_any():
    run = replay(RetryPolicy(), JAN31, UTC_TZ, [fail(utc(2027, 1, 31), "due")])
    run, d = apply(run, fail(utc(2027, 2, 5, 8)))  # retry 1 ran four days late (downtime)
    assert d.next_retry_at == utc(2027, 2, 5, 8) and d.next_retry_number == 2  # retry 2's day has passed: now
    assert timeline(run).planned_retries == (utc(2027, 2, 5, 8), utc(2027, 2, 7), utc(2027, 2, 14))
    run, d = apply(run, fail(utc(2027, 2, 5, 8)))
    assert d.next_retry_at == utc(2027, 2, 7)


def test_an_empty_schedule_means_no_retries():
    run, d = apply(begin(RetryPolicy(retry_days=()), JAN31, UTC_TZ), fail(utc(2027, 1, 31), "due"))
    assert (d.status, d.reason, run.final_at) == ("canceled", "retries_exhausted", utc(2027, 1, 31))


def test_attempts_that_cannot_follow_the_run_are_refused():
    policy = RetryPolicy()
    fresh = begin(policy, JAN31, STOCKHOLM)
    with pytest.raises(InvalidAttempt, match="starts with the due charge"):
        apply(fresh, fail(utc(2027, 2, 1)))
    with pytest.raises(InvalidAttempt, match="cannot precede"):
        apply(fresh, fail(utc(2027, 1, 30, 22, 59), "due"))  # 23:59 on 30 January in Stockholm
    run, _ = apply(fresh, fail(utc(2027, 1, 30, 23), "due"))
    with pytest.raises(InvalidAttempt, match="not due before"):
        apply(run, fail(utc(2027, 1, 31, 22, 59)))
    with pytest.raises(InvalidAttempt, match="charged once"):
        apply(run, fail(utc(2027, 2, 1), "due"))
    with pytest.raises(InvalidAttempt, match="time order"):
        apply(run, fail(utc(2027, 1, 30, 22), "new_payment_method"))
    with pytest.raises(ValueError, match="time zone"):
        Attempt(at=datetime(2027, 2, 1), trigger="retry", method_type="card", succeeded=False)
    with pytest.raises(ValueError, match="trigger"):
        Attempt(at=utc(2027, 2, 1), trigger="manual", method_type="card", succeeded=False)


def test_decide_is_replay_then_apply():
    history = [fail(utc(2027, 1, 31), "due"), fail(utc(2027, 2, 1))]
    d = decide(RetryPolicy(), due_date=JAN31, tz=UTC_TZ, attempts=history, new=fail(utc(2027, 2, 3)))
    assert (d.status, d.next_retry_at, d.next_retry_number) == ("past_due", utc(2027, 2, 7), 3)


def test_timeline_shows_attempts_next_retry_and_final_date():
    run = replay(
        RetryPolicy(),
        JAN31,
        STOCKHOLM,
        [fail(utc(2027, 1, 30, 23, 0, 2), "due"), fail(utc(2027, 1, 31, 23, 0, 1), code="generic_decline")],
    )
    assert timeline(run).to_json() == {
        "status": "past_due",
        "failed_due_date": "2027-01-31",
        "attempts": [
            {
                "number": 0,
                "at": "2027-01-30T23:00:02Z",
                "trigger": "due",
                "method_type": "card",
                "outcome": "failed",
                "decline_code": "insufficient_funds",
                "hard_decline": False,
            },
            {
                "number": 1,
                "at": "2027-01-31T23:00:01Z",
                "trigger": "retry",
                "method_type": "card",
                "outcome": "failed",
                "decline_code": "generic_decline",
                "hard_decline": False,
            },
        ],
        "next_retry_at": "2027-02-02T23:00:00Z",
        "planned_retries": [
            {"number": 2, "at": "2027-02-02T23:00:00Z"},
            {"number": 3, "at": "2027-02-06T23:00:00Z"},
            {"number": 4, "at": "2027-02-13T23:00:00Z"},
        ],
        "final_outcome": "canceled",
        "final_outcome_at": "2027-02-13T23:00:00Z",
        "final_outcome_reached": False,
    }
    ended, _ = apply(run, fail(utc(2027, 2, 2, 23), code="lost_card"))
    view = timeline(ended).to_json()
    assert view["status"] == "canceled" and view["final_outcome_reached"] is True
    assert view["final_outcome_at"] == "2027-02-02T23:00:00Z" and view["next_retry_at"] is None
    assert view["planned_retries"] == [] and view["attempts"][-1]["hard_decline"] is True
    recovered, _ = apply(run, ok(utc(2027, 2, 2, 23)))
    view = timeline(recovered).to_json()
    assert (view["status"], view["final_outcome"], view["final_outcome_at"]) == ("active", None, None)
    assert view["attempts"][-1]["outcome"] == "succeeded" and view["attempts"][-1]["decline_code"] is None


# -- policy: validation and JSON ------------------------------------------------------------
def test_policy_from_the_accounts_settings_shape():
    assert RetryPolicy.from_settings(SubscriptionSettings().model_dump()) == RetryPolicy()
    assert RetryPolicy.from_settings({}) == RetryPolicy()
    settings_ = {
        "reminders_enabled": True,
        "reminder_days": 7,
        "retry_schedule_days": [2, 5],
        "retry_schedule_by_method": {"sepa_debit": [4, 9, 30], "card": [1]},
        "after_final_failure": "unpaid",
    }
    policy = RetryPolicy.from_settings(SubscriptionSettings.model_validate(settings_).model_dump())
    assert policy == RetryPolicy((2, 5), (("card", (1,)), ("sepa_debit", (4, 9, 30))), "unpaid")
    assert policy.to_settings() == {
        "retry_schedule_days": [2, 5],
        "retry_schedule_by_method": {"card": [1], "sepa_debit": [4, 9, 30]},
        "after_final_failure": "unpaid",
    }
    assert RetryPolicy.from_json(policy.to_settings()) == policy
    assert hash(policy) == hash(RetryPolicy.from_json(policy.to_settings()))


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"retry_schedule_days": [1, 3, 3]}, "retry_schedule_days", "strictly increasing"),
        ({"retry_schedule_days": [3, 1]}, "retry_schedule_days", "strictly increasing"),
        ({"retry_schedule_days": [0, 3]}, "retry_schedule_days", "between 1 and 60"),
        ({"retry_schedule_days": [1, MAX_RETRY_DAY + 1]}, "retry_schedule_days", "between 1 and 60"),
        ({"retry_schedule_days": list(range(1, MAX_RETRIES + 2))}, "retry_schedule_days", "at most 8"),
        ({"retry_schedule_days": [1, True]}, "retry_schedule_days", "whole day counts"),
        ({"retry_schedule_days": [1, 2.5]}, "retry_schedule_days", "whole day counts"),
        ({"retry_schedule_days": "1,3"}, "retry_schedule_days", "whole day counts"),
        ({"retry_schedule_days": None}, "retry_schedule_days", "whole day counts"),
        ({"retry_schedule_by_method": {"paypal": [1]}}, "retry_schedule_by_method.paypal", "must be one of"),
        ({"retry_schedule_by_method": {"card": [2, 1]}}, "retry_schedule_by_method.card", "strictly increasing"),
        ({"retry_schedule_by_method": [1]}, "retry_schedule_by_method", "must be an object"),
        ({"after_final_failure": "paused"}, "after_final_failure", "canceled or unpaid"),
        ({"after_final_failure": None}, "after_final_failure", "canceled or unpaid"),
        ({"retry_days": [1]}, "retry_days", "not a retry policy field"),
    ],
)
def test_invalid_policies_name_the_field(body, field, message):
    with pytest.raises(InvalidRetryPolicy) as exc:
        RetryPolicy.from_json(body, field_prefix="retry_policy.")
    assert exc.value.field == "retry_policy." + field
    assert message in exc.value.message
    assert exc.value.errors[0] == {"field": exc.value.field, "message": exc.value.message}


def test_every_error_is_reported_at_once_and_settings_keep_other_keys():
    with pytest.raises(InvalidRetryPolicy) as exc:
        RetryPolicy.from_json(
            {"retry_schedule_days": [2, 1], "after_final_failure": "x", "retry_schedule_by_method": {"card": [0]}}
        )
    assert [e["field"] for e in exc.value.errors] == [
        "after_final_failure",
        "retry_schedule_by_method.card",
        "retry_schedule_days",
    ]
    # Reading account settings ignores the reminder keys (and anything else).
    assert RetryPolicy.from_settings({"reminder_days": 3, "other": 1}) == RetryPolicy()
    with pytest.raises(InvalidRetryPolicy, match="must be an object"):
        RetryPolicy.from_json([1, 3])
    with pytest.raises(InvalidRetryPolicy, match="retry_schedule_days"):
        RetryPolicy(retry_days=(5, 5))


# -- dry run --------------------------------------------------------------------------------
def test_dry_run_on_hand_made_history():
    failures = [
        PastFailure("sub_a", JAN31, "card", "insufficient_funds", succeeded_at=utc(2027, 2, 2, 10)),
        PastFailure("sub_b", JAN31, "card", "generic_decline"),
        PastFailure("sub_c", JAN31, "card", "stolen_card", succeeded_at=utc(2027, 2, 9)),
        PastFailure("sub_d", JAN31, "card", "insufficient_funds", succeeded_at=utc(2027, 2, 20)),
        PastFailure("sub_e", date(2027, 2, 2), "sepa_debit", "insufficient_funds"),
    ]
    policy = RetryPolicy(by_method={"sepa_debit": (3,)})
    report = dry_run(policy, failures, UTC_TZ, as_of=utc(2027, 3, 1))
    a, b, c, d, e = report.results
    assert a.retries == (utc(2027, 2, 1), utc(2027, 2, 3)) and a.status == "active"
    assert a.recovered_at == utc(2027, 2, 3) and not a.gave_up_before_success
    assert b.retries == policy.schedule("card", JAN31, UTC_TZ) and b.status == "canceled"
    assert b.final_at == utc(2027, 2, 14) and not b.gave_up_before_success
    assert c.hard_decline and c.retries == () and c.final_at == utc(2027, 1, 31) and c.gave_up_before_success
    assert len(d.retries) == 4 and d.status == "canceled" and d.gave_up_before_success
    assert e.retries == (utc(2027, 2, 5),) and e.status == "canceled"
    assert report.summary() == {
        "failures": 5,
        "recovered": 1,
        "canceled": 4,
        "unpaid": 0,
        "still_retrying": 0,
        "hard_declines": 1,
        "retries": 2 + 4 + 0 + 4 + 1,
        "gave_up_before_success": 2,
    }
    body = report.to_json()
    assert body["retry_policy"]["retry_schedule_by_method"] == {"sepa_debit": [3]}
    assert body["results"][0] == {
        "key": "sub_a",
        "due_date": "2027-01-31",
        "method_type": "card",
        "decline_code": "insufficient_funds",
        "hard_decline": False,
        "retries": ["2027-02-01T00:00:00Z", "2027-02-03T00:00:00Z"],
        "status": "active",
        "recovered": True,
        "recovered_at": "2027-02-03T00:00:00Z",
        "final_outcome": None,
        "final_outcome_at": None,
        "actually_succeeded_at": "2027-02-02T10:00:00Z",
        "gave_up_before_success": False,
    }
    # A longer schedule would have saved sub_d; `as_of` stops at the account's now.
    longer = dry_run(RetryPolicy(retry_days=(1, 3, 7, 14, 21)), failures[3:4], UTC_TZ)
    assert longer.results[0].recovered_at == utc(2027, 2, 21)
    # A success at the very instant of a retry counts for that retry.
    exact = PastFailure("sub_f", JAN31, "card", "insufficient_funds", succeeded_at=utc(2027, 2, 3))
    assert dry_run(RetryPolicy(), [exact], UTC_TZ).results[0].recovered_at == utc(2027, 2, 3)
    pending = dry_run(RetryPolicy(), failures[1:2], UTC_TZ, as_of=utc(2027, 2, 5))
    assert pending.results[0].status == "past_due" and len(pending.results[0].retries) == 2
    assert pending.summary()["still_retrying"] == 1


def test_dry_run_refusals():
    with pytest.raises(InvalidDryRun) as exc:
        dry_run(RetryPolicy(), [PastFailure("x", JAN31, "card", succeeded_at=utc(2027, 1, 31))], UTC_TZ)
    assert exc.value.field == "failures[0].succeeded_at"
    with pytest.raises(InvalidDryRun):
        dry_run(RetryPolicy(), [PastFailure("x", JAN31, "card")] * 10_001, UTC_TZ)


# -- properties -----------------------------------------------------------------------------
ZONES = [ZoneInfo(z) for z in ("UTC", "Europe/Stockholm", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata")]
SOFT = ["insufficient_funds", "generic_decline", "card_declined", None]
HARD = sorted(HARD_DECLINE_CODES)

schedules = st.lists(st.integers(1, MAX_RETRY_DAY), max_size=MAX_RETRIES, unique=True).map(lambda d: tuple(sorted(d)))
policies = st.builds(
    RetryPolicy,
    retry_days=schedules,
    by_method=st.dictionaries(st.sampled_from(METHOD_TYPES), schedules, max_size=3).map(lambda m: tuple(m.items())),
    after_final_failure=st.sampled_from(["canceled", "unpaid"]),
)
due_dates = st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31))
methods = st.sampled_from(METHOD_TYPES)
delays = st.integers(0, 4 * 86_400).map(lambda s: timedelta(seconds=s))
outcomes = st.sampled_from(["ok", "soft", "soft", "soft", "hard"])
events = st.lists(st.tuples(st.sampled_from(["retry", "retry", "new_payment_method"]), outcomes, methods, delays))


def make(at, trigger, method, outcome, draw_code):
    if outcome == "ok":
        return Attempt(at, trigger, method, True)
    return Attempt(at, trigger, method, False, draw_code(st.sampled_from(HARD if outcome == "hard" else SOFT)))


@settings(max_examples=300, deadline=None)
@given(policies, st.sampled_from(METHOD_TYPES), due_dates, st.sampled_from(ZONES))
def test_scheduled_retries_are_strictly_increasing_and_after_the_failure(policy, method, due, tz):
    instants = policy.schedule(method, due, tz)
    assert len(instants) == len(policy.days_for(method)) <= MAX_RETRIES
    assert all(at > day_start(due, tz) for at in instants)
    assert all(a < b for a, b in pairwise(instants))


@settings(max_examples=400, deadline=None)
@given(policies, due_dates, st.sampled_from(ZONES), methods, outcomes, delays, events, st.data())
def test_the_state_machine_keeps_its_invariants(policy, due, tz, method, first, delay, steps, data):
    run = begin(policy, due, tz)
    longest = max([len(policy.retry_days), *(len(d) for _, d in policy.by_method)])
    attempt = make(run.due_at + delay, "due", method, first, data.draw)
    for trigger, outcome, method, delay in [("due", first, method, delay), *steps]:
        if trigger != "due":
            if run.closed:
                with pytest.raises(DunningClosed):
                    apply(run, make(run.attempts[-1].at + delay, trigger, method, outcome, data.draw))
                break
            if trigger == "retry" and run.next_retry_at is None:
                trigger = "new_payment_method"  # unpaid: only the buyer can act
            base = run.next_retry_at if trigger == "retry" else run.attempts[-1].at
            attempt = make(base + delay, trigger, method, outcome, data.draw)
        before = run
        run, d = apply(run, attempt)
        assert d.status == run.status
        assert run.retries_made == sum(a.trigger == "retry" for a in run.attempts) <= longest
        if attempt.succeeded:  # a success at any point ends dunning in active
            assert (d.status, run.closed, d.next_retry_at) == ("active", True, None)
            assert d.reason == ("paid" if trigger == "due" else "recovered")
        elif d.status == "past_due":
            assert not attempt.hard_decline
            assert d.next_retry_at is not None and d.next_retry_at >= attempt.at >= run.due_at
            assert d.next_retry_at > run.due_at
            assert d.next_retry_number == run.retries_made + 1 <= len(policy.days_for(method))
            scheduled = policy.schedule(method, due, tz)[run.retries_made]
            assert d.next_retry_at == max(scheduled, attempt.at)
            if before.next_retry_at is not None and trigger == "retry":
                assert d.next_retry_at >= before.next_retry_at
        else:
            assert d.status == policy.after_final_failure == run.final_outcome
            assert d.next_retry_at is None and run.next_retry_at is None
            if before.status != "unpaid":  # the final outcome comes from this failure
                assert attempt.hard_decline or run.retries_made >= len(policy.days_for(method))
                assert run.final_at == attempt.at and d.notify_recipients
        # The timeline always agrees with the state.
        view = timeline(run)
        assert view.next_retry_at == run.next_retry_at and view.attempts == run.attempts
        if run.status == "past_due":
            assert view.planned_retries[0] == run.next_retry_at
            assert view.final_at == view.planned_retries[-1] and not view.final_reached
            assert len(view.planned_retries) == len(policy.days_for(run.method_type)) - run.retries_made
    assert replay(policy, due, tz, run.attempts) == run


@settings(max_examples=300, deadline=None)
@given(policies, due_dates, st.sampled_from(ZONES), methods, st.sampled_from(SOFT), delays)
def test_all_soft_failures_on_time_make_exactly_the_policys_attempts_then_the_final_outcome(
    policy, due, tz, method, code, late
):
    run, d = apply(begin(policy, due, tz), Attempt(day_start(due, tz), "due", method, False, code))
    seen = []
    while d.status == "past_due":
        seen.append(d.next_retry_at)
        run, d = apply(run, Attempt(d.next_retry_at + min(late, timedelta(hours=23)), "retry", method, False, code))
    assert run.retries_made == len(policy.days_for(method))  # never more, never fewer
    assert seen == list(policy.schedule(method, due, tz))
    assert all(a < b for a, b in pairwise(seen))
    assert d.status == run.final_outcome == policy.after_final_failure
    assert d.reason == "retries_exhausted" and run.final_at == run.attempts[-1].at


@settings(max_examples=200, deadline=None)
@given(policies, due_dates, methods, st.sampled_from(SOFT), st.integers(0, MAX_RETRIES), st.booleans())
def test_a_success_at_any_retry_ends_dunning_in_active(policy, due, method, code, k, by_buyer):
    run, d = apply(begin(policy, due, UTC_TZ), Attempt(day_start(due, UTC_TZ), "due", method, False, code))
    for _ in range(k):
        if d.status != "past_due":
            break
        run, d = apply(run, Attempt(d.next_retry_at, "retry", method, False, code))
    if d.status == "canceled":
        assert run.closed
        return
    at = run.attempts[-1].at + timedelta(hours=1)
    trigger = "new_payment_method" if by_buyer or d.status == "unpaid" else "retry"
    if trigger == "retry":
        at = d.next_retry_at
    run, d = apply(run, Attempt(at, trigger, method, True))
    assert (d.status, d.reason, run.closed, run.recovered_at) == ("active", "recovered", True, at)


@settings(max_examples=200, deadline=None)
@given(policies)
def test_policies_round_trip_through_json(policy):
    assert RetryPolicy.from_json(policy.to_settings()) == policy
    assert RetryPolicy.from_settings({**policy.to_settings(), "reminders_enabled": True}) == policy


past_failures = st.builds(
    PastFailure,
    key=st.text(min_size=1, max_size=5),
    due_date=st.dates(min_value=date(2026, 1, 1), max_value=date(2026, 12, 31)),
    method_type=methods,
    decline_code=st.sampled_from(SOFT + HARD[:5]),
    succeeded_at=st.none() | st.integers(1, 80 * 86_400).map(lambda s: timedelta(seconds=s)),
)


@settings(max_examples=200, deadline=None)
@given(policies, st.lists(past_failures, max_size=8), st.sampled_from(ZONES), st.none() | st.integers(0, 400))
def test_dry_run_agrees_with_stepping_the_state_machine(policy, raw, tz, as_of_days):
    # succeeded_at was drawn as an offset after the due date's start.
    failures = [
        PastFailure(f.key, f.due_date, f.method_type, f.decline_code, None)
        if f.succeeded_at is None
        else PastFailure(f.key, f.due_date, f.method_type, f.decline_code, day_start(f.due_date, tz) + f.succeeded_at)
        for f in raw
    ]
    as_of = None if as_of_days is None else utc(2026, 1, 1) + timedelta(days=as_of_days)
    report = dry_run(policy, failures, tz, as_of=as_of)
    assert len(report.results) == len(failures)
    for f, r in zip(failures, report.results, strict=True):
        # Step the machine by hand.
        run, d = apply(
            begin(policy, f.due_date, tz), fail(day_start(f.due_date, tz), "due", f.method_type, f.decline_code)
        )
        while d.status == "past_due" and (as_of is None or d.next_retry_at <= as_of):
            at = d.next_retry_at
            good = f.succeeded_at is not None and at >= f.succeeded_at
            run, d = apply(run, Attempt(at, "retry", f.method_type, good, None if good else f.decline_code))
        assert (r.status, r.final_outcome, r.final_at, r.recovered_at) == (
            run.status,
            run.final_outcome,
            run.final_at,
            run.recovered_at,
        )
        assert r.retries == tuple(a.at for a in run.attempts[1:])
        # And in closed form.
        plan = policy.schedule(f.method_type, f.due_date, tz)
        if is_hard_decline(f.decline_code):
            assert r.retries == () and r.final_outcome == policy.after_final_failure
            continue
        made = [at for at in plan if as_of is None or at <= as_of]
        hit = [at for at in made if f.succeeded_at is not None and at >= f.succeeded_at]
        if hit:
            assert r.recovered_at == hit[0] and r.retries == tuple(at for at in made if at <= hit[0])
        else:
            assert r.recovered_at is None and r.retries == tuple(made)
            assert r.status == ("past_due" if len(made) < len(plan) else policy.after_final_failure)
    summary = report.summary()
    assert summary["recovered"] + summary["canceled"] + summary["unpaid"] + summary["still_retrying"] == len(failures)
