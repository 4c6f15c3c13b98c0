"""Subscription e-mails of notifications (PRODUCT §6.4, §8, §11), against real PostgreSQL
and a real SMTP sink: billing's events are delivered to the notifications actors exactly
as a worker runs them (`shared.inbox.consume`: inbox, handler, commit, send after
commit), and the assertions read the messages the sink received.

Exactly once is checked both ways an event repeats: the same envelope again (the inbox
absorbs it) and a new envelope about the same fact (the send ledger absorbs it)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest

from shared.events.models import (
    ChargedLine,
    PaymentFailedV1,
    PaymentSucceededV1,
    PurchaseCompletedV1,
    SubscriptionCharge,
    SubscriptionReminderDueV1,
    SubscriptionUpdatedV1,
    TaxRateRef,
)
from tests.support.mail import NBSP, deliver, ledger, messages, parts, subject_of, to
from tests.support.mail import envelope as _envelope
from tests.support.mail import new_account as _new_account

BUYER = "jane@example.com"
RECIPIENTS = ["ops@merchant.test", "finance@merchant.test"]
UPDATE_URL = "https://pay.example.test/subscriptions/update/tok_abc123"


@pytest.fixture
def ctx(notify_ctx):
    return notify_ctx


async def new_account(ctx, **settings) -> str:
    return await _new_account(
        ctx, "acct_subm", **{"notification_recipients": RECIPIENTS, "currencies": ["USD", "SEK"], **settings}
    )


def envelope(account_id: str, event):
    return _envelope(account_id, event)


LINES = [
    ChargedLine(
        name="Coffee beans",
        quantity=2,
        unit_amount=1000,
        unit_discount=100,
        amount=1800,
        tax=450,
        tax_rate=TaxRateRef(id="txr_vat", name="VAT", percentage="25"),
    ),
    ChargedLine(name="Mug rental", quantity=1, unit_amount=500, amount=500),
]


def charge(**changes) -> SubscriptionCharge:
    values = {
        "subscription_id": "sub_renew",
        "charge_id": "sch_1",
        "attempt_id": "satt_1",
        "period_index": 2,
        "due_date": date(2026, 3, 1),
        "trigger": "due",
        "interval": "monthly",
        "lines": LINES,
        "subtotal": 2300,
        "tax": 450,
        "contact_name": "Jane Doe",
        "status": "active",
        "payments_made": 3,
        "payments_total": 12,
        "next_payment_date": date(2026, 4, 1),
    }
    return SubscriptionCharge(**{**values, **changes})


def renewal(currency: str = "USD", **changes) -> PaymentSucceededV1:
    return PaymentSucceededV1(
        payment_id=f"pay_{uuid.uuid4().hex[:12]}",
        amount=2750,
        currency=currency,
        method_type="card",
        source={"type": "subscription", "id": "sub_renew"},
        email=BUYER,
        succeeded_at=datetime(2026, 3, 1, 7, 0, tzinfo=UTC),
        subscription=charge(**changes),
    )


def failure(currency: str = "USD", **changes) -> PaymentFailedV1:
    sub = {
        "status": "past_due",
        "payments_made": 2,
        "update_url": UPDATE_URL,
        # 23:00 UTC on 3 March is 4 March in Stockholm: the date is the account's.
        "next_retry_at": datetime(2026, 3, 3, 23, 0, tzinfo=UTC),
        "email_buyer": True,
        "notify_recipients": True,
        **changes,
    }
    return PaymentFailedV1(
        payment_id=f"pay_{uuid.uuid4().hex[:12]}",
        amount=2750,
        currency=currency,
        method_type="card",
        source={"type": "subscription", "id": "sub_renew"},
        email=BUYER,
        decline_code="insufficient_funds",
        failed_at=datetime(2026, 3, 1, 7, 0, tzinfo=UTC),
        subscription=charge(**sub),
    )


def reminder(currency: str = "USD", period_index: int = 3) -> SubscriptionReminderDueV1:
    return SubscriptionReminderDueV1(
        subscription_id="sub_renew",
        period_index=period_index,
        charge_date=date(2026, 4, 1),
        amount=2750,
        currency=currency,
        email=BUYER,
        contact_name="Jane Doe",
        lines=LINES,
        interval="monthly",
        update_url=UPDATE_URL,
    )


def status_update(status: str, previous: str | None, version: int, **changes) -> SubscriptionUpdatedV1:
    values = {
        "subscription_id": "sub_renew",
        "version": version,
        "status": status,
        "previous_status": previous,
        "email": BUYER,
        "contact_name": "Jane Doe",
        "currency": "USD",
        "amount": 2750,
        "interval": "annually",
        "payments_total": 3,
        "payments_made": 3,
        "start_date": date(2024, 3, 1),
        "source": {"type": "payment_link", "id": "plink_x"},
    }
    return SubscriptionUpdatedV1(**{**values, **changes})


# -- renewals ----------------------------------------------------------------------------------
async def test_a_renewal_sends_a_receipt_that_explains_the_charge_and_tells_the_recipients(ctx, sink):
    account_id = await new_account(ctx, time_zone="Europe/Stockholm")
    event = renewal()
    env = envelope(account_id, event)
    await deliver(ctx, env)

    msgs = messages(sink[1])
    assert sorted(m["To"] for m in msgs) == sorted([BUYER, *RECIPIENTS])
    (receipt,) = to(msgs, BUYER)
    assert subject_of(receipt) == "Your receipt from Acme Coffee ($27.50, payment 3 of 12)"
    text, html = parts(receipt)
    for part in (text, html):
        assert "Hi Jane" in part
        assert "$27.50" in part and "March 1, 2026" in part
        assert "payment 3 of 12, billed monthly" in part
        assert "April 1, 2026" in part  # the next payment date
        assert event.payment_id in part and "sub_renew" in part
    # The line math: quantity × (unit price − unit discount), then tax and total.
    assert "- Coffee beans: 2 × ($10.00 − $1.00 discount) = $18.00" in text
    assert "- Mug rental: 1 × $5.00 = $5.00" in text
    assert "Subtotal: $23.00\nVAT (25%): $4.50\nTotal: $27.50" in text
    assert "−$1.00 discount" in html and "VAT (25%)" in html and "$4.50" in html

    for address in RECIPIENTS:
        (notice,) = to(msgs, address)
        assert subject_of(notice) == "Subscription payment received: $27.50 from Jane Doe"
        text, html = parts(notice)
        assert "Jane Doe (jane@example.com) paid $27.50 on March 1, 2026" in text
        assert "Payment 3 of 12, billed monthly." in text and "$27.50" in html

    fact = f"payment:{event.payment_id}"
    assert await ledger(ctx, account_id) == sorted(
        [(fact, "payment_notification", r, "sent") for r in RECIPIENTS] + [(fact, "receipt", BUYER, "sent")],
        key=lambda row: (row[1], row[2]),
    )
    assert len({m["Message-ID"] for m in msgs}) == 3

    # The same event again (the inbox), and a new event about the same payment (the ledger).
    await deliver(ctx, env)
    await deliver(ctx, envelope(account_id, event))
    assert len(messages(sink[1])) == 3
    assert ctx.redis.pushed.count(f"{env.id} notifications.on_payment_succeeded") == 2


async def test_a_swedish_renewal_until_cancelled(ctx, sink):
    account_id = await new_account(ctx, language="sv", time_zone="Europe/Stockholm", default_currency="SEK")
    event = renewal("SEK", payments_total=None)
    await deliver(ctx, envelope(account_id, event))

    msgs = messages(sink[1])
    (receipt,) = to(msgs, BUYER)
    assert subject_of(receipt) == "Ditt kvitto från Acme Coffee (27,50 kr, betalning 3)"
    text, html = parts(receipt)
    assert f"- Coffee beans: 2 × (10,00{NBSP}kr − 1,00{NBSP}kr rabatt) = 18,00{NBSP}kr" in text
    assert f"VAT (25{NBSP}%): 4,50{NBSP}kr" in text and f"Totalt: 27,50{NBSP}kr" in text
    for part in (text, html):
        assert "Hej Jane!" in part and f"27,50{NBSP}kr" in part
        assert "förnyas varje månad tills du säger upp den" in part
        assert "1 april 2026" in part
    (notice,) = to(msgs, RECIPIENTS[0])
    assert subject_of(notice) == "Prenumerationsbetalning mottagen: 27,50 kr från Jane Doe"
    assert "Betalning 3; förnyas varje månad tills den sägs upp." in parts(notice)[0]


async def test_the_last_payment_says_nothing_more_will_be_charged_and_switches_are_honoured(ctx, sink):
    account_id = await new_account(ctx, notifications={"payment_notification": False})
    event = renewal(payments_made=12, next_payment_date=None, status="completed")
    await deliver(ctx, envelope(account_id, event))

    (receipt,) = messages(sink[1])  # no recipient notices: that switch is off
    assert receipt["To"] == BUYER
    text, html = parts(receipt)
    assert "This was payment 12 of 12, billed monthly." in text
    assert "This was the last payment: nothing more will be charged." in text
    assert "Next payment" not in html


# -- failed attempts -----------------------------------------------------------------------------
async def test_a_failed_attempt_emails_the_update_link_and_the_next_retry_once(ctx, sink):
    account_id = await new_account(ctx, time_zone="Europe/Stockholm")
    event = failure()
    env = envelope(account_id, event)
    await deliver(ctx, env)
    await deliver(ctx, env)
    await deliver(ctx, envelope(account_id, event))

    msgs = messages(sink[1])
    assert len(msgs) == 3
    (buyer,) = to(msgs, BUYER)
    assert subject_of(buyer) == "Your payment of $27.50 to Acme Coffee failed"
    text, html = parts(buyer)
    for part in (text, html):
        assert UPDATE_URL in part
        assert "March 4, 2026" in part  # the retry instant, in the account's time zone
        assert "$27.50" in part
    assert f'href="{UPDATE_URL}"' in html
    assert "We will try again on March 4, 2026." in text
    for address in RECIPIENTS:
        (notice,) = to(msgs, address)
        assert subject_of(notice) == "Subscription payment failed: $27.50 from Jane Doe"
        text, _ = parts(notice)
        assert "Decline code: insufficient_funds." in text
        assert "Next retry: March 4, 2026." in text
        assert "The buyer was e-mailed a link to update the payment method." in text
    fact = f"payment:{event.payment_id}"
    assert {(row[0], row[1], row[3]) for row in await ledger(ctx, account_id)} == {
        (fact, "payment_failed", "sent"),
        (fact, "payment_failed_recipients", "sent"),
    }

    # The next attempt is a new fact: its own messages (here the final outcome, unpaid).
    last = failure(trigger="retry", next_retry_at=None, final_outcome="unpaid", status="unpaid")
    await deliver(ctx, envelope(account_id, last))
    new = messages(sink[1])[3:]
    assert len(new) == 3
    text, html = parts(to(new, BUYER)[0])
    assert "We will not try again automatically: your subscription is unpaid" in text
    assert UPDATE_URL in text and UPDATE_URL in html
    assert "No more retries: the subscription is now unpaid" in parts(to(new, RECIPIENTS[0])[0])[0]


async def test_a_failure_that_cancels_tells_only_the_recipients(ctx, sink):
    account_id = await new_account(ctx)
    event = failure(trigger="retry", next_retry_at=None, final_outcome="canceled", status="canceled", email_buyer=False)
    await deliver(ctx, envelope(account_id, event))
    msgs = messages(sink[1])
    assert sorted(m["To"] for m in msgs) == sorted(RECIPIENTS)
    text, _ = parts(msgs[0])
    assert "a scheduled retry" in text
    assert "No more retries: the subscription is now canceled." in text
    assert "The buyer was e-mailed" not in text


async def test_a_swedish_failed_attempt(ctx, sink):
    account_id = await new_account(ctx, language="sv", time_zone="Europe/Stockholm")
    await deliver(ctx, envelope(account_id, failure("SEK", notify_recipients=False)))
    (buyer,) = messages(sink[1])
    assert buyer["To"] == BUYER
    assert subject_of(buyer) == "Din betalning på 27,50 kr till Acme Coffee misslyckades"
    text, html = parts(buyer)
    for part in (text, html):
        assert UPDATE_URL in part and "4 mars 2026" in part and f"27,50{NBSP}kr" in part
    assert "Vi försöker igen den 4 mars 2026." in text


# -- reminders -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("language", "currency", "expected_subject", "phrases"),
    [
        (
            "en",
            "USD",
            "Upcoming payment to Acme Coffee on April 1, 2026 ($27.50)",
            ["renews on April 1, 2026: $27.50 will be charged", "It is billed monthly.", "Total: $27.50"],
        ),
        (
            "sv",
            "SEK",
            "Kommande betalning till Acme Coffee den 1 april 2026 (27,50 kr)",
            [f"förnyas den 1 april 2026: 27,50{NBSP}kr dras", "Den debiteras varje månad.", f"Totalt: 27,50{NBSP}kr"],
        ),
    ],
)
async def test_an_upcoming_payment_reminder_once_per_charge(ctx, sink, language, currency, expected_subject, phrases):
    account_id = await new_account(ctx, language=language)
    event = reminder(currency)
    await deliver(ctx, envelope(account_id, event))
    await deliver(ctx, envelope(account_id, event))  # a second sweep announcing the same charge

    (msg,) = messages(sink[1])
    assert msg["To"] == BUYER and subject_of(msg) == expected_subject
    text, html = parts(msg)
    for phrase in phrases:
        assert phrase in text
    assert UPDATE_URL in text and f'href="{UPDATE_URL}"' in html
    assert await ledger(ctx, account_id) == [("reminder:sub_renew:3", "upcoming_payment", BUYER, "sent")]

    await deliver(ctx, envelope(account_id, reminder(currency, period_index=4)))  # the next charge
    assert len(messages(sink[1])) == 2


# -- cancelled and completed -------------------------------------------------------------------------
async def test_cancelled_and_completed_are_told_once_on_the_transition(ctx, sink):
    account_id = await new_account(ctx, time_zone="Europe/Stockholm")
    canceled_at = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)  # 2 March in Stockholm
    for update in (
        status_update("active", None, 1),
        status_update("past_due", "active", 2),
        status_update("canceled", "past_due", 3, canceled_at=canceled_at),
        status_update("canceled", "past_due", 3, canceled_at=canceled_at),  # re-published snapshot
        status_update("canceled", "canceled", 4, canceled_at=canceled_at),  # a later change, still canceled
    ):
        await deliver(ctx, envelope(account_id, update))

    (msg,) = messages(sink[1])
    assert msg["To"] == BUYER
    assert subject_of(msg) == "Your subscription with Acme Coffee has been canceled"
    text, html = parts(msg)
    for part in (text, html):
        assert "($27.50, billed yearly) was canceled on March 2, 2026" in part
        assert "No further payments will be charged." in part

    other = status_update("completed", "active", 7, subscription_id="sub_done", ended_at=canceled_at)
    await deliver(ctx, envelope(account_id, other))
    await deliver(ctx, envelope(account_id, other))
    done = messages(sink[1])[1:]
    assert [subject_of(m) for m in done] == ["Your subscription with Acme Coffee is complete"]
    assert "all 3 payments have been made" in parts(done[0])[0]
    assert {row[:2] for row in await ledger(ctx, account_id)} == {
        ("subscription:sub_renew:canceled", "subscription_canceled"),
        ("subscription:sub_done:completed", "subscription_completed"),
    }


async def test_swedish_cancellation(ctx, sink):
    account_id = await new_account(ctx, language="sv")
    update = status_update("canceled", "active", 2, currency="SEK", canceled_at=datetime(2026, 3, 1, 12, tzinfo=UTC))
    await deliver(ctx, envelope(account_id, update))
    (msg,) = messages(sink[1])
    assert subject_of(msg) == "Din prenumeration hos Acme Coffee har avslutats"
    text, html = parts(msg)
    for part in (text, html):
        assert f"(27,50{NBSP}kr, debiteras varje år) avslutades den 1 mars 2026" in part


# -- checkout's own settlements are unchanged ------------------------------------------------------------
def bank_debit_purchase(payment_id: str) -> PurchaseCompletedV1:
    return PurchaseCompletedV1(
        payment_id=payment_id,
        payment_status="processing",
        session_id="cs_x",
        source={"type": "payment_link", "id": "plink_x"},
        amount=2500,
        currency="USD",
        subtotal=2500,
        method_type="us_bank_account",
        contact={"email": BUYER},
        items=[],
        paid_at=datetime.now(UTC),
        test_mode=True,
    )


def settlement(payment_id: str, succeeded: bool):
    common = {
        "payment_id": payment_id,
        "amount": 2500,
        "currency": "USD",
        "method_type": "us_bank_account",
        "source": {"type": "payment_link", "id": "plink_x"},
        "email": BUYER,
    }
    if succeeded:
        return PaymentSucceededV1(**common, succeeded_at=datetime.now(UTC))
    return PaymentFailedV1(**common, decline_code="insufficient_funds", failed_at=datetime.now(UTC))


async def test_a_settlement_without_subscription_only_releases_the_held_receipt(ctx, sink):
    account_id = await new_account(ctx)
    payment_id = f"pay_{uuid.uuid4().hex[:12]}"
    await deliver(ctx, envelope(account_id, bank_debit_purchase(payment_id)))
    assert messages(sink[1]) == []  # held until the debit settles

    settled = envelope(account_id, settlement(payment_id, succeeded=True))
    await deliver(ctx, settled)
    await deliver(ctx, settled)
    (msg,) = to(messages(sink[1]), BUYER)
    assert msg["To"] == BUYER and subject_of(msg) == "Your receipt from Acme Coffee ($25.00)"
    assert "This was a one-time payment" in parts(msg)[0]
    # The recipients' payment notification was held with it, and released with it.
    assert sorted(m["To"] for m in messages(sink[1]) if m["To"] != BUYER) == sorted(RECIPIENTS)
    fact = f"payment:{payment_id}"
    assert await ledger(ctx, account_id) == sorted(
        [(fact, "payment_notification", r, "sent") for r in RECIPIENTS] + [(fact, "receipt", BUYER, "sent")],
        key=lambda row: (row[1], row[2]),
    )


async def test_a_failed_settlement_without_subscription_sends_nothing(ctx, sink):
    account_id = await new_account(ctx)
    payment_id = f"pay_{uuid.uuid4().hex[:12]}"
    await deliver(ctx, envelope(account_id, bank_debit_purchase(payment_id)))
    await deliver(ctx, envelope(account_id, settlement(payment_id, succeeded=False)))
    assert messages(sink[1]) == []
    assert {(row[1], row[3]) for row in await ledger(ctx, account_id)} == {
        ("receipt", "dropped"),
        ("payment_notification", "dropped"),
    }
