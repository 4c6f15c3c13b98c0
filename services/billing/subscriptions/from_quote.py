"""Subscriptions from a quote converted without online payment (PRODUCT §5, §6.1):
``quote.converted`` → one subscription per group of §6.2, collected by hand (§6.5:
``send_invoice`` with its payment terms, or ``none``: tracked only).

Each group is created once however often the event comes (``origin``: the quote id and
the group's key, unique like a purchase's groups). The items' own delayed starts count
from the conversion's start date (a start date already passed: from that date).
"""

from __future__ import annotations

from datetime import date

import asyncpg

from shared.accounts import Account
from shared.config import CommonSettings
from shared.events.models import QuoteConvertedV1, QuoteLine
from shared.schedule import delayed_start

from . import admin
from .schemas import CollectionIn, LineItemIn, SubscriptionCreate, UnitDiscountIn


def group_key(line: QuoteLine, anchor: date) -> tuple:
    recurring = line.recurring or {}
    start = max(delayed_start(anchor, recurring.get("start") or None), anchor)  # a passed start date: from the anchor
    return (recurring["interval"], recurring.get("payments"), recurring.get("end_date"), start.isoformat())


def groups(event: QuoteConvertedV1) -> dict[tuple, list[QuoteLine]]:
    """Recurring lines by (interval, payments, end date, start date), in quote order."""
    out: dict[tuple, list[QuoteLine]] = {}
    for line in event.lines:
        if line.recurring:
            out.setdefault(group_key(line, event.start_date), []).append(line)
    return out


def _line(line: QuoteLine) -> LineItemIn:
    rate = line.tax_rate
    return LineItemIn(
        name=line.name,
        description=line.description,
        quantity=line.quantity,
        unit_amount=line.unit_amount,
        unit_discount=UnitDiscountIn(amount_off=line.unit_discount) if line.unit_discount else None,
        tax_percent=rate.percentage if rate else None,
        tax_rate_id=rate.id if rate else None,
        tax_name=rate.name if rate else None,
    )


async def create_from_quote(
    conn: asyncpg.Connection, settings: CommonSettings, account: Account, event: QuoteConvertedV1
) -> list[asyncpg.Record]:
    created = []
    for index, ((interval, payments, end_date, start), lines) in enumerate(groups(event).items()):
        body = SubscriptionCreate(
            contact_id=event.contact_id,
            email=event.email,
            firstname=event.firstname,
            lastname=event.lastname,
            company_id=event.company_id,
            currency=event.currency,
            line_items=[_line(line) for line in lines],
            interval=interval,
            payments=payments,
            start_date=date.fromisoformat(start),
            end_date=date.fromisoformat(end_date) if end_date else None,
            collection=CollectionIn(method=event.collection_method, payment_terms_days=event.payment_terms_days),
            deal_ids=[event.deal_id] if event.deal_id else [],
        )
        row = await admin.create(conn, settings, account, body, origin=("quote", event.quote_id, f"q{index}"))
        if row is not None:
            created.append(row)
    return created
