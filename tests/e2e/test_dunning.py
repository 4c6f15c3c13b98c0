"""Failed renewals: dunning on the test clock, the update link, hard declines (issue 4,
scope 4–5; TARGETS mission defaults: retries 1, 3, 7 and 14 days after the due date)."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.support.subscriptions import (
    advance,
    at,
    configure_processor,
    processor_intents,
    recurring_item,
    subscription_link,
    subscriptions_of,
    update_payment_method,
    wait_subscription,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

FAILS_WHEN_CHARGED = "4000000000000341"  # attaches, then every charge is declined


def processor_url(stack) -> str:
    return f"http://127.0.0.1:{stack.config.ports.test_processor}"


async def buy_monthly(api, buyer, email: str, day: str = "2027-03-10") -> dict:
    await advance(api, at(day, 9))
    link = await subscription_link(api, recurring_item("monthly", 2500))
    done = await buyer.pay(link["url"], email)
    assert done.status == 200, done.body
    (sub,) = await eventually(lambda: subscriptions_of(api, email))
    return sub


async def emails(api, kind: str) -> list[dict]:
    r = await api.get(f"/v1/emails?kind={kind}&limit=100")
    return r.body["data"]


async def test_a_card_failing_when_charged_walks_the_retry_schedule_to_canceled(api, buyer, account, http, stack):
    sub = await buy_monthly(api, buyer, "walks@example.com")
    updated = await update_payment_method(api, buyer, sub["id"], FAILS_WHEN_CHARGED)
    assert updated["retry"] is None  # nothing owed: the new card is only saved

    await advance(api, at("2027-04-10", 1))
    failed = await wait_subscription(api, sub["id"], status="past_due")
    assert failed["dunning"]["failed_due_date"] == "2027-04-10"
    assert [p["at"][:10] for p in failed["dunning"]["planned_retries"]] == [
        "2027-04-11",
        "2027-04-13",
        "2027-04-17",
        "2027-04-24",
    ]
    assert failed["dunning"]["final_outcome"] == "canceled"

    for n, day in enumerate(["2027-04-11", "2027-04-13", "2027-04-17"], start=2):
        await advance(api, at(day, 2))

        async def attempts_made(n=n):
            body = (await api.get(f"/v1/subscriptions/{sub['id']}")).body
            return body if len(body["dunning"]["attempts"]) == n else None

        state = await eventually(attempts_made, timeout=20)
        assert state["status"] == "past_due"
    await advance(api, at("2027-04-24", 2))
    ended = await wait_subscription(api, sub["id"], status="canceled")
    assert ended["next_payment_date"] is None
    assert len(ended["dunning"]["attempts"]) == 5 and ended["dunning"]["final_outcome_reached"]

    # Nothing more is ever tried.
    await advance(api, at("2027-06-30", 2))
    intents = await processor_intents(http, processor_url(stack), account["account_id"])
    billing = [i for i in intents if i["metadata"].get("commerce_charge_id")]
    assert len(billing) == 5 and all(i["status"] != "succeeded" for i in billing)
    assert len({i["metadata"]["commerce_attempt_id"] for i in billing}) == 5

    async def failure_mails():
        got = [e for e in await emails(api, "payment_failed") if e["to"] == "walks@example.com"]
        return got if len(got) == 4 else None

    mails = await eventually(failure_mails)  # one per failure with a retry still to come
    assert all(e["status"] == "sent" for e in mails)
    payments = (await api.get(f"/v1/payments?subscription_id={sub['id']}&limit=100")).body["data"]
    assert Counter(p["status"] for p in payments) == {"failed": 5}


async def test_a_new_card_through_the_update_link_recovers_a_past_due_subscription(api, buyer, account, http, stack):
    sub = await buy_monthly(api, buyer, "recovers@example.com")
    await update_payment_method(api, buyer, sub["id"], FAILS_WHEN_CHARGED)
    await advance(api, at("2027-04-10", 1))
    await wait_subscription(api, sub["id"], status="past_due")

    fixed = await update_payment_method(api, buyer, sub["id"], "4242424242424242")
    assert fixed["retry"]["status"] == "succeeded"  # retried at once, not at the next retry date
    recovered = await wait_subscription(api, sub["id"], status="active")
    assert recovered["payments_made"] == 2 and recovered["next_payment_date"] == "2027-05-10"

    # The planned retries are gone: the next charge is the May renewal, with the new card.
    await advance(api, at("2027-05-10", 1))
    await wait_subscription(api, sub["id"], payments_made=3, status="active")
    view = (await api.get(f"/api/payment-method/{fixed['token']}")).body
    assert view["subscription"]["status"] == "active" and view["subscription"]["amount_due"] == 0
    intents = await processor_intents(http, processor_url(stack), account["account_id"])
    ok = Counter(
        i["metadata"]["commerce_charge_id"]
        for i in intents
        if i["metadata"].get("commerce_charge_id") and i["status"] == "succeeded"
    )
    assert sorted(ok.values()) == [1, 1]


async def test_a_hard_decline_skips_the_retries(api, buyer, account, http, stack):
    sub = await buy_monthly(api, buyer, "stolen@example.com")
    # localstripe cannot produce a stolen-card decline: the test processor injects it at
    # the boundary our adapter talks to (the processor's answer to the off-session charge).
    await configure_processor(http, processor_url(stack), account["account_id"], force_decline_code="stolen_card")
    await advance(api, at("2027-04-10", 1))
    ended = await wait_subscription(api, sub["id"], status="canceled")
    timeline = ended["dunning"]
    assert len(timeline["attempts"]) == 1 and timeline["attempts"][0]["hard_decline"] is True
    assert timeline["planned_retries"] == [] and timeline["final_outcome_reached"]
    await advance(api, at("2027-05-01", 1))
    intents = await processor_intents(http, processor_url(stack), account["account_id"])
    assert [i for i in intents if i["metadata"].get("commerce_charge_id")] == []  # declined before an intent existed
    payments = (await api.get(f"/v1/payments?subscription_id={sub['id']}")).body["data"]
    assert [p["status"] for p in payments] == ["failed"]
