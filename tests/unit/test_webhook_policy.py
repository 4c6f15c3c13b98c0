"""The webhook retry schedule (services/notifications/webhooks/policy.py; decision 62)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notifications.webhooks.policy import FAILING_AFTER, RETRY_SCHEDULE_S, is_failing, retry_delay


def test_the_documented_schedule():
    assert [retry_delay(n) for n in range(1, 9)] == [10, 60, 300, 1800, 7200, 21600, 21600, 21600]


@given(st.integers(min_value=1, max_value=10**9))
def test_never_gives_up_and_never_exceeds_the_cap(failures):
    delay = retry_delay(failures)
    assert 10 <= delay <= max(RETRY_SCHEDULE_S)


@given(st.integers(min_value=1, max_value=10**6))
def test_delays_never_shrink(failures):
    assert retry_delay(failures + 1) >= retry_delay(failures)


def test_a_custom_schedule_repeats_its_last_delay():
    assert [retry_delay(n, (1, 2)) for n in (1, 2, 3, 50)] == [1, 2, 2, 2]


@pytest.mark.parametrize(("failures", "schedule"), [(0, RETRY_SCHEDULE_S), (-1, RETRY_SCHEDULE_S), (1, ()), (1, (0,))])
def test_bad_inputs(failures, schedule):
    with pytest.raises(ValueError):
        retry_delay(failures, schedule)


def test_failing_after_five_failures_in_a_row():
    assert FAILING_AFTER == 5
    assert [is_failing(n) for n in (0, 1, 4, 5, 6, 1000)] == [False, False, False, True, True, True]
