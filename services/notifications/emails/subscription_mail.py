"""Which e-mails billing's subscription events produce, and what their templates see.

Pure functions: an event and the account in, a list of `Mail` out (kind, template,
recipient, rendering context). The handler queues them in the send ledger under the
event's fact key, so each (fact, kind, recipient) is sent once however often the event
comes. Amounts are formatted here (the templates never compute money); dates are the
account's local dates.
"""

from __future__ import annotations

from shared.accounts import Account
from shared.events.models import (
    PaymentFailedV1,
    PaymentSucceededV1,
    SubscriptionCharge,
    SubscriptionReminderDueV1,
    SubscriptionUpdatedV1,
)

from . import context as c
from .context import Mail

#: The statuses whose arrival e-mails the buyer (PRODUCT §8), by notification kind.
STATUS_KINDS = {"canceled": "subscription_canceled", "completed": "subscription_completed"}


# -- fact keys (one ledger entry per fact, kind and recipient) -------------------------------
def payment_fact(payment_id: str) -> str:
    return f"payment:{payment_id}"


def reminder_fact(subscription_id: str, period_index: int) -> str:
    return f"reminder:{subscription_id}:{period_index}"


def status_fact(subscription_id: str, status: str) -> str:
    return f"subscription:{subscription_id}:{status}"


def status_transition(status: str, previous_status: str | None) -> str | None:
    """The status a snapshot moved to that the buyer is told about, if any."""
    return status if status in STATUS_KINDS and previous_status != status else None


# -- what each event sends -------------------------------------------------------------------
def renewal_mails(account: Account, event: PaymentSucceededV1) -> list[Mail]:
    """An automatic charge succeeded: the receipt that explains it, and the recipients' notice."""
    sub = _charge(event.subscription)
    context = {
        **_charge_context(account, sub, event.amount, event.currency, payment_number=sub.payments_made),
        "paid_on": c.local_day(event.succeeded_at, account.settings.time_zone, account.locale),
        "method": c.method(event.method_type, account.locale),
        "payment_id": event.payment_id,
        "buyer": c.buyer(sub.contact_name, event.email),
        "buyer_name": sub.contact_name or event.email or "?",
    }
    mails = []
    if event.email and c.enabled(account, "receipt"):
        mails.append(Mail("receipt", "subscription_receipt", event.email, context))
    if c.enabled(account, "payment_notification"):
        mails += [Mail("payment_notification", "payment_notification", r, context) for r in c.recipients(account)]
    return mails


def failed_payment_mails(account: Account, event: PaymentFailedV1) -> list[Mail]:
    """An automatic attempt failed: the buyer's update-link e-mail and the recipients'
    notice, as the dunning decision flagged them (decision 25)."""
    sub = _charge(event.subscription)
    locale, tz = account.locale, account.settings.time_zone
    context = {
        # The payment the attempt was for: the one after those already made.
        **_charge_context(account, sub, event.amount, event.currency, payment_number=sub.payments_made + 1),
        "failed_on": c.local_day(event.failed_at, tz, locale),
        "method": c.method(event.method_type, account.locale),
        "payment_id": event.payment_id,
        "buyer": c.buyer(sub.contact_name, event.email),
        "buyer_name": sub.contact_name or event.email or "?",
        "update_url": sub.update_url,
        "next_retry_on": c.local_day(sub.next_retry_at, tz, locale) if sub.next_retry_at else None,
        "final_outcome": None if sub.next_retry_at else sub.final_outcome,
        "trigger": sub.trigger,
        "decline_code": event.decline_code,
        "hard_decline": sub.hard_decline,
    }
    email_buyer = bool(sub.email_buyer and event.email and c.enabled(account, "payment_failed"))
    context["buyer_emailed"] = email_buyer
    mails = []
    if email_buyer and event.email:
        mails.append(Mail("payment_failed", "payment_failed", event.email, context))
    if sub.notify_recipients and c.enabled(account, "payment_failed_recipients"):
        mails += [
            Mail("payment_failed_recipients", "payment_failed_recipients", r, context) for r in c.recipients(account)
        ]
    return mails


def reminder_mails(account: Account, event: SubscriptionReminderDueV1) -> list[Mail]:
    if not c.enabled(account, "upcoming_payment"):
        return []
    locale = account.locale
    tax = sum(line.tax for line in event.lines)
    context = {
        "merchant": c.merchant(account),
        "greeting_name": c.first_name(event.contact_name),
        "charge_on": c.day(event.charge_date, locale),
        **c.charge_table(event.lines, tax, event.amount, event.currency, locale),
        "interval": c.interval(event.interval, locale),
        "update_url": event.update_url,
    }
    return [Mail("upcoming_payment", "upcoming_payment", event.email, context)]


def status_mails(account: Account, event: SubscriptionUpdatedV1) -> list[Mail]:
    status = status_transition(event.status, event.previous_status)
    if status is None or not event.email:
        return []
    kind = STATUS_KINDS[status]
    # A kind missing from the account's switches counts as on.
    if not c.enabled(account, kind):
        return []
    locale, tz = account.locale, account.settings.time_zone
    ended = event.canceled_at if status == "canceled" else event.ended_at
    context = {
        "merchant": c.merchant(account),
        "greeting_name": c.first_name(event.contact_name),
        "amount": c.money(event.amount, event.currency, locale),
        "interval": c.interval(event.interval, locale),
        "payments_made": event.payments_made,
        "payments_total": event.payments_total,
        "start_on": c.day(event.start_date, locale),
        "ended_on": c.local_day(ended, tz, locale) if ended else None,
        "subscription_id": event.subscription_id,
    }
    return [Mail(kind, kind, event.email, context)]


# -- context pieces ----------------------------------------------------------------------------
def _charge(sub: SubscriptionCharge | None) -> SubscriptionCharge:
    if sub is None:
        raise ValueError("not a subscription charge")
    return sub


def _charge_context(
    account: Account, sub: SubscriptionCharge, amount: int, currency: str, *, payment_number: int
) -> dict:
    """The charge explained (PRODUCT §11): the terms, the line math, tax and total."""
    locale = account.locale
    return {
        "merchant": c.merchant(account),
        "greeting_name": c.first_name(sub.contact_name),
        "subscription_id": sub.subscription_id,
        "interval": c.interval(sub.interval, locale),
        "due_on": c.day(sub.due_date, locale),
        **c.charge_table(sub.lines, sub.tax, amount, currency, locale),
        "subtotal": c.money(sub.subtotal, currency, locale),
        "tax": c.money(sub.tax, currency, locale) if sub.tax else None,
        "payment_number": payment_number,
        "payments_total": sub.payments_total,
        "next_payment_on": c.day(sub.next_payment_date, locale) if sub.next_payment_date else None,
        "status": sub.status,
    }
