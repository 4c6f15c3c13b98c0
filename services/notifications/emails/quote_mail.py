"""The "quote paid" e-mail to the quote's owner (PRODUCT §5, §8).

Quotes are checkout's (being built); this module is what notifications needs to tell
the owner, ready for the quote's handler to call:

- `QuotePaid` — what the message says; `QuotePaid.from_purchase` builds it from the
  ``purchase.completed`` of the quote's checkout (``source.type == "quote"``) plus what
  only the quote knows (its name, its owner);
- `quote_paid_mails` — the message plan (kind ``quote_paid``, switchable per account);
- `service.queue_quote_paid` — queues it in the send ledger under the payment's fact
  (``payment:<id>``), so it is held while a bank debit is processing and sent once, by
  the same after-commit step as the payment's receipt (decision 86).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from shared.accounts import Account
from shared.events.models import PurchaseCompletedV1, PurchasedItem, SubscriptionTerms

from . import context as c
from .context import Mail
from .purchase_mail import subscription_terms


@dataclass(frozen=True)
class QuotePaid:
    quote_id: str
    #: The quote's title or number, as the owner knows it.
    quote_name: str
    owner_email: str
    payment_id: str
    currency: str
    #: What the buyer was charged at checkout (minor units).
    amount: int
    paid_at: datetime
    buyer_email: str
    buyer_name: str | None = None
    company_name: str | None = None
    deal_name: str | None = None
    method_type: str = "card"
    #: The lines charged at checkout, and the tax on them.
    lines: Sequence[PurchasedItem] = ()
    tax: int = 0
    discount: int = 0
    #: Subscriptions the payment started (their terms), and the names of their items.
    subscriptions: Sequence[SubscriptionTerms] = ()
    item_names: dict[str, str] = field(default_factory=dict)
    #: "processing": a bank debit — the e-mail is held until it settles (PRODUCT §11).
    payment_status: str = "succeeded"
    #: Where the owner sees the quote (an admin or CRM link), if any.
    url: str | None = None

    @classmethod
    def from_purchase(
        cls,
        event: PurchaseCompletedV1,
        *,
        quote_name: str,
        owner_email: str,
        deal_name: str | None = None,
        url: str | None = None,
    ) -> QuotePaid:
        contact = event.contact
        name = " ".join(p for p in (contact.firstname, contact.lastname) if p) or None
        return cls(
            quote_id=event.source.get("id", ""),
            quote_name=quote_name,
            owner_email=owner_email,
            payment_id=event.payment_id,
            currency=event.currency,
            amount=event.amount,
            paid_at=event.paid_at,
            buyer_email=contact.email,
            buyer_name=name,
            company_name=contact.company,
            deal_name=deal_name,
            method_type=event.method_type,
            lines=[item for item in event.items if item.due_now],
            tax=event.tax,
            discount=event.discount,
            subscriptions=list(event.subscriptions),
            item_names={item.line_item_id: item.name for item in event.items},
            payment_status=event.payment_status,
            url=url,
        )


def quote_fact(quote: QuotePaid) -> str:
    """The quote's payment is the fact (one payment pays a quote)."""
    return f"payment:{quote.payment_id}"


def quote_paid_mails(account: Account, quote: QuotePaid) -> list[Mail]:
    if not c.enabled(account, "quote_paid"):
        return []
    locale, cur = account.locale, quote.currency
    context = {
        "merchant": c.merchant(account),
        "quote_id": quote.quote_id,
        "quote_name": quote.quote_name,
        "buyer": c.buyer(quote.buyer_name, quote.buyer_email),
        "buyer_name": quote.buyer_name or quote.buyer_email,
        "company": quote.company_name,
        "deal_name": quote.deal_name,
        "paid_on": c.local_day(quote.paid_at, account.settings.time_zone, locale),
        "method": c.method(quote.method_type, locale),
        "payment_id": quote.payment_id,
        **c.charge_table(list(quote.lines), quote.tax, quote.amount, cur, locale),
        "discount": c.money(quote.discount, cur, locale) if quote.discount else None,
        "subscriptions": [subscription_terms(s, quote.item_names, cur, locale) for s in quote.subscriptions],
        "url": quote.url,
    }
    return [Mail("quote_paid", "quote_paid", quote.owner_email, context)]
