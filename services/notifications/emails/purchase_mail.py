"""Which e-mails checkout's ``purchase.completed`` produces, and what their templates see.

- the buyer's receipt (``receipt``): the line math of what was charged now, and — for
  recurring items — the terms they accepted (frequency, number of payments or "until
  cancelled", start date) and the next payment date (PRODUCT §11);
- the payment notification to the account's recipients (``payment_notification``): one-off
  payments and subscriptions' first payments (renewals: `subscription_mail`).

An invoice paid through its checkout gets no purchase receipt: the invoice's own "paid"
e-mail (`invoice_mail`, kind ``invoice_paid``) is that payment's receipt, so the buyer is
not told twice (decision 81). The recipients are told of every payment.
"""

from __future__ import annotations

from shared.accounts import Account
from shared.events.models import PurchaseCompletedV1, SubscriptionTerms

from . import context as c
from .context import Mail

SOURCE_NAMES = {
    "en": {"payment_link": "payment link", "invoice": "invoice", "quote": "quote"},
    "sv": {"payment_link": "betalningslänk", "invoice": "faktura", "quote": "offert"},
}


def purchase_mails(account: Account, event: PurchaseCompletedV1) -> list[Mail]:
    context = receipt_context(account, event)
    mails = []
    if event.source.get("type") != "invoice" and c.enabled(account, "receipt"):
        mails.append(Mail("receipt", "receipt", event.contact.email, context))
    if c.enabled(account, "payment_notification"):
        mails += [Mail("payment_notification", "purchase_notification", r, context) for r in c.recipients(account)]
    return mails


def receipt_context(account: Account, event: PurchaseCompletedV1) -> dict:
    locale, cur = account.locale, event.currency
    charged = [item for item in event.items if item.due_now]
    names = {item.line_item_id: item.name for item in event.items}
    contact = event.contact
    name = " ".join(p for p in (contact.firstname, contact.lastname) if p) or None
    source_type = event.source.get("type", "")
    return {
        "merchant": c.merchant(account),
        "contact": {"firstname": contact.firstname, "lastname": contact.lastname, "email": contact.email},
        "items": [
            {
                "name": item.name,
                "quantity": item.quantity,
                "unit_amount": c.money(item.unit_amount, cur, locale),
                "unit_discount": c.money(item.unit_discount, cur, locale) if item.unit_discount else None,
                "amount": c.money(item.amount, cur, locale),
            }
            for item in charged
        ],
        "subtotal": c.money(event.subtotal, cur, locale),
        "discount": c.money(event.discount, cur, locale) if event.discount else None,
        "discount_code": event.discount_code,
        "taxes": c.taxes(charged, event.tax, cur, locale),
        "total": c.money(event.amount, cur, locale),
        "paid_on": c.local_day(event.paid_at, account.settings.time_zone, locale),
        "method": c.method(event.method_type, locale),
        "payment_id": event.payment_id,
        "subscriptions": [subscription_terms(s, names, cur, locale) for s in event.subscriptions],
        "buyer": c.buyer(name, contact.email),
        "buyer_name": name or contact.email,
        "source": SOURCE_NAMES.get(c.language_of(locale), SOURCE_NAMES["en"]).get(source_type, source_type),
        "source_id": event.source.get("id", ""),
    }


def subscription_terms(terms: SubscriptionTerms, names: dict[str, str], currency: str, locale: str) -> dict:
    """A subscription the purchase started: what each payment will be and when the next is."""
    if terms.first_payment_charged:
        number, upcoming = 1, c.next_date_after(terms.start_date, terms.interval, 0, terms.payments, terms.end_date)
    else:  # a delayed start: the first payment is on the start date
        number, upcoming = None, terms.start_date
    return {
        "names": ", ".join(names.get(i, i) for i in terms.line_item_ids),
        "amount": c.money(terms.amount, currency, locale),
        "end_on": c.day(terms.end_date, locale) if terms.end_date else None,
        "charged_now": terms.first_payment_charged,
        **c.terms(
            interval_name=terms.interval,
            payments_total=terms.payments,
            start_date=terms.start_date,
            payment_number=number,
            next_payment_date=upcoming,
            locale=locale,
        ),
    }
