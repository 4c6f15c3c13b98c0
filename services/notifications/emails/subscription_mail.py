"""Which e-mails billing's subscription events produce, and what their templates see.

Pure functions: an event and the account in, a list of `Mail` out (kind, template,
recipient, rendering context). The handler queues them in the send ledger under the
event's fact key, so each (fact, kind, recipient) is sent once however often the event
comes. Amounts are formatted here (the templates never compute money); dates are the
account's local dates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from babel.dates import format_date
from babel.numbers import format_percent

from shared.accounts import Account
from shared.events.models import (
    ChargedLine,
    PaymentFailedV1,
    PaymentSucceededV1,
    SubscriptionCharge,
    SubscriptionReminderDueV1,
    SubscriptionUpdatedV1,
)

from .render import METHOD_NAMES, local_date, money

INTERVAL_NAMES = {
    "en": {
        "weekly": "weekly",
        "biweekly": "every two weeks",
        "monthly": "monthly",
        "quarterly": "quarterly",
        "semiannually": "every six months",
        "annually": "yearly",
        "every_2_years": "every two years",
        "every_3_years": "every three years",
        "every_4_years": "every four years",
        "every_5_years": "every five years",
    },
    "sv": {
        "weekly": "varje vecka",
        "biweekly": "varannan vecka",
        "monthly": "varje månad",
        "quarterly": "varje kvartal",
        "semiannually": "varje halvår",
        "annually": "varje år",
        "every_2_years": "vartannat år",
        "every_3_years": "vart tredje år",
        "every_4_years": "vart fjärde år",
        "every_5_years": "vart femte år",
    },
}
#: The statuses whose arrival e-mails the buyer (PRODUCT §8), by notification kind.
STATUS_KINDS = {"canceled": "subscription_canceled", "completed": "subscription_completed"}


@dataclass(frozen=True)
class Mail:
    kind: str
    template: str
    recipient: str
    context: dict


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
        "paid_on": local_date(event.succeeded_at, account.settings.time_zone, account.locale),
        "method": _method(account, event.method_type),
        "payment_id": event.payment_id,
        "buyer": _buyer(sub.contact_name, event.email),
        "buyer_name": sub.contact_name or event.email or "?",
    }
    mails = []
    if event.email and _enabled(account, "receipt"):
        mails.append(Mail("receipt", "subscription_receipt", event.email, context))
    if _enabled(account, "payment_notification"):
        mails += [Mail("payment_notification", "payment_notification", r, context) for r in _recipients(account)]
    return mails


def failed_payment_mails(account: Account, event: PaymentFailedV1) -> list[Mail]:
    """An automatic attempt failed: the buyer's update-link e-mail and the recipients'
    notice, as the dunning decision flagged them (decision 25)."""
    sub = _charge(event.subscription)
    locale, tz = account.locale, account.settings.time_zone
    context = {
        # The payment the attempt was for: the one after those already made.
        **_charge_context(account, sub, event.amount, event.currency, payment_number=sub.payments_made + 1),
        "failed_on": local_date(event.failed_at, tz, locale),
        "method": _method(account, event.method_type),
        "payment_id": event.payment_id,
        "buyer": _buyer(sub.contact_name, event.email),
        "buyer_name": sub.contact_name or event.email or "?",
        "update_url": sub.update_url,
        "next_retry_on": local_date(sub.next_retry_at, tz, locale) if sub.next_retry_at else None,
        "final_outcome": None if sub.next_retry_at else sub.final_outcome,
        "trigger": sub.trigger,
        "decline_code": event.decline_code,
        "hard_decline": sub.hard_decline,
    }
    email_buyer = bool(sub.email_buyer and event.email and _enabled(account, "payment_failed"))
    context["buyer_emailed"] = email_buyer
    mails = []
    if email_buyer and event.email:
        mails.append(Mail("payment_failed", "payment_failed", event.email, context))
    if sub.notify_recipients and _enabled(account, "payment_failed_recipients"):
        mails += [
            Mail("payment_failed_recipients", "payment_failed_recipients", r, context) for r in _recipients(account)
        ]
    return mails


def reminder_mails(account: Account, event: SubscriptionReminderDueV1) -> list[Mail]:
    if not _enabled(account, "upcoming_payment"):
        return []
    locale, cur = account.locale, event.currency
    tax = sum(line.tax for line in event.lines)
    context = {
        "merchant": _merchant(account),
        "greeting_name": _first_name(event.contact_name),
        "charge_on": _day(event.charge_date, locale),
        "lines": _lines(event.lines, cur, locale),
        "subtotal": money(sum(line.amount for line in event.lines), cur, locale),
        "taxes": _taxes(event.lines, tax, cur, locale),
        "total": money(event.amount, cur, locale),
        "interval": _interval(event.interval, locale),
        "update_url": event.update_url,
    }
    return [Mail("upcoming_payment", "upcoming_payment", event.email, context)]


def status_mails(account: Account, event: SubscriptionUpdatedV1) -> list[Mail]:
    status = status_transition(event.status, event.previous_status)
    if status is None or not event.email:
        return []
    kind = STATUS_KINDS[status]
    # A kind missing from the account's switches counts as on.
    if not _enabled(account, kind):
        return []
    locale, tz = account.locale, account.settings.time_zone
    ended = event.canceled_at if status == "canceled" else event.ended_at
    context = {
        "merchant": _merchant(account),
        "greeting_name": _first_name(event.contact_name),
        "amount": money(event.amount, event.currency, locale),
        "interval": _interval(event.interval, locale),
        "payments_made": event.payments_made,
        "payments_total": event.payments_total,
        "start_on": _day(event.start_date, locale),
        "ended_on": local_date(ended, tz, locale) if ended else None,
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
        "merchant": _merchant(account),
        "greeting_name": _first_name(sub.contact_name),
        "subscription_id": sub.subscription_id,
        "interval": _interval(sub.interval, locale),
        "due_on": _day(sub.due_date, locale),
        "lines": _lines(sub.lines, currency, locale),
        "subtotal": money(sub.subtotal, currency, locale),
        "taxes": _taxes(sub.lines, sub.tax, currency, locale),
        "tax": money(sub.tax, currency, locale) if sub.tax else None,
        "total": money(amount, currency, locale),
        "payment_number": payment_number,
        "payments_total": sub.payments_total,
        "next_payment_on": _day(sub.next_payment_date, locale) if sub.next_payment_date else None,
        "status": sub.status,
    }


def _lines(lines: list[ChargedLine], currency: str, locale: str) -> list[dict]:
    return [
        {
            "name": line.name,
            "quantity": line.quantity,
            "unit_amount": money(line.unit_amount, currency, locale),
            "unit_discount": money(line.unit_discount, currency, locale) if line.unit_discount else None,
            "amount": money(line.amount, currency, locale),
        }
        for line in lines
    ]


def _taxes(lines: list[ChargedLine], tax: int, currency: str, locale: str) -> list[dict]:
    """Tax per rate (name and percentage), in the order the lines name them; tax not
    attributed to a named rate is one unnamed row, so the rows always add up to ``tax``."""
    by_rate: dict[tuple[str, str], int] = {}
    for line in lines:
        if line.tax and line.tax_rate is not None:
            key = (line.tax_rate.name, line.tax_rate.percentage)
            by_rate[key] = by_rate.get(key, 0) + line.tax
    rows = [
        {"name": name, "percentage": _percent(pct, locale), "amount": money(amount, currency, locale)}
        for (name, pct), amount in by_rate.items()
    ]
    rest = tax - sum(by_rate.values())
    if rest:
        rows.append({"name": None, "percentage": None, "amount": money(rest, currency, locale)})
    return rows


def _percent(percentage: str, locale: str) -> str:
    return format_percent(Decimal(percentage) / 100, locale=locale, decimal_quantization=False)


def _day(day: date, locale: str) -> str:
    """An account-local calendar date, in the same long format as `render.local_date`."""
    return format_date(day, format="long", locale=locale)


def _interval(interval: str, locale: str) -> str:
    return INTERVAL_NAMES.get(locale, INTERVAL_NAMES["en"]).get(interval, interval)


def _method(account: Account, method_type: str) -> str:
    return METHOD_NAMES.get(account.locale, METHOD_NAMES["en"]).get(method_type, method_type)


def _merchant(account: Account) -> dict:
    return {"name": account.name, "logo_url": account.settings.logo_url}


def _first_name(name: str | None) -> str | None:
    return name.split()[0] if name and name.strip() else None


def _buyer(name: str | None, email: str | None) -> str:
    if name and email:
        return f"{name} ({email})"
    return name or email or "?"


def _enabled(account: Account, kind: str) -> bool:
    return account.settings.notifications.get(kind, True)


def _recipients(account: Account) -> list[str]:
    """The account's recipients, each once (addresses differing only in case are one)."""
    seen: set[str] = set()
    out = []
    for r in account.settings.notification_recipients:
        if r.lower() not in seen:
            seen.add(r.lower())
            out.append(r)
    return out
